"""Hashing methods by name.

Each method is a short composition of shared parts (backbone + head from
:mod:`hashnb.models`, centers from :mod:`hashnb.centers`, a loss from :mod:`hashnb.losses`)
trained by the one loop in :mod:`hashnb.train`::

    m = create_method("csq", bits=32, num_classes=10, in_dim=64)

Registered: ``lsh``, ``itq`` (closed form, no gradient training); ``dpsh``, ``hashnet``
(pairwise); ``csq``, ``orthohash``, ``crh`` (center-based); ``mlh`` (mutual learning, with the
mixture of hash experts); ``adsh`` and ``mah`` (asymmetric: learned database codes).
"""
from hashnb.methods.base import (HashMethod, ClosedFormMethod, check_method_args, create_method, list_methods,
                                 register_method)
from hashnb.methods import shallow as _shallow  # noqa: F401  (registers lsh, itq)
from hashnb.methods import csq as _csq  # noqa: F401  (registers csq)
from hashnb.methods import pairwise as _pairwise  # noqa: F401
from hashnb.methods import orthohash as _orthohash  # noqa: F401
from hashnb.methods import mlh as _mlh  # noqa: F401  (registers mlh)
from hashnb.methods import crh as _crh  # noqa: F401  (registers crh)
from hashnb.methods import asymmetric as _asymmetric  # noqa: F401  (registers adsh, mah)

__all__ = ["HashMethod", "ClosedFormMethod", "check_method_args", "create_method", "list_methods",
           "register_method"]
