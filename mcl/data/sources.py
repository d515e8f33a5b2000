"""Where data comes from: a local data root, an offline mirror, or the usual download, in that order.

1. **Local data root** (:func:`data_root`): ``root=`` if given, else ``$MCL_DATA_ROOT``, else the
   checkout's ``data/`` folder (when ``mcl`` is imported from a checkout and that folder is
   writable), else ``$XDG_CACHE_HOME/mcl`` (``~/.cache/mcl``). It holds the data sets in their
   usual on-disk layouts (see ``SPECS[name].layout``) and the decoded-array cache (``cache/``).
2. **Offline mirror**: the read-only directory named by ``$MCL_DATA_MIRROR`` (CI sets it to
   ``../shared/data``). Its files are checked against the sha256 values in :data:`MANIFEST`
   (a mismatch raises :class:`ChecksumError`), then either unpacked into the data root with
   :func:`safe_extract` (COCO, whose loader hands out file paths) or read in place, straight from
   the verified files (MNIST's ``.gz`` files; the CIFAR-10 and CelebA archives, whose 60,000 and
   10,000 small JPEGs are decoded from the archive in memory, several times faster than writing them
   out as files first). Only decoded arrays are written to the data root then.
3. **Download**: torchvision's ``download=True`` (MNIST, CIFAR-10, CelebA) when the data set's
   host answers within ``$MCL_DOWNLOAD_TIMEOUT`` seconds (default 10; also the socket timeout of
   the download itself). ``MCL_DATA_OFFLINE=1`` skips this step.

When all three fail, :func:`find` raises one :class:`DataNotFoundError` that lists every source
tried, where, why it failed, and how to fix it. Every load is also recorded
(:func:`history`), so callers and ``python -m mcl data prepare`` can tell what came from where.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import math
import os
import posixpath
import re
import shutil
import socket
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mcl.data import cache

ENV_ROOT = "MCL_DATA_ROOT"
ENV_MIRROR = "MCL_DATA_MIRROR"
ENV_OFFLINE = "MCL_DATA_OFFLINE"
ENV_TIMEOUT = "MCL_DOWNLOAD_TIMEOUT"

# sha256 of every file of the offline mirror, by its path inside the mirror (its README lists them).
MANIFEST: dict[str, str] = {
    "mnist/train-images-idx3-ubyte.gz": "0b367032e93c5d0cea0925647cfdb18614af8ee15f83e6f2fc2ad904a6835971",
    "mnist/train-labels-idx1-ubyte.gz": "1787548bbe0bff1ec2ecdc0ef292b02df999e2d1a6002d27500982c652b17203",
    "mnist/t10k-images-idx3-ubyte.gz": "1a1a05eab793c14bb050b398624a11b0ffd1a2953baed553b1b9bd079e2a20be",
    "mnist/t10k-labels-idx1-ubyte.gz": "b91679a0acfe4ba0e50a2437a903084cba1f5f92592b016a25a7dfd00455798b",
    "cifar10-jpeg.tar.gz": "ab0442252bfa5b91e194b7ae852105a810c5433ca51705a6e0ccf34f2600000b",
    "celeba-subset.tar.gz": "dd16d624c0ecef956d7618af36d719b14dc8fc23db8d4db9a542dd1a34c5064c",
    "coco-mini.tar.gz": "784aea5a46db79dc7cb2e09eef298af68ef12122d4dbd31fcaea256aa9a3ae19",
}


class DataNotFoundError(FileNotFoundError):
    """No source had the data set; the message lists what was tried and how to fix it."""


class ChecksumError(ValueError):
    """A mirror file's sha256 differs from :data:`MANIFEST`."""


class UnsafeArchiveError(ValueError):
    """An archive member would land outside the destination, or is a device, FIFO or odd link."""


# ----------------------------------------------------------------------------------------------
# The data root and the mirror


def default_root() -> Path:
    """The checkout's ``data/`` when importable from a writable checkout, else ``~/.cache/mcl``."""
    import mcl

    checkout = Path(mcl.__file__).resolve().parents[1]
    candidate = checkout / "data"
    if (checkout / "pyproject.toml").is_file() and candidate.is_dir() and os.access(candidate, os.W_OK):
        return candidate
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "mcl"


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The local data root, created if missing: ``root``, else ``$MCL_DATA_ROOT``, else the default."""
    if root is not None:
        named = f"root={str(root)!r}"
    elif os.environ.get(ENV_ROOT):
        root, named = os.environ[ENV_ROOT], f"${ENV_ROOT}={os.environ[ENV_ROOT]!r}"
    else:
        root = default_root()
        named = f"the default data root {str(root)!r}"
    path = Path(root).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(
            f"{named} is a file, not a folder; point it at a folder (created if missing) for the data sets "
            "and their cache"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(
            f"{named} cannot be created ({err.strerror or err}); point it at a writable folder"
        ) from None
    return path


def mirror_dir() -> Path | None:
    """The mirror named by ``$MCL_DATA_MIRROR``, or ``None`` when the variable is unset or empty."""
    value = os.environ.get(ENV_MIRROR)
    return Path(value).expanduser() if value else None


# ----------------------------------------------------------------------------------------------
# Checksums and safe extraction


def verify_sha256(path: Path, expected: str) -> None:
    """Raise :class:`ChecksumError` naming ``path``, the expected and the actual hash on a mismatch."""
    actual = cache.sha256_file(path)
    if actual != expected:
        raise ChecksumError(
            f"{path}: sha256 is {actual}, expected {expected} (mcl.data.sources.MANIFEST). The file is "
            "corrupted or a different version; replace it with an intact copy."
        )


def _inside(base: str, path: str) -> bool:
    return path == base or path.startswith(base.rstrip(os.sep) + os.sep)


def _check_member(member: tarfile.TarInfo) -> None:
    """Refuse a member that is not a plain file or folder, or whose name is absolute or climbs out."""
    name = member.name
    if member.issym() or member.islnk():
        kind = "symbolic" if member.issym() else "hard"
        raise UnsafeArchiveError(
            f"archive member {name!r} is a {kind} link (-> {member.linkname!r}); the data archives hold only "
            "plain files and folders, so the archive is refused and nothing was written"
        )
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(
            f"archive member {name!r} is a device, FIFO or other special file; the archive is refused"
        )
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or posixpath.isabs(name):
        raise UnsafeArchiveError(f"archive member {name!r} has an absolute path; the archive is refused")
    parts = posixpath.normpath(name).split("/")
    if parts[0] == ".." or ".." in name.replace("\\", "/").split("/"):
        raise UnsafeArchiveError(f"archive member {name!r} climbs out of the folder with '..'; refused")


def _target(root: str, member: tarfile.TarInfo) -> str:
    """Where ``member`` is written below the real folder ``root``, checked after resolving every link."""
    target = os.path.join(root, *posixpath.normpath(member.name).split("/"))
    folder = target if member.isdir() else os.path.dirname(target)
    os.makedirs(folder, exist_ok=True)
    real = os.path.realpath(folder)
    if not _inside(root, real) or os.path.islink(target):
        raise UnsafeArchiveError(f"archive member {member.name!r} would be written outside {root}; refused")
    return os.path.join(real, os.path.basename(target)) if not member.isdir() else real


def _merge(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``; directories that exist already are merged file by file. A link at ``dst``
    is refused: extraction never writes through a link."""
    if dst.is_symlink():
        raise UnsafeArchiveError(
            f"{dst} is a symbolic link and extraction does not write through links; remove it (or point "
            f"${ENV_ROOT} at another folder) and try again"
        )
    if dst.is_dir() and not dst.is_symlink() and src.is_dir() and not src.is_symlink():
        for child in src.iterdir():
            _merge(child, dst / child.name)
    else:
        os.replace(src, dst)


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike) -> list[str]:
    """Unpack a tar archive into ``dest``; return its top-level names.

    Every member is checked before anything is written, and the archive is refused as a whole
    (:class:`UnsafeArchiveError`, naming the member) when one is a symbolic or hard link, a device or
    FIFO, or has an absolute name or a ``..`` part: the project's archives hold only plain files and
    folders. Each file is then written by this function itself (no ``extractall``) into a fresh
    temporary folder inside ``dest``, its folder resolved against that temporary folder's real path
    before writing, and the result is renamed into place, so an interrupted extraction leaves no
    half-written data set behind.
    """
    dest_path = Path(dest)
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        for member in members:
            _check_member(member)
        dest_path.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest_path))
        root = os.path.realpath(tmp)
        try:
            for member in members:
                target = _target(root, member)
                if member.isdir():
                    continue
                source = tar.extractfile(member)
                flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
                with source, os.fdopen(os.open(target, flags, 0o644), "wb") as out:
                    shutil.copyfileobj(source, out)
            tops = sorted(p.name for p in tmp.iterdir())
            for top in tops:
                _merge(tmp / top, dest_path / top)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return tops


def read_archive(archive: str | os.PathLike, prefix: str = "") -> dict[str, bytes]:
    """The regular files of a tar(.gz) archive whose names start with ``prefix``: name -> bytes.

    Reads the archive into memory without writing anything to disk (the mirror's archives are
    small: at most 92 MB unpacked).
    """
    data = Path(archive).read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {
            m.name: data[m.offset_data : m.offset_data + m.size]
            for m in tar.getmembers()
            if m.isfile() and m.name.startswith(prefix)
        }


# ----------------------------------------------------------------------------------------------
# The data sets' specs: local layout, mirror files, download


@dataclass(frozen=True)
class Spec:
    """Where one data set can come from.

    present(root, split) returns the data set's folder when its local layout is complete.
    mirror lists the data set's files in the mirror (keys of :data:`MANIFEST`); read_in_place names
    the mirror path handed to the decoder as is (a folder or an archive), or is ``None`` to unpack
    the mirror's archives into the root and use the local layout that results.
    """

    name: str
    title: str
    layout: str
    present: Callable[[Path, str | None], Path | None]
    mirror: tuple[str, ...] = ()
    read_in_place: str | None = None
    mirror_splits: tuple[str, ...] | None = None  # splits the mirror holds (None: all)
    download: Callable[[Path], None] | None = None
    download_host: str | None = None
    manual: str = ""


_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _mnist_present(root: Path, split: str | None) -> Path | None:
    raw = root / "MNIST" / "raw"
    ok = all((raw / f).is_file() or (raw / f"{f}.gz").is_file() for f in _MNIST_FILES)
    return raw if ok else None


def _cifar_present(root: Path, split: str | None) -> Path | None:
    batches = root / "cifar-10-batches-py"
    if all((batches / f).is_file() for f in ("data_batch_1", "data_batch_5", "test_batch")):
        return batches
    folders = root / "cifar10"
    if all((folders / s / c).is_dir() for s in ("train", "test") for c in CIFAR10_CLASSES):
        return folders
    return None


def _celeba_present(root: Path, split: str | None) -> Path | None:
    folder = root / "celeba"
    ok = (folder / "img_align_celeba").is_dir() and (folder / "list_attr_celeba.txt").is_file()
    return folder if ok else None


def _coco_present(root: Path, split: str | None) -> Path | None:
    folder = root / "coco"
    split = split or "val2017"
    ok = (folder / split).is_dir() and (folder / "annotations" / f"captions_{split}.json").is_file()
    return folder if ok else None


FLICKR_IMAGE_DIRS = ("images", "flickr30k-images")


def _flickr_present(root: Path, split: str | None) -> Path | None:
    folder = root / "flickr30k"
    has_images = any((folder / d).is_dir() for d in FLICKR_IMAGE_DIRS)
    return folder if has_images and (folder / "dataset_flickr30k.json").is_file() else None


def _imagenet_present(root: Path, split: str | None) -> Path | None:
    folder = root / "imagenet" / (split or "train")
    return folder.parent if folder.is_dir() and any(p.is_dir() for p in folder.iterdir()) else None


def _download_mnist(root: Path) -> None:
    from torchvision.datasets import MNIST

    for train in (True, False):
        MNIST(root, train=train, download=True)


def _download_cifar10(root: Path) -> None:
    from torchvision.datasets import CIFAR10

    CIFAR10(root, train=True, download=True)


def _download_celeba(root: Path) -> None:
    from torchvision.datasets import CelebA

    CelebA(root, split="all", target_type="attr", download=True)


SPECS: dict[str, Spec] = {
    "mnist": Spec(
        "mnist",
        "MNIST",
        "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]",
        _mnist_present,
        mirror=tuple(f"mnist/{f}.gz" for f in _MNIST_FILES),
        read_in_place="mnist",
        download=_download_mnist,
        download_host="https://ossci-datasets.s3.amazonaws.com",
        manual="http://yann.lecun.com/exdb/mnist/",
    ),
    "cifar10": Spec(
        "cifar10",
        "CIFAR-10",
        "cifar-10-batches-py/{data_batch_1..5,test_batch} or cifar10/{train,test}/<class>/*.jpg",
        _cifar_present,
        mirror=("cifar10-jpeg.tar.gz",),
        read_in_place="cifar10-jpeg.tar.gz",
        download=_download_cifar10,
        download_host="https://www.cs.toronto.edu",
        manual="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    ),
    "celeba": Spec(
        "celeba",
        "CelebA",
        "celeba/img_align_celeba/*.jpg + celeba/list_attr_celeba.txt (+ celeba/list_eval_partition.txt)",
        _celeba_present,
        mirror=("celeba-subset.tar.gz",),
        read_in_place="celeba-subset.tar.gz",
        download=_download_celeba,
        download_host="https://drive.google.com",
        manual="https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (Align&Cropped images, attribute list)",
    ),
    "coco": Spec(
        "coco",
        "COCO captions",
        "coco/<split>/*.jpg + coco/annotations/captions_<split>.json",
        _coco_present,
        mirror=("coco-mini.tar.gz",),
        mirror_splits=("val2017",),
        manual="https://cocodataset.org/#download (2017 val images, 2017 train/val annotations)",
    ),
    "flickr30k": Spec(
        "flickr30k",
        "Flickr30k",
        "flickr30k/images/*.jpg (or flickr30k/flickr30k-images/*.jpg) + flickr30k/dataset_flickr30k.json",
        _flickr_present,
        manual="the Flickr30k images (https://shannon.cs.illinois.edu/DenotationGraph/) and Karpathy's "
        "dataset_flickr30k.json (https://cs.stanford.edu/people/karpathy/deepimagesent/)",
    ),
    "imagenet": Spec(
        "imagenet",
        "ImageNet",
        "imagenet/{train,val}/<wnid>/*.JPEG",
        _imagenet_present,
        manual="https://image-net.org/download (ILSVRC2012; val sorted into <wnid>/ folders)",
    ),
}


# ----------------------------------------------------------------------------------------------
# Finding a data set


@dataclass
class Attempt:
    """One source tried: which, where, and what happened."""

    source: str  # "local" | "mirror" | "download"
    where: str
    ok: bool
    detail: str


@dataclass
class Found:
    """A data set located on disk, under the data root."""

    name: str
    source: str  # where it came from this time: "local", "mirror" or "download"
    path: Path
    attempts: list[Attempt]
    seconds: float


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def _probe(url: str, timeout: float) -> None:
    """Raise OSError unless ``url``'s host accepts a TCP connection within ``timeout`` seconds."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/")[0]
    port = 443 if scheme == "https" else 80
    with socket.create_connection((host, port), timeout=timeout):
        pass


def _from_mirror(spec: Spec, root: Path, split: str | None) -> Attempt | Path:
    mirror = mirror_dir()
    if mirror is None:
        return Attempt("mirror", f"${ENV_MIRROR}", False, f"${ENV_MIRROR} is not set")
    if not mirror.is_dir():
        return Attempt("mirror", str(mirror), False, "not a directory")
    if not spec.mirror:
        return Attempt("mirror", str(mirror), False, f"the mirror holds no copy of {spec.title}")
    if spec.mirror_splits is not None and split not in spec.mirror_splits:
        return Attempt(
            "mirror",
            str(mirror),
            False,
            f"the mirror holds only the split(s) {', '.join(spec.mirror_splits)}, not {split!r}",
        )
    missing = [f for f in spec.mirror if not (mirror / f).is_file()]
    if missing:
        return Attempt("mirror", str(mirror), False, f"missing {', '.join(missing)}")
    for rel in spec.mirror:
        verify_sha256(mirror / rel, MANIFEST[rel])
    if spec.read_in_place is not None:
        return mirror / spec.read_in_place
    for rel in spec.mirror:
        safe_extract(mirror / rel, root)
    path = spec.present(root, split)
    if path is None:
        unpacked = ", ".join(spec.mirror)
        return Attempt("mirror", str(mirror), False, f"unpacked {unpacked} but found no {spec.layout}")
    return path


def download_timeout() -> float:
    """Seconds from ``$MCL_DOWNLOAD_TIMEOUT`` (default 10); ValueError naming the variable unless it is a
    finite number > 0."""
    value = os.environ.get(ENV_TIMEOUT, "").strip() or "10"
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(
            f"${ENV_TIMEOUT}={value!r} is not a number of seconds > 0; set it to e.g. 10, or unset it"
        )
    return seconds


def _from_download(spec: Spec, root: Path) -> Attempt | Path:
    if spec.download is None:
        return Attempt("download", "-", False, f"{spec.title} has no automatic download")
    if os.environ.get(ENV_OFFLINE, "") not in ("", "0"):
        return Attempt("download", spec.download_host or "-", False, f"skipped: {ENV_OFFLINE} is set")
    timeout = download_timeout()
    try:
        _probe(spec.download_host, timeout)
        with _socket_timeout(timeout):
            spec.download(root)
    except Exception as err:  # noqa: BLE001 - any failure of a download is reported, not raised
        return Attempt("download", spec.download_host or "-", False, f"{type(err).__name__}: {err}")
    path = spec.present(root, None)
    if path is None:
        return Attempt("download", spec.download_host, False, f"downloaded, but found no {spec.layout}")
    return path


def find(
    name: str, root: str | os.PathLike | None = None, *, split: str | None = None, download: bool = True
) -> Found:
    """Locate data set ``name`` (a key of :data:`SPECS`) under the data root, fetching it if needed.

    Tries the local layout, then the mirror (verify, unpack), then the download; raises
    :class:`DataNotFoundError` listing all three when none works.
    """
    if name not in SPECS:
        raise ValueError(f"name={name!r} is not a known data set; choose one of {sorted(SPECS)}")
    spec = SPECS[name]
    base = data_root(root)
    start = time.perf_counter()
    attempts: list[Attempt] = []

    path = spec.present(base, split)
    if path is not None:
        return Found(
            name, "local", path, [Attempt("local", str(base), True, str(path))], time.perf_counter() - start
        )
    attempts.append(Attempt("local", str(base), False, f"no {spec.layout}"))

    steps: list[tuple[str, Callable[[], Attempt | Path]]] = [
        ("mirror", lambda: _from_mirror(spec, base, split))
    ]
    if download:
        steps.append(("download", lambda: _from_download(spec, base)))
    for source, step in steps:
        result = step()
        if isinstance(result, Path):
            attempts.append(Attempt(source, str(result), True, "ok"))
            return Found(name, source, result, attempts, time.perf_counter() - start)
        attempts.append(result)
    raise DataNotFoundError(_not_found_message(spec, base, split, attempts))


def _not_found_message(spec: Spec, root: Path, split: str | None, attempts: list[Attempt]) -> str:
    what = spec.title + (f" ({split})" if split else "")
    lines = [f"{what} was not found. Tried, in order:"]
    for i, a in enumerate(attempts, 1):
        lines.append(f"  {i}. {a.source} ({a.where}): {a.detail}")
    fixes = [f"put the data at {root} in the layout {spec.layout} (set ${ENV_ROOT} to use another root)"]
    if spec.mirror:
        fixes.append(
            f"set ${ENV_MIRROR} to a mirror folder holding {', '.join(spec.mirror)} "
            "(e.g. export MCL_DATA_MIRROR=../shared/data)"
        )
    if spec.download is not None:
        fixes.append("run on a machine with internet access (the download is automatic)")
    if spec.manual:
        fixes.append(f"get it by hand from {spec.manual}")
    lines.append("To fix it, do one of: " + "; or ".join(fixes) + ".")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# The record of what was loaded from where


@dataclass
class LoadRecord:
    """One load: the cache key, where the data came from this time, the file read, and the time taken."""

    key: str
    source: str  # "cache", "local", "mirror" or "download"
    path: Path  # the cache sidecar for cached arrays, else the data set's folder
    seconds: float
    origin: str = ""  # for "cache": where the cached data originally came from


_HISTORY: list[LoadRecord] = []


def record(entry: LoadRecord) -> None:
    _HISTORY.append(entry)


def record_found(key: str, found: Found) -> None:
    """Record a data set handed out straight from where :func:`find` located it (no array cache)."""
    record(LoadRecord(key, found.source, found.path, found.seconds, f"{found.source}: {found.path}"))


def history() -> list[LoadRecord]:
    """Every load of this process, oldest first."""
    return list(_HISTORY)


def last_load(key: str) -> LoadRecord | None:
    """The latest load of ``key`` (e.g. ``"cifar10-train"``), or ``None``."""
    return next((r for r in reversed(_HISTORY) if r.key == key), None)


def load_cached(
    key: str,
    root: Path,
    name: str,
    decode: Callable[[Found], tuple[dict[str, np.ndarray], dict[str, Any]]],
    *,
    split: str | None = None,
    mmap: bool = False,
) -> cache.CacheEntry:
    """The cache entry ``key``, built on a miss by ``decode(find(name, root, split=split))``.

    The load is recorded (:func:`history`): source ``"cache"`` on a hit, else where it was found.
    """
    start = time.perf_counter()
    found: list[Found] = []

    def build() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        located = find(name, root, split=split)
        found.append(located)
        arrays, meta = decode(located)
        return arrays, {**meta, "source": located.source, "origin": str(located.path)}

    entry = cache.cached(root, key, build, mmap=mmap)
    source = "cache" if entry.hit else found[0].source
    origin = f"{entry.meta.get('source', '?')}: {entry.meta.get('origin', '?')}"
    record(LoadRecord(key, source, entry.path, time.perf_counter() - start, origin))
    return entry


def check_split(split: str, allowed: tuple[str, ...]) -> None:
    """Raise ValueError naming ``split`` unless it is one of ``allowed``."""
    if split not in allowed:
        raise ValueError(f"split={split!r} is not available; use one of {', '.join(map(repr, allowed))}")
