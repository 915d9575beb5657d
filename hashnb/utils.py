"""Small shared helpers: code/label conventions, seeding, device choice, environment flags.

Everything in hashnb agrees on two conventions, enforced here once:

* **Binary codes** are floats in {-1, +1}, shape ``(n, bits)``. :func:`binarize` maps an
  exact 0 to +1 (``torch.sign`` would give 0, which silently produces half-integer
  "Hamming distances" -- a bug of DeepHash-pytorch's ``compute_result``).
* **Labels** are multi-hot, shape ``(n, C)``, float32. Single-label integer targets are
  converted once by :func:`to_multihot`. Two items are relevant when they share a label.
"""
from __future__ import annotations

import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "binarize", "to_multihot", "as_tensor", "as_numpy", "seed_everything", "default_device",
    "fast_mode", "cache_dir", "provenance", "Timer", "check_finite", "check_bits",
    "check_codes", "json_default",
]


def binarize(u):
    """Map relaxed codes to {-1, +1}; exact zeros go to +1 (documented, never 0).

    Works on torch tensors (keeps dtype/device, float result) and numpy arrays.
    """
    if isinstance(u, torch.Tensor):
        u = u.float() if not u.is_floating_point() else u
        return torch.where(u >= 0, torch.ones_like(u), -torch.ones_like(u))
    u = np.asarray(u)
    return np.where(u >= 0, 1.0, -1.0).astype(np.float32)


def to_multihot(y, num_classes: int | None = None) -> np.ndarray:
    """Integer class ids (n,) -> multi-hot float32 (n, C). A 2-D input is checked and passed on.

    Raises ``ValueError`` for negative ids, ids >= ``num_classes`` or a 2-D input that is
    not 0/1, so that a malformed label file fails loudly instead of being truncated.
    """
    y = np.asarray(y)
    if y.ndim == 2:
        if not np.isin(y, (0, 1)).all():
            raise ValueError("multi-hot labels must contain only 0 and 1")
        if num_classes is not None and y.shape[1] != num_classes:
            raise ValueError(f"labels have {y.shape[1]} columns, expected {num_classes}")
        return y.astype(np.float32)
    if y.ndim != 1:
        raise ValueError(f"labels must be (n,) class ids or (n, C) multi-hot, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError("class ids must be integers")
        y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise ValueError("class ids must be >= 0")
    c = int(y.max()) + 1 if num_classes is None else int(num_classes)
    if y.size and y.max() >= c:
        raise ValueError(f"class id {int(y.max())} out of range for {c} classes")
    out = np.zeros((len(y), c), dtype=np.float32)
    out[np.arange(len(y)), y] = 1.0
    return out


def check_finite(x, name: str):
    """Raise ``ValueError`` naming ``name`` and its first row holding a NaN or an infinity.

    ``x`` is a numpy array or torch tensor (any shape; rows are the first axis); it is
    returned unchanged, so the call can wrap an argument. A NaN that became a code bit would
    give an all -1 code (or, in a mean, one code for every item) with no error.
    """
    if isinstance(x, torch.Tensor):
        if not x.is_floating_point() or bool(torch.isfinite(x).all()):
            return x
        bad = ~torch.isfinite(x.detach().reshape(len(x), -1) if x.ndim else x.reshape(1, 1))
        row = int(bad.any(1).nonzero()[0, 0])
    else:
        a = np.asarray(x)
        if not np.issubdtype(a.dtype, np.floating) or np.isfinite(a).all():
            return x
        row = int(np.flatnonzero(~np.isfinite(a.reshape(len(a), -1) if a.ndim else
                                              a.reshape(1, 1)).all(1))[0])
    raise ValueError(f"{name} holds a non-finite value (NaN or infinity) in row {row}; "
                     "clean or drop that row before hashing")


def check_bits(bits) -> int:
    """A code length: a positive integer (``True``, ``8.0`` and ``0`` are refused)."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or bits < 1:
        raise ValueError(f"bits must be a positive integer (the code length), got {bits!r}")
    return int(bits)


def check_codes(c, name: str, *, device=None, allow_empty: bool = False) -> torch.Tensor:
    """``c`` as a float tensor of {-1, +1} codes, shape (n, bits); one clear error otherwise.

    0 bits are always refused; 0 rows only with ``allow_empty`` (a search may have no
    queries; a metric needs at least one). Non-finite entries are named by row.
    """
    t = as_tensor(c.detach() if isinstance(c, torch.Tensor) else c, device=device)
    if t.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, bits), got shape {tuple(t.shape)}")
    if t.shape[1] == 0 or (t.shape[0] == 0 and not allow_empty):
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)})")
    if len(t):
        check_finite(t, name)
    if not ((t == 1) | (t == -1)).all():
        raise ValueError(f"{name} must contain only -1 and +1; binarize relaxed outputs with "
                         "hashnb.utils.binarize (0 -> +1)")
    return t


def json_default(o):
    """``json.dumps(default=...)`` for numpy scalars and arrays, tensors and paths; anything
    else by its ``repr`` (stable for the transforms that are part of a run's key)."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, (np.ndarray, torch.Tensor)):
        return np.asarray(o).tolist()
    if isinstance(o, Path):
        return str(o)
    return repr(o)


def as_tensor(x, device=None, dtype=torch.float32) -> torch.Tensor:
    """numpy/tensor/list -> torch tensor of ``dtype`` on ``device`` (no copy when possible)."""
    if isinstance(x, torch.Tensor):
        return x.to(device=device, dtype=dtype)
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)


def as_numpy(x) -> np.ndarray:
    """tensor/array/list -> numpy array (detached, on CPU)."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch (all devices); returns a CPU ``torch.Generator``."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def default_device(device: str | torch.device | None = None, *,
                   mps: bool = True) -> torch.device:
    """The device to use: the argument if given, else CUDA, then Apple MPS, then CPU.

    ``mps=False`` skips MPS (the metrics and the search count in float64 and integer bit
    operations, which MPS lacks)."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    backend = getattr(torch.backends, "mps", None)
    if mps and backend is not None and backend.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def fast_mode() -> bool:
    """True when ``HASHNB_FAST=1``: notebooks shrink data and epochs (nbmake in CI)."""
    return os.environ.get("HASHNB_FAST", "0").strip().lower() not in ("", "0", "false", "no")


def cache_dir(sub: str | None = None, *, create: bool = True) -> Path:
    """Where splits, features and runs are cached: ``$HASHNB_CACHE`` or ``~/.cache/hashnb``.

    Created unless ``create=False`` (``OSError`` when it cannot be, e.g. read-only)."""
    root = Path(os.environ.get("HASHNB_CACHE", Path.home() / ".cache" / "hashnb")).expanduser()
    p = root / sub if sub else root
    if create:
        p.mkdir(parents=True, exist_ok=True)
    return p


def _git_commit() -> str | None:
    try:
        here = Path(__file__).resolve().parent.parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5)
        if out.returncode == 0:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                   cwd=here, capture_output=True, text=True, timeout=5).stdout
            return out.stdout.strip() + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return None


def provenance(**extra: Any) -> dict:
    """Commit, hardware and package versions, for every benchmark figure."""
    import importlib.metadata as md

    versions = {}
    for pkg in ("hashnb", "torch", "torchvision", "numpy", "scipy", "scikit-learn", "faiss-cpu",
                "timm", "umap-learn"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "commit": _git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "versions": versions,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    info.update(extra)
    return info


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``."""

    def __enter__(self):
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        return False
