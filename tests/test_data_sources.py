"""Where data comes from (mcl.data.sources), the array cache, and the loaders on tiny stand-ins.

Every data root here is a pytest tmp dir; nothing touches the repository's data/ folder, the
mirror or the network (downloads are faked or switched off).
"""

import gzip
import hashlib
import io
import json
import os
import pickle
import socket
import subprocess
import sys
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mcl
from mcl.data import cache, sources
from mcl.data.captions import load_flickr30k
from mcl.data.celeba import HAIR_ATTRIBUTES, load_celeba
from mcl.data.cifar import load_cifar10
from mcl.data.cifar_mnist import compose, digits_to_32, pairing
from mcl.data.imagenet import load_imagenet
from mcl.data.mnist import load_mnist, read_idx
from mclbook.show import image_grid

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def offline(monkeypatch):
    """No mirror, no download: only the local root counts."""
    monkeypatch.delenv(sources.ENV_MIRROR, raising=False)
    monkeypatch.delenv(sources.ENV_ROOT, raising=False)
    monkeypatch.setenv(sources.ENV_OFFLINE, "1")


def jpeg_bytes(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="JPEG", quality=95)
    return out.getvalue()


def tar_with(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def file_member(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def link_member(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


# --- safe extraction


def test_safe_extract_unpacks_a_normal_archive(tmp_path):
    members = [file_member("top/a.txt", b"hello"), file_member("top/sub/b.txt", b"b")]
    archive = tar_with(tmp_path / "ok.tar", members)
    dest = tmp_path / "dest"
    assert sources.safe_extract(archive, dest) == ["top"]
    assert (dest / "top" / "a.txt").read_bytes() == b"hello"
    assert (dest / "top" / "sub" / "b.txt").read_bytes() == b"b"
    assert [p.name for p in dest.iterdir()] == ["top"]  # the temporary folder is gone


@pytest.mark.parametrize(
    "member",
    [
        file_member("../evil"),
        file_member("top/../../evil"),
        file_member("/tmp/evil_absolute"),
        link_member("top/link", "/etc/passwd"),
        link_member("top/link", "../../outside"),
        link_member("top/inside", "fine.txt"),
        link_member("top/hard", "../outside", tarfile.LNKTYPE),
        link_member("top/hard-inside", "top/fine.txt", tarfile.LNKTYPE),
        link_member("top/dev", "", tarfile.CHRTYPE),
        link_member("top/fifo", "", tarfile.FIFOTYPE),
    ],
    ids=[
        "dotdot",
        "nested-dotdot",
        "absolute",
        "symlink-absolute",
        "symlink-escape",
        "symlink-inside",
        "hardlink-escape",
        "hardlink-inside",
        "char-device",
        "fifo",
    ],
)
def test_safe_extract_refuses_escaping_members(tmp_path, member):
    archive = tar_with(tmp_path / "bad.tar", [file_member("top/fine.txt"), member])
    dest = tmp_path / "dest"
    with pytest.raises(sources.UnsafeArchiveError, match=member[0].name.replace(".", r"\.")):
        sources.safe_extract(archive, dest)
    assert not (tmp_path / "evil").exists() and not Path("/tmp/evil_absolute").exists()
    assert not dest.exists() or list(dest.iterdir()) == []  # refused as a whole: nothing written


def test_safe_extract_refuses_a_chain_of_links_that_escapes(tmp_path):
    """A directory link, a link through it, then a long ``../`` link, then a file written through the
    chain: tarfile's ``data`` filter let such a chain write outside on Python 3.11.7. Every link is refused
    by name, before anything is written, and nothing appears outside the destination."""
    root = tmp_path / "root"
    dest = root / "data" / "dest"
    members = [
        link_member("a", "."),
        link_member("a/b", "a"),
        link_member("a/b/c", "../" * 12 + str(tmp_path).lstrip("/")),
        file_member("a/b/c/escaped.txt", b"payload"),
    ]
    archive = tar_with(tmp_path / "chain.tar", members)
    before = set(tmp_path.rglob("*"))
    with pytest.raises(sources.UnsafeArchiveError, match=r"'a' is a symbolic link"):
        sources.safe_extract(archive, dest)
    assert not (tmp_path / "escaped.txt").exists()
    assert set(tmp_path.rglob("*")) - before <= {root, root / "data"}  # no file anywhere, dest not made


def test_safe_extract_writes_through_no_existing_link(tmp_path):
    """A link already in ``dest`` is never written through: the extraction stops, naming it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "top").symlink_to(outside)
    archive = tar_with(tmp_path / "ok.tar", [file_member("top/a.txt", b"hello")])
    with pytest.raises(sources.UnsafeArchiveError, match="top is a symbolic link"):
        sources.safe_extract(archive, dest)
    assert list(outside.iterdir()) == []


# --- checksums and errors


def test_corrupted_mirror_archive_raises_naming_file_and_hashes(tmp_path, monkeypatch, offline):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    bad = mirror / "coco-mini.tar.gz"
    bad.write_bytes(b"not the real archive")
    monkeypatch.setenv(sources.ENV_MIRROR, str(mirror))
    actual = hashlib.sha256(b"not the real archive").hexdigest()
    with pytest.raises(sources.ChecksumError) as err:
        sources.find("coco", tmp_path / "root", split="val2017")
    message = str(err.value)
    assert str(bad) in message and actual in message and sources.MANIFEST["coco-mini.tar.gz"] in message


def test_nothing_found_lists_every_source_tried(tmp_path, offline):
    root = tmp_path / "root"
    with pytest.raises(sources.DataNotFoundError) as err:
        load_mnist("train", root=root)
    message = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    assert "1. local" in message and "2. mirror" in message and "3. download" in message
    assert str(root) in message and "MNIST/raw" in message
    assert "MCL_DATA_MIRROR is not set" in message and "MCL_DATA_OFFLINE" in message
    assert "To fix it" in message and "export MCL_DATA_MIRROR" in message


def test_nothing_found_reports_why_mirror_and_download_failed(tmp_path, monkeypatch, offline):
    empty_mirror = tmp_path / "mirror"
    empty_mirror.mkdir()
    monkeypatch.setenv(sources.ENV_MIRROR, str(empty_mirror))
    monkeypatch.delenv(sources.ENV_OFFLINE)

    def unreachable(url, timeout):
        raise OSError(f"cannot reach {url}")

    monkeypatch.setattr(sources, "_probe", unreachable)
    with pytest.raises(sources.DataNotFoundError) as err:
        sources.find("cifar10", tmp_path / "root")
    message = str(err.value)
    assert f"({empty_mirror}): missing cifar10-jpeg.tar.gz" in message
    assert "OSError: cannot reach https://www.cs.toronto.edu" in message


def test_download_runs_under_a_socket_timeout_and_restores_it(tmp_path, monkeypatch, offline):
    monkeypatch.delenv(sources.ENV_OFFLINE)
    monkeypatch.setenv(sources.ENV_TIMEOUT, "3.5")
    monkeypatch.setattr(sources, "_probe", lambda url, timeout: None)
    seen = []

    def fake_download(root):
        seen.append(socket.getdefaulttimeout())
        raw = root / "MNIST" / "raw"
        raw.mkdir(parents=True)
        for name in sources._MNIST_FILES:
            (raw / name).write_bytes(b"")

    spec = sources.SPECS["mnist"]
    monkeypatch.setitem(sources.SPECS, "mnist", sources.Spec(**{**spec.__dict__, "download": fake_download}))
    before = socket.getdefaulttimeout()
    found = sources.find("mnist", tmp_path / "root")
    assert found.source == "download" and seen == [3.5] and socket.getdefaulttimeout() == before
    assert [a.source for a in found.attempts] == ["local", "mirror", "download"]


def test_data_root_order(tmp_path, monkeypatch):
    monkeypatch.setenv(sources.ENV_ROOT, str(tmp_path / "from-env"))
    assert sources.data_root(tmp_path / "given") == tmp_path / "given"
    assert sources.data_root() == tmp_path / "from-env" and (tmp_path / "from-env").is_dir()
    monkeypatch.delenv(sources.ENV_ROOT)
    checkout_data = Path(mcl.__file__).resolve().parents[1] / "data"
    if checkout_data.is_dir() and os.access(checkout_data, os.W_OK):
        assert sources.default_root() == checkout_data
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(sources.os, "access", lambda path, mode: False)  # a read-only checkout
    assert sources.default_root() == tmp_path / "xdg" / "mcl"


# --- the array cache


def test_cache_round_trip_and_hit(tmp_path):
    calls = []

    def build():
        calls.append(1)
        return {"x": np.arange(12, dtype=np.int16).reshape(3, 4), "y": np.ones(3, np.uint8)}, {"names": ["a"]}

    first = cache.cached(tmp_path, "thing", build)
    second = cache.cached(tmp_path, "thing", build)
    assert (first.hit, second.hit, len(calls)) == (False, True, 1)
    assert second.path == tmp_path / "cache" / "thing.json" and second.meta == {"names": ["a"]}
    for name in ("x", "y"):
        np.testing.assert_array_equal(first.arrays[name], second.arrays[name])
        assert first.arrays[name].dtype == second.arrays[name].dtype
    assert cache.load(tmp_path, "thing", mmap=True).arrays["x"].sum() == 66


@pytest.mark.parametrize("damage", ["truncate", "flip-byte", "drop-sidecar", "garble-sidecar", "delete-npy"])
def test_damaged_cache_is_detected_and_rebuilt(tmp_path, damage):
    data = np.arange(4000, dtype=np.int32)
    cache.save(tmp_path, "k", {"a": data})
    array_file = tmp_path / "cache" / "k.a.npy"
    sidecar = tmp_path / "cache" / "k.json"
    if damage == "truncate":
        array_file.write_bytes(array_file.read_bytes()[:-100])
    elif damage == "flip-byte":
        raw = bytearray(array_file.read_bytes())
        raw[-5] ^= 0xFF
        array_file.write_bytes(bytes(raw))
    elif damage == "drop-sidecar":
        sidecar.unlink()
    elif damage == "garble-sidecar":
        sidecar.write_text("{not json")
    else:
        array_file.unlink()
    if damage == "drop-sidecar":  # an unfinished entry is simply a miss
        assert cache.load(tmp_path, "k") is None
    else:
        with pytest.warns(cache.CacheWarning, match="rebuilding"):
            assert cache.load(tmp_path, "k") is None
    rebuilt = cache.cached(tmp_path, "k", lambda: ({"a": data}, {}))
    assert not rebuilt.hit
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = cache.load(tmp_path, "k")
    np.testing.assert_array_equal(again.arrays["a"], data)


def test_cache_rejects_bad_keys(tmp_path):
    with pytest.raises(ValueError, match="key"):
        cache.save(tmp_path, "../escape", {"a": np.zeros(1)})


# --- MNIST, CIFAR stand-ins


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(raw: Path, n: int, rng: np.random.Generator, compress: bool) -> dict[str, np.ndarray]:
    raw.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix in ("train", "t10k"):
        arrays[f"{prefix}-images-idx3-ubyte"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{prefix}-labels-idx1-ubyte"] = rng.integers(0, 10, n, dtype=np.uint8)
    for name, array in arrays.items():
        data = idx_bytes(array)
        (raw / (name + ".gz" if compress else name)).write_bytes(gzip.compress(data) if compress else data)
    return arrays


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_from_local_raw_files(tmp_path, offline, compress):
    arrays = write_mnist(tmp_path / "MNIST" / "raw", 7, np.random.default_rng(0), compress)
    data = load_mnist("test", root=tmp_path)
    assert data.images.shape == (7, 1, 28, 28) and data.images.dtype == torch.uint8
    np.testing.assert_array_equal(data.images[:, 0].numpy(), arrays["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(data.labels["digit"].numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert data.labels["digit"].dtype == torch.int64 and data.label_names["digit"] == list("0123456789")
    assert sources.last_load("mnist-test").source == "local"
    load_mnist("test", root=tmp_path)
    assert sources.last_load("mnist-test").source == "cache"


def test_read_idx_rejects_a_short_file(tmp_path):
    path = tmp_path / "x-ubyte"
    path.write_bytes(idx_bytes(np.zeros((3, 2), np.uint8))[:-1])
    with pytest.raises(ValueError, match="header says"):
        read_idx(path)


def test_cifar_from_local_python_batches(tmp_path, offline):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    expected = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (2, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, 2).tolist()
        expected[name] = (data, labels)
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels}, f)
    train = load_cifar10("train", root=tmp_path)
    assert train.images.shape == (10, 3, 32, 32)
    np.testing.assert_array_equal(train.images[2].numpy().reshape(-1), expected["data_batch_2"][0][0])
    assert train.labels["cifar"].tolist() == sum((expected[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert train.label_names["cifar"][0] == "airplane" and len(train.label_names["cifar"]) == 10


def test_check_split_names_the_parameter():
    with pytest.raises(ValueError, match="split='val'"):
        load_cifar10("val")


# --- CIFAR-MNIST pieces


def naive_bilinear(image: np.ndarray, out: int) -> np.ndarray:
    """align_corners=False bilinear resize written from the formula, one pixel at a time."""
    h, w = image.shape
    result = np.zeros((out, out))
    for i in range(out):
        for j in range(out):
            y = min(max((i + 0.5) * h / out - 0.5, 0), h - 1)
            x = min(max((j + 0.5) * w / out - 0.5, 0), w - 1)
            y0, x0 = int(y), int(x)
            y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
            dy, dx = y - y0, x - x0
            result[i, j] = (
                (1 - dy) * (1 - dx) * image[y0, x0]
                + (1 - dy) * dx * image[y0, x1]
                + dy * (1 - dx) * image[y1, x0]
                + dy * dx * image[y1, x1]
            )
    return result


def test_digits_to_32_matches_naive_bilinear():
    g = torch.Generator().manual_seed(0)
    digits = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8, generator=g)
    resized = digits_to_32(digits)
    for k in range(2):
        reference = naive_bilinear(digits[k, 0].numpy().astype(float), 32)
        assert np.abs(resized[k, 0].numpy() - reference).max() <= 0.5 + 1e-4


def test_compose_side_and_overlay():
    g = torch.Generator().manual_seed(0)
    photos = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8, generator=g)
    digits = torch.randint(0, 256, (3, 1, 32, 32), dtype=torch.uint8, generator=g)
    digits[:, :, :8] = 0
    digits[:, :, 8:12] = 255
    side = compose(photos, digits, "side")
    assert side.shape == (3, 3, 32, 64)
    assert torch.equal(side[..., :32], photos)
    assert all(torch.equal(side[:, c, :, 32:], digits[:, 0]) for c in range(3))
    over = compose(photos, digits, "overlay")
    assert over.shape == (3, 3, 32, 32)
    assert torch.equal(over[:, :, :8], photos[:, :, :8]) and (over[:, :, 8:12] == 255).all()
    for n, c, y, x in [(0, 0, 20, 5), (1, 2, 30, 31), (2, 1, 15, 16)]:
        a = digits[n, 0, y, x].item() / 255
        assert over[n, c, y, x].item() == round(photos[n, c, y, x].item() * (1 - a) + 255 * a)
    with pytest.raises(ValueError, match="composition='blend'"):
        compose(photos, digits, "blend")


def test_pairing_is_fixed_by_seed_and_split():
    a, order = pairing(50, 60, "train", seed=3)
    b, _ = pairing(50, 60, "train", seed=3)
    c, _ = pairing(50, 60, "train", seed=4)
    d, _ = pairing(50, 60, "test", seed=3)
    assert np.array_equal(a, b) and not np.array_equal(a, c) and not np.array_equal(a, d)
    assert len(set(a.tolist())) == 50  # without replacement while MNIST is large enough
    assert sorted(order.tolist()) == list(range(50))
    small, _ = pairing(50, 20, "test", seed=0)  # with replacement otherwise
    assert small.max() < 20


# --- CelebA stand-in

ATTRS = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee "
    "Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard "
    "Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair "
    "Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace Wearing_Necktie "
    "Young"
).split()


def write_celeba(root: Path, partitions: list[int] | None) -> tuple[list[str], np.ndarray]:
    """A tiny CelebA in the official layout: 12 faces of 10x14 whose hair bits cover 0, 1 and 2 colours."""
    rng = np.random.default_rng(0)
    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    hair_patterns = [[0], [1], [2], [3], [], [0, 2], [3], [1], [0], [2], [1, 3], [0]]
    attrs = -np.ones((len(hair_patterns), 40), np.int64)
    files = []
    for i, hair in enumerate(hair_patterns):
        name = f"{i + 1:06d}.jpg"
        files.append(name)
        attrs[i, [ATTRS.index(HAIR_ATTRIBUTES[h]) for h in hair]] = 1
        attrs[i, ATTRS.index("Smiling")] = 1 if i % 2 else -1
        attrs[i, ATTRS.index("Male")] = 1 if i % 3 == 0 else -1
        pixels = rng.integers(0, 256, (14, 10, 3), np.uint8)
        (folder / "img_align_celeba" / name).write_bytes(jpeg_bytes(pixels))
    rows = [f"{f} " + " ".join(f"{v:2d}" for v in row) for f, row in zip(files, attrs, strict=True)]
    text = f"{len(files)}\n" + " ".join(ATTRS) + " \n" + "\n".join(rows) + "\n"  # the official spacing
    (folder / "list_attr_celeba.txt").write_text(text)
    if partitions is not None:
        (folder / "list_eval_partition.txt").write_text(
            "".join(f"{f} {p}\n" for f, p in zip(files, partitions, strict=True))
        )
    return files, attrs


def naive_celeba_labels(attrs: np.ndarray, rows: list[int]) -> dict[str, list[int]]:
    out = {"hair": [], "smiling": [], "gender": []}
    for r in rows:
        colours = [k for k, name in enumerate(HAIR_ATTRIBUTES) if attrs[r, ATTRS.index(name)] == 1]
        out["hair"].append(colours[0])
        out["smiling"].append(int(attrs[r, ATTRS.index("Smiling")] == 1))
        out["gender"].append(int(attrs[r, ATTRS.index("Male")] == 1))
    return out


def test_celeba_stand_in_with_official_partition(tmp_path, offline):
    partitions = [0, 0, 1, 2, 0, 0, 2, 0, 1, 2, 0, 0]
    _, attrs = write_celeba(tmp_path, partitions)
    kept = [i for i in range(12) if i not in (4, 5, 10)]  # 0 or 2 hair colours are dropped
    for split, p in (("train", 0), ("valid", 1), ("test", 2)):
        data = load_celeba(split, size=8, root=tmp_path)
        rows = [i for i in kept if partitions[i] == p]
        assert data.images.shape == (len(rows), 3, 8, 8) and data.images.dtype == torch.uint8
        assert {k: v.tolist() for k, v in data.labels.items()} == naive_celeba_labels(attrs, rows)
    assert data.label_names["hair"] == ["black", "blond", "brown", "gray"]


def test_celeba_stand_in_own_split_is_seeded(tmp_path, offline):
    _, attrs = write_celeba(tmp_path, None)
    train = load_celeba("train", size=6, root=tmp_path, test_fraction=0.25, seed=1)
    test = load_celeba("test", size=6, root=tmp_path, test_fraction=0.25, seed=1)
    assert (len(train), len(test)) == (7, 2)  # 9 faces kept, round(0.25 * 9) = 2 for test
    again = load_celeba("test", size=6, root=tmp_path, test_fraction=0.25, seed=1)
    assert torch.equal(again.images, test.images)
    # the two splits partition the kept faces: their label multisets add up to the naive ones
    kept = [i for i in range(12) if i not in (4, 5, 10)]
    naive = naive_celeba_labels(attrs, kept)
    for name in naive:
        assert sorted(train.labels[name].tolist() + test.labels[name].tolist()) == sorted(naive[name])
    with pytest.raises(ValueError, match="valid"):
        load_celeba("valid", size=6, root=tmp_path)
    with pytest.raises(ValueError, match="test_fraction"):
        load_celeba("train", root=tmp_path, test_fraction=1.0)


def test_celeba_center_crop_keeps_the_middle(tmp_path, offline):
    folder = tmp_path / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    image = np.zeros((30, 10, 3), np.uint8)  # tall: rows 10..19 are the centre square, painted white
    image[10:20] = 255
    Image.fromarray(image).save(folder / "img_align_celeba" / "000001.jpg", quality=100)
    row = ["1" if a in ("Black_Hair", "Male") else "-1" for a in ATTRS]
    text = "1\n" + " ".join(ATTRS) + "\n000001.jpg " + " ".join(row) + "\n"
    (folder / "list_attr_celeba.txt").write_text(text)
    data = load_celeba("train", size=5, root=tmp_path, test_fraction=0.5)
    data = data if len(data) else load_celeba("test", size=5, root=tmp_path, test_fraction=0.5)
    assert data.images.shape == (1, 3, 5, 5) and data.images.min() > 240


# --- captions, ImageNet


def test_flickr30k_stand_in_in_karpathy_layout(tmp_path, offline):
    folder = tmp_path / "flickr30k"
    (folder / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    doc = {"dataset": "flickr30k", "images": []}
    for i, split in enumerate(["train", "test", "test", "val", "test"]):
        name = f"{1000 + i}.jpg"
        (folder / "images" / name).write_bytes(jpeg_bytes(rng.integers(0, 256, (20 + i, 30, 3), np.uint8)))
        doc["images"].append(
            {
                "filename": name,
                "split": split,
                "imgid": i,
                "sentences": [{"raw": f" caption {i}.{k} ", "tokens": []} for k in range(5)],
            }
        )
    (folder / "dataset_flickr30k.json").write_text(json.dumps(doc))
    data = load_flickr30k(root=tmp_path, split="test", size=16)
    assert [p.name for p in data.paths] == ["1001.jpg", "1002.jpg", "1004.jpg"]
    assert data.captions[0] == [f"caption 1.{k}" for k in range(5)]
    images = data.load_images()
    assert images.shape == (3, 3, 16, 16) and images.dtype == torch.uint8
    texts, owner = data.flat()
    assert len(texts) == 15 and owner.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert data.open(2).size == (30, 24)
    assert sources.last_load("flickr30k-test").source == "local"


def test_imagenet_folder_and_missing(tmp_path, offline):
    with pytest.raises(sources.DataNotFoundError, match="ImageNet"):
        load_imagenet("val", root=tmp_path)
    for wnid in ("n01440764", "n01443537"):
        (tmp_path / "imagenet" / "val" / wnid).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "imagenet" / "val" / wnid / "a.JPEG")
    data = load_imagenet("val", root=tmp_path)
    assert len(data) == 2 and data.classes == ["n01440764", "n01443537"] and data[1][1] == 1


# --- figures, CLI


def test_image_grid(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    fig = image_grid(images, nrow=2, titles=list("abcde"))
    assert len([a for a in fig.axes if a.images]) == 5 and fig.axes[0].get_title() == "a"
    fig2, ax = plt.subplots()
    assert image_grid(images.float() / 255, ax=ax) is fig2
    grey = image_grid(torch.rand(3, 1, 8, 8), nrow=8)
    assert len(grey.axes) == 3
    with pytest.raises(ValueError, match="titles"):
        image_grid(images, titles=["a"])
    plt.close("all")


@pytest.mark.slow
def test_cli_data_list_runs_and_the_library_imports_neither_matplotlib_nor_the_book(tmp_path):
    """``python -m mcl data list`` in a fresh interpreter, then every module of the library: none of them
    imports matplotlib or the book's package (mclbook)."""
    env = {**os.environ, sources.ENV_ROOT: str(tmp_path)}
    env.pop(sources.ENV_MIRROR, None)
    code = (
        "import runpy, sys; sys.argv = ['mcl', 'data', 'list']\n"
        "try:\n    runpy.run_module('mcl', run_name='__main__')\n"
        "except SystemExit as exit:\n    assert exit.code == 0, exit.code\n"
        "import importlib, pkgutil, mcl\n"
        "for m in pkgutil.walk_packages(mcl.__path__, 'mcl.'):\n    importlib.import_module(m.name)\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib was imported'\n"
        "assert not [m for m in sys.modules if m.startswith('mclbook')], 'the book was imported'\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    for name in sources.SPECS:
        assert name in out.stdout
    assert str(tmp_path) in out.stdout and "trifeature" in out.stdout
