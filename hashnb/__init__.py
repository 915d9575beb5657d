"""hashnb: deep hashing for image retrieval, the package behind the hashnb book.

Submodules are imported lazily so that ``import hashnb`` stays cheap; heavy optional
dependencies (faiss, umap, timm, torchvision) are imported only where they are used.

Conventions (see ``hashnb.utils``):

* binary codes are float tensors/arrays in {-1, +1} of shape (n, bits); ``sign(0)`` maps to +1;
* labels are multi-hot float arrays of shape (n, C); relevant = shares at least one label.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# every module of the package, so ``hashnb.<name>`` works for each (the layers, bottom up:
# tests/test_layers.py keeps imports pointing down)
_SUBMODULES = (
    "utils",
    "centers", "data", "losses", "metrics", "mih", "models", "search", "viz",
    "methods",
    "batches", "runs", "train",
    "analysis", "matrix", "paper", "tuning",
    "bench", "notebook", "widgets",
)


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"hashnb.{name}")
    raise AttributeError(f"module 'hashnb' has no attribute {name!r}")


__all__ = list(_SUBMODULES) + ["__version__"]
