"""The real data sets, read from the offline mirror (``$MCL_DATA_MIRROR``, else ``../shared/data``).

All tests share one data root for the session (``$MCL_TEST_DATA_ROOT`` when set, so a CI cache can
keep the decoded arrays between runs; else a pytest tmp dir), so each data set is decoded once.
Skipped when no mirror is there.
"""

import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import chi2_contingency
from sklearn.metrics import mutual_info_score

from mcl.data import cache, sources
from mcl.data.captions import load_coco_captions
from mcl.data.celeba import HAIR_ATTRIBUTES, load_celeba
from mcl.data.cifar import load_cifar10
from mcl.data.cifar_mnist import digits_to_32, load_cifar_mnist, pairing, template_pool
from mcl.data.mnist import load_mnist

MIRROR = Path(os.environ.get(sources.ENV_MIRROR) or Path(__file__).resolve().parents[2] / "shared" / "data")
pytestmark = pytest.mark.skipif(
    not (MIRROR / "cifar10-jpeg.tar.gz").is_file(), reason=f"no mirror at {MIRROR}"
)

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


@pytest.fixture(scope="session")
def root(tmp_path_factory) -> Path:
    shared = os.environ.get("MCL_TEST_DATA_ROOT")
    return Path(shared) if shared else tmp_path_factory.mktemp("mcl-real-data")


@pytest.fixture(autouse=True)
def mirror_only(monkeypatch):
    monkeypatch.setenv(sources.ENV_MIRROR, str(MIRROR))
    monkeypatch.setenv(sources.ENV_OFFLINE, "1")
    monkeypatch.delenv(sources.ENV_ROOT, raising=False)


def assert_second_load_is_cached(key: str, root: Path) -> None:
    record = sources.last_load(key)
    assert record.source == "cache" and record.path == root / "cache" / f"{key}.json"


def test_mnist(root):
    train = load_mnist("train", root=root)
    assert sources.last_load("mnist-train").source in ("mirror", "cache")
    assert train.images.shape == (60000, 1, 28, 28) and train.images.dtype == torch.uint8
    assert torch.bincount(train.labels["digit"]).tolist() == MNIST_TRAIN_COUNTS
    test = load_mnist("test", root=root)
    assert test.images.shape == (10000, 1, 28, 28) and int(test.labels["digit"].max()) == 9
    assert int(train.images.max()) == 255 and int(train.images.min()) == 0
    again = load_mnist("train", root=root)
    assert_second_load_is_cached("mnist-train", root)
    assert torch.equal(again.images, train.images)


@pytest.mark.slow
def test_cifar10(root):
    train = load_cifar10("train", root=root)
    assert train.images.shape == (50000, 3, 32, 32) and train.images.dtype == torch.uint8
    assert torch.bincount(train.labels["cifar"]).tolist() == [5000] * 10
    test = load_cifar10("test", root=root)
    assert test.images.shape == (10000, 3, 32, 32)
    assert torch.bincount(test.labels["cifar"]).tolist() == [1000] * 10
    # CIFAR-10's well-known per-channel train means (0.4914, 0.4822, 0.4465) survive the JPEG copy
    means = train.images.float().mean(dim=(0, 2, 3)) / 255
    assert torch.allclose(means, torch.tensor([0.4914, 0.4822, 0.4465]), atol=0.01)
    load_cifar10("train", root=root)
    assert_second_load_is_cached("cifar10-train", root)


def test_truncated_cache_file_is_rebuilt(root):
    before = load_mnist("test", root=root)
    array_file = root / "cache" / "mnist-test.images.npy"
    array_file.write_bytes(array_file.read_bytes()[:1000])
    with pytest.warns(cache.CacheWarning, match="mnist-test"):
        after = load_mnist("test", root=root)
    assert sources.last_load("mnist-test").source == "mirror"
    assert torch.equal(after.images, before.images)
    assert torch.equal(after.labels["digit"], before.labels["digit"])


@pytest.mark.slow
def test_cifar_mnist_labels_independent_and_pairing_fixed(root):
    data = load_cifar_mnist("train", root=root, seed=0)
    cifar, mnist = load_cifar10("train", root=root), load_mnist("train", root=root)
    assert data.images.shape == (50000, 3, 32, 64) and data.images.dtype == torch.uint8
    assert data.label_names["cifar"] == cifar.label_names["cifar"] and data.label_names["mnist"][3] == "3"
    # the two labels are independent: chi-square test and mutual information (0 for independence;
    # about 81 / (2 * 50000) = 0.0008 nats of finite-sample bias)
    table = np.zeros((10, 10), np.int64)
    np.add.at(table, (data.labels["cifar"].numpy(), data.labels["mnist"].numpy()), 1)
    assert chi2_contingency(table).pvalue > 1e-3
    assert mutual_info_score(data.labels["cifar"], data.labels["mnist"]) < 0.005
    # every image is its CIFAR photo (left) and its paired MNIST digit (right), labels to match
    digit = torch.from_numpy(pairing(50000, 60000, "train", 0)[0])
    assert torch.equal(data.images[..., :32], cifar.images)
    assert torch.equal(data.labels["cifar"], cifar.labels["cifar"])
    assert torch.equal(data.labels["mnist"], mnist.labels["digit"][digit])
    some = torch.arange(0, 50000, 997)
    assert torch.equal(data.images[some, 1, :, 32:], digits_to_32(mnist.images[digit[some]])[:, 0])
    # same seed, same pairing; another seed, another; n picks a nested subset
    subset = load_cifar_mnist("train", root=root, seed=0, n=300)
    _, order = pairing(50000, 60000, "train", 0)
    index = torch.from_numpy(np.sort(order[:300]))
    assert torch.equal(subset.images, data.images[index])
    assert torch.equal(subset.labels["mnist"], data.labels["mnist"][index])
    other = load_cifar_mnist("train", root=root, seed=1, n=300)
    assert not torch.equal(other.labels["mnist"], subset.labels["mnist"])
    overlay = load_cifar_mnist("test", root=root, composition="overlay", n=50)
    assert overlay.images.shape == (50, 3, 32, 32)
    with pytest.raises(ValueError, match="n=0"):
        load_cifar_mnist("test", root=root, n=0)


def test_cifar_mnist_digit_pool_has_few_templates_and_keeps_the_photos(root):
    mnist = load_mnist("train", root=root)
    plain = load_cifar_mnist("train", root=root, n=2000)
    train = load_cifar_mnist("train", root=root, n=2000, digits_per_class=3)
    test = load_cifar_mnist("test", root=root, n=500, digits_per_class=3)
    assert torch.equal(train.images[..., :32], plain.images[..., :32])  # the same photos, labels
    assert torch.equal(train.labels["cifar"], plain.labels["cifar"])
    # each class shows at most 3 distinct digit images, the same 3 in both splits, drawn from MNIST train
    pool = mnist.images[torch.from_numpy(template_pool(mnist.labels["digit"], 3, 0).ravel())]
    pool32 = digits_to_32(pool)[:, 0].reshape(10, 3, 32, 32)
    for data in (train, test):
        for c in range(10):
            shown = data.images[data.labels["mnist"] == c][:, 0, :, 32:]
            assert 1 <= len(torch.unique(shown, dim=0)) <= 3
            assert all(any(torch.equal(x, t) for t in pool32[c]) for x in shown)
    assert mutual_info_score(train.labels["cifar"], train.labels["mnist"]) < 0.04  # still independent
    with pytest.raises(ValueError, match="digits_per_class=0"):
        load_cifar_mnist("test", root=root, n=10, digits_per_class=0)


def naive_hair_counts() -> tuple[int, list[int], list[int], list[int]]:
    """From the mirror's attribute file, line by line: faces with exactly one hair colour, label counts."""
    with tarfile.open(MIRROR / "celeba-subset.tar.gz") as tar:
        lines = tar.extractfile("celeba/list_attr_celeba.txt").read().decode().splitlines()
    names = lines[1].split()
    hair, smiling, male = [0] * 4, [0, 0], [0, 0]
    kept = 0
    for line in lines[2:]:
        values = dict(zip(names, map(int, line.split()[1:]), strict=True))
        colours = [k for k, name in enumerate(HAIR_ATTRIBUTES) if values[name] == 1]
        if len(colours) == 1:
            kept += 1
            hair[colours[0]] += 1
            smiling[values["Smiling"] == 1] += 1
            male[values["Male"] == 1] += 1
    return kept, hair, smiling, male


@pytest.mark.slow
def test_celeba_from_mirror(root):
    train = load_celeba("train", root=root, size=64)
    test = load_celeba("test", root=root, size=64)
    kept, hair, smiling, male = naive_hair_counts()
    assert len(train) + len(test) == kept and len(test) == round(0.2 * kept)
    assert train.images.shape[1:] == (3, 64, 64) and train.images.dtype == torch.uint8
    both = {k: torch.cat([train.labels[k], test.labels[k]]) for k in ("hair", "smiling", "gender")}
    assert torch.bincount(both["hair"], minlength=4).tolist() == hair
    assert torch.bincount(both["smiling"], minlength=2).tolist() == smiling
    assert torch.bincount(both["gender"], minlength=2).tolist() == male
    assert set(train.labels) == {"hair", "smiling", "gender"}
    assert 40 < train.images.float().mean() < 200  # real photos, not blank


def test_coco_captions_from_mirror(root):
    coco = load_coco_captions(root=root)
    assert sources.last_load("coco-val2017").source in ("mirror", "local")
    assert len(coco) == 79 and sum(len(c) for c in coco.captions) == 395
    assert all(c and all(isinstance(s, str) and s for s in c) for c in coco.captions)
    assert all(p.is_file() and p.parent == root / "coco" / "val2017" for p in coco.paths)
    images = coco.load_images([0, 5])
    assert images.shape == (2, 3, 224, 224) and images.dtype == torch.uint8
    texts, owner = coco.flat()
    assert len(texts) == 395 and owner.max() == 78
    load_coco_captions(root=root)
    assert sources.last_load("coco-val2017").source == "local"  # unpacked once, then found in the root
