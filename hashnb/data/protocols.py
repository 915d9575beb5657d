"""Seeded retrieval protocols: query / train / validation / database index splits.

CIFAR-10 protocols, as the hashing literature uses them (DPSH, HashNet, CSQ and ADSH use them;
the chapters name each paper's):

* ``"cifar10"`` (DeepHash-pytorch "cifar10", P-54k): query 100/class (1,000), train 500/class
  (5,000), database = the other 54,000; query, train and database pairwise disjoint.
* ``"cifar10-1"`` (DPSH / ADSH / OrthoHash "protocol 1", P-59k): query 100/class (1,000),
  database = the other 59,000, train 500/class (5,000) drawn *from the database*.
* ``"cifar10-2"`` (GreedyHash / OrthoHash "protocol 2", P-50k): query = the 10,000 test images,
  train = database = the 50,000 train images (needs the fixed train-then-test order of
  :func:`hashnb.data.load_dataset`).
* ``"cifar10-500"`` (ours, few labels): as ``"cifar10"`` but 50 training images per class
  (500: 450 train + 50 validation), database = the other 58,500. The setting of chapter 5
  where a pairwise branch may carry what ten class centers learnt from few images miss.
* ``"digits"`` (this package's small default): query 30/class (300), train 50/class (500),
  database = the other 997, disjoint from train and query.
* ``"random"`` (for multi-label image lists, the HashNet NUS-WIDE/COCO convention):
  ``n_query`` random queries, database = everything else, ``n_train`` drawn from the
  database (``train_in_database=False`` takes train out of the database instead).

Model selection must not look at the query set, so a validation set is cut from train
(stratified by class for single-label data, ``val_fraction`` of it, 0.1 by default: 4,500
train + 500 val on ``cifar10``); ``Split.train`` excludes it and ``Split.train_full`` is
train ∪ val. Query/train sampling uses ``numpy.random.default_rng(seed)``; the validation cut
uses an independent stream ``default_rng([seed, 1])``, so changing ``val_fraction`` never
changes the query or database. Splits are cached as ``.npz`` index files under
``cache_dir("splits")``.
"""
from __future__ import annotations

import os
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..utils import cache_dir, to_multihot
from .datasets import HashingDataset, labels_fingerprint

__all__ = ["Split", "make_split", "PROTOCOLS", "default_protocol"]

_VERSION = 1  # bump when the sampling algorithm changes: old cache files are then ignored

#: Class-balanced protocols: per-class query and train counts; ``train_in_database`` says
#: whether train is drawn from the database (True) or taken out of it (False);
#: ``"test_query"`` uses the fixed train/test order instead of sampling.
PROTOCOLS: dict[str, dict[str, Any]] = {
    "cifar10": dict(kind="per_class", query_per_class=100, train_per_class=500,
                    train_in_database=False),
    "cifar10-1": dict(kind="per_class", query_per_class=100, train_per_class=500,
                      train_in_database=True),
    "cifar10-2": dict(kind="test_query", n_train=50000, n_test=10000),
    "cifar10-500": dict(kind="per_class", query_per_class=100, train_per_class=50,
                        train_in_database=False),
    "digits": dict(kind="per_class", query_per_class=30, train_per_class=50,
                   train_in_database=False),
    "random": dict(kind="random"),
}

_DEFAULTS = {"cifar10": "cifar10", "digits": "digits"}


def default_protocol(name: str | None) -> str:
    """The protocol a dataset name uses by default (``"cifar10"``, ``"digits"``)."""
    if name in _DEFAULTS:
        return _DEFAULTS[name]
    raise ValueError(f"no default protocol for dataset {name!r}: pass protocol= one of "
                     f"{sorted(PROTOCOLS)} (for image lists: protocol='random', n_query=..., "
                     "n_train=...)")


@dataclass(eq=False)
class Split:
    """Index arrays (int64, sorted, into the dataset) of one protocol split.

    Attributes
    ----------
    protocol, seed, val_fraction
        How it was made.
    train : np.ndarray
        Training items *without* the validation items.
    val : np.ndarray
        Validation items (cut from the protocol's train set).
    query, database : np.ndarray
        Retrieval queries and the database they search.
    info : dict
        Dataset name, fingerprint, protocol parameters.
    """

    protocol: str
    seed: int
    train: np.ndarray
    val: np.ndarray
    query: np.ndarray
    database: np.ndarray
    val_fraction: float = 0.1
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def train_full(self) -> np.ndarray:
        """train ∪ val: the protocol's whole training set (sorted int64)."""
        return np.sort(np.concatenate([self.train, self.val]))

    def sizes(self) -> dict[str, int]:
        return {k: len(getattr(self, k)) for k in ("train", "val", "query", "database")}

    def __repr__(self) -> str:
        s = ", ".join(f"{k}={v}" for k, v in self.sizes().items())
        return f"Split(protocol={self.protocol!r}, seed={self.seed}, {s})"


# ----------------------------------------------------------------------------- helpers
def _as_labels(dataset) -> tuple[np.ndarray, str, dict]:
    if isinstance(dataset, HashingDataset):
        return dataset.labels, dataset.name, dataset.meta
    y = np.asarray(dataset)
    if y.ndim not in (1, 2):
        raise ValueError("make_split takes a HashingDataset or a label array (n,) / (n, C), "
                         f"got shape {y.shape}")
    return to_multihot(y), None, {}


def _class_ids(labels: np.ndarray) -> np.ndarray | None:
    """int64 ids when every row has exactly one label, else None."""
    if np.all(labels.sum(1) == 1):
        return labels.argmax(1).astype(np.int64)
    return None


def _per_class(rng, ids, q_per, t_per, protocol, name):
    classes = np.unique(ids)
    counts = np.bincount(ids)
    need = q_per + t_per
    short = [int(c) for c in classes if counts[c] < need]
    if short:
        raise ValueError(
            f"protocol {protocol!r} needs {q_per} query + {t_per} train = {need} items per class, "
            f"but dataset {name!r} ({len(ids)} items) has only "
            f"{', '.join(f'{counts[c]} of class {c}' for c in short[:5])}"
            f"{' ...' if len(short) > 5 else ''}; use the protocol made for this dataset "
            f"({sorted(PROTOCOLS)}) or protocol='random'")
    query, train = [], []
    for c in classes:
        perm = rng.permutation(np.flatnonzero(ids == c))
        query.append(perm[:q_per])
        train.append(perm[q_per:need])
    return np.concatenate(query), np.concatenate(train)


def _stratified_cut(rng, train, ids, fraction):
    """Choose round(fraction * len(train)) items of ``train``, proportional per class."""
    n_val = int(round(fraction * len(train)))
    if n_val == 0:
        return np.empty(0, np.int64)
    if n_val >= len(train):
        raise ValueError(f"val_fraction={fraction} leaves no training items out of {len(train)}")
    if ids is None:
        return rng.choice(train, size=n_val, replace=False)
    tid = ids[train]
    classes, counts = np.unique(tid, return_counts=True)
    quota = fraction * counts
    take = np.floor(quota).astype(np.int64)
    rest = n_val - take.sum()
    if rest > 0:  # largest remainders first, ties by class order
        order = np.lexsort((classes, -(quota - take)))
        take[order[:rest]] += 1
    val = [rng.choice(train[tid == c], size=k, replace=False) for c, k in zip(classes, take) if k]
    return np.concatenate(val) if val else np.empty(0, np.int64)


def _splits_dir(cache: bool) -> Path:
    """``cache_dir("splits")``; where it cannot be created (a read-only ``HASHNB_CACHE``)
    the path it would have, and the split is then computed in memory with a warning."""
    try:
        return cache_dir("splits", create=cache)
    except OSError:
        return cache_dir("splits", create=False)


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(s))


def _save_atomic(path: Path, arrays: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp.npz")
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# ----------------------------------------------------------------------------- main entry
def make_split(dataset, protocol: str | None = None, *, seed: int = 0, val_fraction: float = 0.1,
               cache: bool = True, n_query: int | None = None, n_train: int | None = None,
               train_in_database: bool = True, name: str | None = None) -> Split:
    """Split a dataset into train / val / query / database by a named, seeded protocol.

    Parameters
    ----------
    dataset : HashingDataset or np.ndarray
        A dataset, or just its labels: ``(n,)`` class ids or ``(n, C)`` multi-hot (only the
        labels are used, so ``make_split(np.repeat(np.arange(10), 6000), "cifar10")`` works).
    protocol : str, optional
        One of :data:`PROTOCOLS` (see the module docstring). Default: by dataset name
        (``"cifar10"`` -> ``"cifar10"``, ``"digits"`` -> ``"digits"``).
    seed : int
        Seeds ``numpy.random.default_rng``; same seed, same split.
    val_fraction : float
        Part of the protocol's train set held out for validation (stratified by class for
        single-label data), in [0, 1).
    cache : bool
        Load/save the index arrays as ``.npz`` under ``cache_dir("splits")``, keyed by dataset
        name, label fingerprint, protocol (and its parameters), seed and ``val_fraction``.
    n_query, n_train : int
        ``protocol="random"`` only: numbers of queries and training items.
    train_in_database : bool
        ``protocol="random"`` only: draw train from the database (default, HashNet lists) or
        remove it from the database.
    name : str, optional
        Name used in the cache key when ``dataset`` is a bare label array.

    Returns
    -------
    Split
        int64 index arrays, each sorted.

    Raises
    ------
    ValueError
        Unknown protocol; a protocol that does not fit the data (too few items per class,
        multi-label data for a class-balanced protocol, wrong size for ``cifar10-2``).
    """
    labels, ds_name, meta = _as_labels(dataset)
    ds_name = name or ds_name or "labels"
    if protocol is None:
        protocol = default_protocol(ds_name)
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {sorted(PROTOCOLS)}")
    if not 0.0 <= float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    spec = PROTOCOLS[protocol]
    n = len(labels)
    params = ""
    if spec["kind"] == "random":
        if n_query is None or n_train is None:
            raise ValueError("protocol='random' needs n_query= and n_train= (e.g. NUS-WIDE: "
                             "n_query=2100, n_train=10500; COCO: n_query=5000, n_train=10000)")
        n_query, n_train = int(n_query), int(n_train)
        params = f"-q{n_query}-t{n_train}-{'in' if train_in_database else 'out'}"
    elif n_query is not None or n_train is not None:
        raise ValueError(f"n_query/n_train apply to protocol='random' only; {protocol!r} fixes "
                         "its own sizes")

    fp = labels_fingerprint(labels)
    path = _splits_dir(cache) / _safe(
        f"{ds_name}-{fp}-{protocol}{params}-seed{seed}-val{float(val_fraction):g}-v{_VERSION}.npz")
    info = dict(dataset=ds_name, fingerprint=fp, n=n, cache_file=str(path))
    if cache and path.is_file():
        try:
            with np.load(path) as d:
                arrays = {k: d[k].astype(np.int64) for k in ("train", "val", "query", "database")}
            if not all(a.size == 0 or (a.min() >= 0 and a.max() < n) for a in arrays.values()):
                raise ValueError(f"indices outside 0..{n - 1}")
            return Split(protocol=protocol, seed=seed, val_fraction=float(val_fraction),
                         info=info, **arrays)
        except Exception as e:  # BadZipFile, EOFError, zlib.error, KeyError, ValueError, ...
            warnings.warn(f"split cache file {path} is unreadable ({type(e).__name__}: {e}); "
                          "hashnb recomputes the split and overwrites it", RuntimeWarning,
                          stacklevel=2)

    rng = np.random.default_rng(seed)
    ids = _class_ids(labels)
    everything = np.arange(n)
    if spec["kind"] == "per_class":
        if ids is None:
            raise ValueError(f"protocol {protocol!r} is class-balanced and needs single-label "
                             f"data; {ds_name!r} is multi-label: use protocol='random'")
        query, train = _per_class(rng, ids, spec["query_per_class"], spec["train_per_class"],
                                  protocol, ds_name)
        database = np.setdiff1d(everything, query)
        if not spec["train_in_database"]:
            database = np.setdiff1d(database, train)
    elif spec["kind"] == "test_query":
        n_tr = int(meta.get("n_train", spec["n_train"]))
        if n != spec["n_train"] + spec["n_test"] or n_tr != spec["n_train"]:
            raise ValueError(f"protocol {protocol!r} needs the 60,000 CIFAR-10 images in the "
                             f"fixed order (50,000 train then 10,000 test); {ds_name!r} has {n} "
                             f"items (n_train={n_tr})")
        query = everything[n_tr:]
        train = everything[:n_tr]
        database = train.copy()
    else:  # random
        if n_query + n_train > n or n_query <= 0 or n_train <= 0:
            raise ValueError(f"protocol 'random' with n_query={n_query}, n_train={n_train} does "
                             f"not fit {n} items (need 0 < n_query, 0 < n_train, sum <= n)")
        perm = rng.permutation(n)
        query = perm[:n_query]
        train = perm[n_query:n_query + n_train]
        database = np.setdiff1d(everything, query)
        if not train_in_database:
            database = np.setdiff1d(database, train)

    val = _stratified_cut(np.random.default_rng([seed, 1]), np.sort(train), ids,
                          float(val_fraction))
    train = np.setdiff1d(train, val)
    arrays = {k: np.sort(np.asarray(v, dtype=np.int64)) for k, v in
              dict(train=train, val=val, query=query, database=database).items()}
    if cache:
        try:
            _save_atomic(path, arrays)
        except OSError as e:  # a read-only cache must not stop the split
            warnings.warn(f"cannot write the split cache file {path} ({e}); the split is "
                          "kept in memory only (set HASHNB_CACHE to a writable folder)",
                          RuntimeWarning, stacklevel=2)
    return Split(protocol=protocol, seed=seed, val_fraction=float(val_fraction), info=info,
                 **arrays)
