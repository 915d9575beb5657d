"""Datasets for hashing: scikit-learn digits, CIFAR-10 and NUS-WIDE/COCO-style image lists.

Every loader returns a :class:`HashingDataset` whose labels are multi-hot ``(n, C)`` float32
(single-label data converted once with :func:`hashnb.utils.to_multihot`), so that
"relevant = shares at least one label" holds everywhere.

Sources
-------
* ``digits``: scikit-learn's bundled 8x8 digits (UCI optdigits test set), always offline.
* ``cifar10``: A. Krizhevsky, *Learning Multiple Layers of Features from Tiny Images*, tech.
  report, University of Toronto, 2009. Read from torchvision's ``cifar-10-batches-py`` pickles
  (parsed here with numpy; torchvision is not needed for reading) or from a ``cifar10.npz``
  (``x_train, y_train, x_test, y_test``; uint8, channels last). The 50,000 train images come
  first, then the 10,000 test images: the fixed order the protocols in
  :mod:`hashnb.data.protocols` rely on. Nothing is ever substituted silently: when no copy is
  found (and downloading is off or fails) :class:`DatasetNotFoundError` says where to put one.
* Image lists: the ``"relative/path.jpg 0 1 0 ..."`` format of the HashNet lists
  (Cao et al., ICCV 2017; github.com/thuml/HashNet) used for NUS-WIDE, MS-COCO and
  ImageNet-100. Images are opened with Pillow only when indexed.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..utils import cache_dir, to_multihot
from .packed import FORMAT, find_packed, pack_dataset, read_packed

__all__ = [
    "HashingDataset", "DatasetNotFoundError", "load_dataset", "load_digits", "load_cifar10",
    "load_image_list", "TorchImageDataset", "CIFAR10_CLASSES", "DATASETS",
]

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"  # torchvision.datasets.CIFAR10.tgz_md5
_CIFAR10_TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
_CIFAR10_TEST_BATCHES = ["test_batch"]
_DOWNLOAD_TIMEOUT_S = 30.0  # per socket operation: a dead network fails, a slow one proceeds

DATASETS = ("digits", "cifar10")


class DatasetNotFoundError(FileNotFoundError):
    """No copy of a dataset was found where one may be, and it could not be downloaded."""


# ----------------------------------------------------------------------------- dataset object
@dataclass(eq=False)
class HashingDataset:
    """A retrieval dataset: inputs, multi-hot labels and class names.

    Attributes
    ----------
    name : str
        ``"digits"``, ``"cifar10"``, the list-file stem for image lists, ... Protocols use it to
        choose their default (see :func:`hashnb.data.make_split`).
    x : np.ndarray or None
        ``kind == "image"``: uint8 ``(n, H, W, 3)`` (channels last, RGB);
        ``kind == "vector"``: float32 ``(n, d)``; ``None`` for lazily loaded image lists.
    labels : np.ndarray
        float32 ``(n, C)`` multi-hot.
    classes : list of str
        ``C`` class names.
    kind : {"image", "vector"}
    paths : list of str, optional
        Image lists only: paths relative to ``root``, loaded with Pillow when indexed.
    root : pathlib.Path, optional
        Image lists only.
    images : np.ndarray, optional
        Extra pictures for display (``digits``: float ``(n, 8, 8)`` in [0, 1]).
    meta : dict
        Free-form provenance: ``source`` (file read), ``n_train`` (CIFAR-10: 50,000),
        ``line_numbers`` (image lists), ``features`` (for :func:`load_features`), ...

    ``len(ds)`` is the number of items and ``ds[i]`` returns ``(x_i, y_i)``: an image as
    uint8 ``(H, W, 3)`` or a float32 vector, and its float32 ``(C,)`` label row.
    """

    name: str
    x: np.ndarray | None
    labels: np.ndarray
    classes: list[str]
    kind: str = "image"
    paths: list[str] | None = None
    root: Path | None = None
    images: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in ("image", "vector"):
            raise ValueError(f"kind must be 'image' or 'vector', got {self.kind!r}")
        y = np.asarray(self.labels)
        self.labels = to_multihot(y, len(self.classes) if y.ndim == 1 else None)
        n = len(self.labels)
        if self.x is None:
            if self.paths is None:
                raise ValueError("a dataset needs either an array x or a list of image paths")
            if len(self.paths) != n:
                raise ValueError(f"{len(self.paths)} paths but {n} label rows")
        elif len(self.x) != n:
            raise ValueError(f"x has {len(self.x)} rows but labels have {n}")
        if self.labels.shape[1] != len(self.classes):
            raise ValueError(f"labels have {self.labels.shape[1]} columns but there are "
                             f"{len(self.classes)} class names")
        self._fp: str | None = None
        self._cfp: str | None = None

    # -- basic protocol
    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        return self.get_x(i), self.labels[i]

    def __repr__(self) -> str:
        shape = "lazy image list" if self.x is None else f"x={self.x.shape} {self.x.dtype}"
        return (f"HashingDataset(name={self.name!r}, n={len(self)}, kind={self.kind!r}, {shape}, "
                f"classes={self.num_classes}, single_label={self.is_single_label})")

    # -- labels
    @property
    def num_classes(self) -> int:
        return self.labels.shape[1]

    @property
    def is_single_label(self) -> bool:
        """True when every row has exactly one positive label."""
        return bool(np.all(self.labels.sum(1) == 1))

    @property
    def label_ids(self) -> np.ndarray:
        """int64 ``(n,)`` class ids; only defined for single-label data."""
        if not self.is_single_label:
            raise ValueError(f"{self.name!r} is multi-label: use .labels (n, C) instead of ids")
        return self.labels.argmax(1).astype(np.int64)

    # -- inputs
    @property
    def is_lazy(self) -> bool:
        return self.x is None

    def get_x(self, i: int) -> np.ndarray:
        """Item ``i``: uint8 ``(H, W, 3)`` image or float32 ``(d,)`` vector."""
        if self.x is not None:
            return self.x[i]
        return self.load_image(i)

    def load_image(self, i: int) -> np.ndarray:
        """Open image ``i`` of an image list with Pillow -> uint8 ``(H, W, 3)`` RGB."""
        from PIL import Image

        i = int(i) % len(self)
        path = Path(self.root or ".") / self.paths[i]
        line = self.meta.get("line_numbers", [None] * len(self))[i]
        where = f" (line {line} of {self.meta.get('source')})" if line is not None else ""
        if not path.is_file():
            raise FileNotFoundError(f"image {path} not found{where}; check root={self.root}")
        try:
            with Image.open(path) as im:
                return np.array(im.convert("RGB"), dtype=np.uint8)
        except OSError as e:  # PIL.UnidentifiedImageError is an OSError
            raise OSError(f"cannot read image {path}{where}: {e}") from e

    def get_images(self, indices: Sequence[int]) -> list[np.ndarray] | np.ndarray:
        """Several items: an array ``x[indices]`` in memory, else a list of loaded images."""
        idx = np.asarray(indices, dtype=np.int64)
        if self.x is not None:
            return self.x[idx]
        return [self.load_image(i) for i in idx]

    def subset(self, indices: Sequence[int], *, name: str | None = None) -> "HashingDataset":
        """A new dataset holding only ``indices`` (in that order)."""
        idx = np.asarray(indices, dtype=np.int64)
        meta = dict(self.meta)
        if "line_numbers" in meta:
            meta["line_numbers"] = [meta["line_numbers"][i] for i in idx]
        meta["subset_of"] = self.name
        return replace(
            self, name=name or f"{self.name}-subset{len(idx)}",
            x=None if self.x is None else self.x[idx], labels=self.labels[idx],
            classes=list(self.classes),
            paths=None if self.paths is None else [self.paths[i] for i in idx],
            images=None if self.images is None else self.images[idx], meta=meta)

    # -- fingerprints (cache keys)
    @property
    def fingerprint(self) -> str:
        """Hash of ``n`` and the labels: what a protocol split depends on (12 hex digits)."""
        if self._fp is None:
            self._fp = labels_fingerprint(self.labels)
        return self._fp

    @property
    def content_fingerprint(self) -> str:
        """Hash of the labels *and* the inputs (pixels, or paths and root for image lists).

        Feature caches use this one, so a JPEG copy and the lossless CIFAR-10 never share
        cached features even though their labels (and hence splits) are identical.
        """
        if self._cfp is None:
            h = hashlib.blake2b(digest_size=16)
            h.update(self.fingerprint.encode())
            if self.x is not None:
                x = np.ascontiguousarray(self.x)
                h.update(f"{x.shape}{x.dtype}".encode())
                h.update(memoryview(x).cast("B"))
            else:
                h.update(str(Path(self.root or ".").resolve()).encode())
                h.update("\n".join(self.paths).encode())
            self._cfp = h.hexdigest()[:12]
        return self._cfp


def labels_fingerprint(labels: np.ndarray) -> str:
    """sha1 of the shape and float32 bytes of multi-hot labels (first 12 hex digits)."""
    y = np.ascontiguousarray(to_multihot(np.asarray(labels)), dtype=np.float32)
    h = hashlib.sha1(f"{y.shape}".encode())
    h.update(y.tobytes())
    return h.hexdigest()[:12]


# ----------------------------------------------------------------------------- digits
def load_digits() -> HashingDataset:
    """scikit-learn's 1,797 8x8 digits: x float32 ``(1797, 64)`` in [0, 1], 10 classes.

    ``images`` keeps the ``(1797, 8, 8)`` pictures (also in [0, 1]) for display.
    """
    from sklearn.datasets import load_digits as _sk_digits

    d = _sk_digits()
    x = (d.data / 16.0).astype(np.float32)
    return HashingDataset(
        name="digits", x=x, labels=to_multihot(d.target, 10),
        classes=[str(c) for c in range(10)], kind="vector",
        images=(d.images / 16.0).astype(np.float32),
        meta={"source": "sklearn.datasets.load_digits"})


# ----------------------------------------------------------------------------- cifar10
_LAYOUTS_HELP = (
    "Accepted layouts: (1) a folder holding torchvision's 'cifar-10-batches-py/' (data_batch_1..5, "
    "test_batch); (2) a folder holding 'cifar10.npz' (x_train, y_train, x_test, y_test; uint8, "
    "channels last); (3) a parent folder holding 'cifar10/cifar10.npz' or "
    "'cifar10/cifar-10-batches-py/'; (4) the path of the .npz file itself; (5) the "
    "'cifar-10-batches-py' folder itself.")


def find_cifar10(path: Path) -> tuple[str, Path] | None:
    """Look for a CIFAR-10 copy at ``path`` -> ("npz" | "batches", location) or None."""
    path = Path(path).expanduser()
    if path.is_file():
        if path.suffix != ".npz":
            return None
        return ("packed", path) if find_packed(path) else ("npz", path)
    if not path.is_dir():
        return None
    if (path / "data_batch_1").is_file() and (path / "test_batch").is_file():
        return "batches", path
    for base in (path, path / "cifar10"):
        if (base / "cifar-10-batches-py" / "data_batch_1").is_file():
            return "batches", base / "cifar-10-batches-py"
        if (base / "cifar10.npz").is_file():
            return "npz", base / "cifar10.npz"
    packed = find_packed(path)  # a pack-cifar10 file in the folder (cifar10-jpeg.npz)
    return ("packed", packed) if packed is not None else None


def _check_cifar_arrays(x: np.ndarray, y: np.ndarray, what: str, src: Path) -> tuple:
    x = np.asarray(x)
    y = np.asarray(y)
    if x.dtype != np.uint8:
        raise ValueError(f"{src}: {what} images must be uint8, got {x.dtype}; save the raw 0..255 "
                         "pixels (x.astype(np.uint8)), not normalised floats")
    if x.ndim != 4 or x.shape[-1] != 3:
        hint = (" (this looks channels-first: use x.transpose(0, 2, 3, 1))"
                if x.ndim == 4 and x.shape[1] == 3 else "")
        raise ValueError(f"{src}: {what} images must have shape (n, H, W, 3), channels last; got "
                         f"{x.shape}{hint}")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"{src}: {what} labels must have shape ({len(x)},), got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{src}: {what} labels must be integers 0..9, got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() > 9):
        raise ValueError(f"{src}: {what} labels must lie in 0..9, found {y.min()}..{y.max()}")
    return x, y.astype(np.int64)


def _read_cifar_npz(path: Path):
    def unreadable(e):
        return ValueError(f"{path} is not a readable .npz archive ({type(e).__name__}: {e}); "
                          "copy it again or point HASHNB_DATA at an intact copy")

    try:
        d = np.load(path, allow_pickle=False)
    except Exception as e:  # zipfile.BadZipFile, ValueError, OSError
        raise unreadable(e) from e
    with d:
        missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in d.files]
        if missing:
            raise ValueError(f"{path} lacks arrays {missing}; a CIFAR-10 npz needs x_train, "
                             f"y_train, x_test, y_test (it has {d.files})")
        try:  # damaged bytes inside the archive surface only when an array is read
            arrays = {k: d[k] for k in ("x_train", "y_train", "x_test", "y_test")}
            classes = [str(c) for c in d["classes"]] if "classes" in d.files else None
        except Exception as e:  # zlib.error, BadZipFile (CRC), EOFError, ValueError
            raise unreadable(e) from e
    xtr, ytr = _check_cifar_arrays(arrays["x_train"], arrays["y_train"], "x_train/y_train", path)
    xte, yte = _check_cifar_arrays(arrays["x_test"], arrays["y_test"], "x_test/y_test", path)
    return xtr, ytr, xte, yte, classes


def _read_cifar_batches(folder: Path):
    def read(names):
        xs, ys = [], []
        for nm in names:
            p = folder / nm
            if not p.is_file():
                raise DatasetNotFoundError(f"{folder} is missing {nm}; a complete "
                                           f"cifar-10-batches-py holds data_batch_1..5 and test_batch")
            with open(p, "rb") as f:
                try:
                    entry = pickle.load(f, encoding="latin1")
                except Exception as e:
                    raise ValueError(f"{p} is not a CIFAR-10 python batch: {e}") from e
            if not isinstance(entry, dict) or "data" not in entry:
                raise ValueError(f"{p} has no 'data' entry: not a CIFAR-10 python batch")
            data = np.asarray(entry["data"])
            labels = entry.get("labels", entry.get("fine_labels"))
            if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
                raise ValueError(f"{p}: 'data' must be uint8 (n, 3072), got {data.dtype} {data.shape}")
            xs.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            ys.append(np.asarray(labels))
        return np.ascontiguousarray(np.concatenate(xs)), np.concatenate(ys)

    xtr, ytr = _check_cifar_arrays(*read(_CIFAR10_TRAIN_BATCHES), "train batches", folder)
    xte, yte = _check_cifar_arrays(*read(_CIFAR10_TEST_BATCHES), "test_batch", folder)
    classes = None
    meta = folder / "batches.meta"
    if meta.is_file():
        with open(meta, "rb") as f:
            classes = list(pickle.load(f, encoding="latin1").get("label_names", [])) or None
    return xtr, ytr, xte, yte, classes


def _download_allowed(download: bool | None) -> bool:
    if download is not None:
        return bool(download)
    return os.environ.get("HASHNB_DOWNLOAD", "1").strip().lower() not in ("0", "false", "no", "off")


def _download_cifar10(target: Path) -> Path:
    """torchvision's download + md5 check + extraction into ``target``; never hangs."""
    try:
        from torchvision.datasets.utils import download_and_extract_archive
    except ImportError as e:
        raise DatasetNotFoundError(
            "downloading CIFAR-10 needs torchvision (pip install torchvision); or place a copy "
            f"yourself and point HASHNB_DATA at it. {_LAYOUTS_HELP}") from e
    target.mkdir(parents=True, exist_ok=True)
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(_DOWNLOAD_TIMEOUT_S)  # urllib in torchvision passes no timeout
    try:
        download_and_extract_archive(CIFAR10_URL, str(target), filename="cifar-10-python.tar.gz",
                                     md5=CIFAR10_MD5, remove_finished=True)
    except Exception as e:  # URLError, timeout, RuntimeError (bad md5), OSError
        raise DatasetNotFoundError(
            f"CIFAR-10 was not found locally and downloading {CIFAR10_URL} into {target} failed "
            f"({type(e).__name__}: {e}). Offline? Set HASHNB_DATA to a folder with a copy. "
            f"{_LAYOUTS_HELP}") from e
    finally:
        socket.setdefaulttimeout(old)
    return target / "cifar-10-batches-py"


def load_cifar10(*, root: str | os.PathLike | None = None,
                 download: bool | None = None) -> HashingDataset:
    """CIFAR-10, all 60,000 images: the 50,000 train images, then the 10,000 test images.

    Parameters
    ----------
    root : path, optional
        Where to look (see the accepted layouts in the error message). Default: the folder or
        file named by ``$HASHNB_DATA``, then ``cache_dir("data")`` (where downloads go).
    download : bool, optional
        ``True``: download with torchvision when no copy is found; ``False``: never.
        ``None`` (default): download unless ``$HASHNB_DOWNLOAD=0``. A failed download raises
        at once (30 s socket timeout); nothing else is ever substituted.

    Returns
    -------
    HashingDataset
        ``x`` uint8 ``(60000, 32, 32, 3)``, labels float32 ``(60000, 10)``,
        ``meta["n_train"] == 50000``, ``meta["source"]`` the file or folder read.

    Raises
    ------
    DatasetNotFoundError
        No copy found and downloading off or failed; the message names ``HASHNB_DATA``, the
        accepted layouts and the download option.
    ValueError
        A copy was found but has the wrong shapes, dtypes or labels.
    """
    env = os.environ.get("HASHNB_DATA")
    if root is not None:
        candidates = [Path(root)]
    else:
        candidates = ([Path(env)] if env else []) + [cache_dir("data")]
    found = None
    for c in candidates:
        found = find_cifar10(c)
        if found:
            break
    if found is None:
        if _download_allowed(download):
            target = Path(root) if root is not None else (
                Path(env) if env and not Path(env).is_file() else cache_dir("data"))
            found = ("batches", _download_cifar10(Path(target).expanduser()))
        else:
            looked = ", ".join(str(c) for c in candidates)
            raise DatasetNotFoundError(
                f"CIFAR-10 not found (looked in: {looked}; HASHNB_DATA="
                f"{env if env else '<unset>'}). Set the HASHNB_DATA environment variable (or pass "
                f"root=) to a folder with a copy. {_LAYOUTS_HELP} Or allow the download: "
                f"load_dataset('cifar10', download=True) (needs internet; HASHNB_DOWNLOAD=0 "
                f"turns the default download off).")
    fmt, where = found
    if fmt == "packed":  # JPEG bytes + labels (hashnb.data.packed), decoded with Pillow
        return load_packed_cifar10(where)
    xtr, ytr, xte, yte, classes = (_read_cifar_npz(where) if fmt == "npz"
                                   else _read_cifar_batches(where))
    if xtr.shape[1:] != xte.shape[1:]:
        raise ValueError(f"{where}: train images {xtr.shape[1:]} and test images "
                         f"{xte.shape[1:]} differ in size")
    classes = classes or list(CIFAR10_CLASSES)
    if len(classes) != 10:
        raise ValueError(f"{where}: expected 10 class names, got {len(classes)}")
    x = np.concatenate([xtr, xte])
    y = np.concatenate([ytr, yte])
    return HashingDataset(
        name="cifar10", x=x, labels=to_multihot(y, 10), classes=classes, kind="image",
        meta={"source": str(where), "format": fmt, "n_train": len(xtr), "n_test": len(xte)})


# ----------------------------------------------------------------------------- registry
_LOADERS: dict[str, Callable[..., HashingDataset]] = {
    "digits": lambda root=None, download=None: load_digits(),
    "cifar10": lambda root=None, download=None: load_cifar10(root=root, download=download),
}


def load_dataset(name: str, *, root: str | os.PathLike | None = None,
                 download: bool | None = None) -> HashingDataset:
    """Load a dataset by name: ``"digits"`` (offline, bundled) or ``"cifar10"``.

    See :func:`load_cifar10` for ``root`` and ``download``; :func:`load_image_list` for
    NUS-WIDE/COCO-style lists.
    """
    key = str(name).lower().replace("_", "-")
    key = {"cifar-10": "cifar10", "cifar": "cifar10"}.get(key, key)
    if key not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(_LOADERS)}, or use "
                         "load_image_list(list_file, root=...) for an image list")
    return _LOADERS[key](root=root, download=download)


# ----------------------------------------------------------------------------- image lists
def load_image_list(list_file: str | os.PathLike, *, root: str | os.PathLike | None = None,
                    classes: Sequence[str] | None = None, name: str | None = None,
                    check_files: bool = False) -> HashingDataset:
    """Read a HashNet-style image list: one ``"relative/path.jpg 0 1 0 ..."`` line per image.

    Parameters
    ----------
    list_file : path
        Text file; blank lines and lines starting with ``#`` are skipped. The first token
        is the path (relative to ``root``; no spaces), the rest are 0/1 labels.
    root : path, optional
        Folder the paths are relative to. Default: the folder of ``list_file``.
    classes : sequence of str, optional
        Class names; their number fixes the label count. Default ``"0", "1", ...`` with the
        count taken from the first line.
    name : str, optional
        Dataset name (default: the list file's stem).
    check_files : bool
        ``True``: check now that every image exists (error names the line). ``False``
        (default): a missing image raises when it is first indexed, naming its line.

    Returns
    -------
    HashingDataset
        ``kind="image"``, ``x=None`` (lazy), ``paths``, ``root``, labels float32 ``(n, C)``.
    """
    list_file = Path(list_file)
    if not list_file.is_file():
        raise FileNotFoundError(f"image list {list_file} does not exist")
    root = Path(root) if root is not None else list_file.parent
    n_labels = len(classes) if classes is not None else None
    paths, rows, lines = [], [], []
    with open(list_file, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            tok = line.split()
            if len(tok) < 2:
                raise ValueError(f"{list_file}, line {lineno}: expected 'path 0 1 0 ...', got "
                                 f"{line!r}")
            labels = tok[1:]
            if n_labels is None:
                n_labels = len(labels)
            if len(labels) != n_labels:
                raise ValueError(f"{list_file}, line {lineno}: {len(labels)} labels, expected "
                                 f"{n_labels} (" + ("len(classes)" if classes is not None else
                                                    "as on the first line") + ")")
            bad = [t for t in labels if t not in ("0", "1")]
            if bad:
                raise ValueError(f"{list_file}, line {lineno}: labels must be 0 or 1, found "
                                 f"{bad[0]!r}")
            if check_files and not (root / tok[0]).is_file():
                raise FileNotFoundError(f"{list_file}, line {lineno}: image {root / tok[0]} not "
                                        "found (check root=)")
            paths.append(tok[0])
            rows.append([t == "1" for t in labels])
            lines.append(lineno)
    if not paths:
        raise ValueError(f"{list_file} holds no image lines")
    labels = np.asarray(rows, dtype=np.float32)
    classes = list(classes) if classes is not None else [str(c) for c in range(n_labels)]
    return HashingDataset(
        name=name or list_file.stem, x=None, labels=labels, classes=classes, kind="image",
        paths=paths, root=root,
        meta={"source": str(list_file), "line_numbers": lines})


# ----------------------------------------------------------------------------- torch adapter
def _torch_dataset_base():
    import torch.utils.data

    return torch.utils.data.Dataset


class TorchImageDataset(_torch_dataset_base()):
    """A ``torch.utils.data.Dataset`` view of a :class:`HashingDataset`.

    Parameters
    ----------
    dataset : HashingDataset
    indices : array of int, optional
        Which items (e.g. ``split.train``); default all.
    transform : callable, optional
        Applied to the float tensor (images: ``(3, H, W)`` in [0, 1]; vectors: ``(d,)``),
        e.g. torchvision v2 transforms or a normalisation.

    Items are ``(x, y, index)``: float32 tensor, float32 ``(C,)`` label tensor and the
    index into ``dataset`` (int), which asymmetric methods (ADSH) need.
    """

    def __init__(self, dataset: HashingDataset, indices: Sequence[int] | None = None,
                 transform: Callable | None = None):
        self.dataset = dataset
        self.indices = (np.arange(len(dataset)) if indices is None
                        else np.asarray(indices, dtype=np.int64))
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= len(dataset)):
            raise IndexError(f"indices must lie in [0, {len(dataset)})")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        import torch

        j = int(self.indices[i])
        x = self.dataset.get_x(j)
        if self.dataset.kind == "image":
            t = torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1).float().div_(255.0)
        else:
            t = torch.as_tensor(np.asarray(x), dtype=torch.float32)
        if self.transform is not None:
            t = self.transform(t)
        return t, torch.from_numpy(self.dataset.labels[j]), j


def load_packed_cifar10(path, *, threads: int | None = None):
    """A packed file (or a folder holding one) as the ``"cifar10"``
    :class:`~hashnb.data.HashingDataset` (train images first, then test)."""
    where = find_packed(path)
    if where is None:
        raise FileNotFoundError(f"no packed CIFAR-10 ({FORMAT}) at {path}")
    x, labels, n_train, classes, info = read_packed(where, threads=threads)
    return HashingDataset(
        name="cifar10", x=x, labels=to_multihot(labels.astype(np.int64), len(classes)),
        classes=classes, kind="image",
        meta={"source": str(where), "format": "jpeg-packed", "jpeg_quality": info["quality"],
              "n_train": n_train, "n_test": len(x) - n_train})


def pack_cifar10(src, out, *, quality: int = 95, subsampling: str = "4:2:0",
                 max_mib: float | None = 56.0, threads: int | None = None) -> dict:
    """Pack the CIFAR-10 copy at ``src`` (a folder or file :func:`load_cifar10` reads) into
    one portable file ``out`` (JPEG bytes + labels; :func:`hashnb.data.packed.pack_dataset`
    documents the options and the returned figures). ``load_dataset("cifar10", root=out)``
    reads it back."""
    return pack_dataset(load_cifar10(root=src, download=False), out, quality=quality,
                        subsampling=subsampling, max_mib=max_mib, threads=threads, src=src)
