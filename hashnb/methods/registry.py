"""The method registry: ``register_method``, ``create_method``, ``list_methods``.

A leaf (timm's ``_registry.py`` shape): it imports nothing from hashnb, so the loop
(:mod:`hashnb.train`) and the benchmark can use it without pulling in anything above the
methods. Importing it runs ``hashnb/methods/__init__.py`` first (Python imports a package
before its modules), which imports every method module and so fills the registry.
"""
from __future__ import annotations

import ast
import inspect
from typing import Callable

import torch

__all__ = ["register_method", "create_method", "check_method_args", "list_methods",
           "constructor_parameters", "parse_method_spec"]

_REGISTRY: dict[str, type] = {}


def register_method(name: str) -> Callable[[type], type]:
    """Class decorator: ``@register_method("csq")`` makes ``create_method("csq", ...)`` work."""
    def deco(cls):
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"method {name!r} is already registered by {_REGISTRY[name]}")
        _REGISTRY[name] = cls
        cls.method_name = name
        return cls
    return deco


def list_methods() -> list[str]:
    """Names accepted by :func:`create_method`, sorted."""
    return sorted(_REGISTRY)


def _method_class(name: str) -> type:
    try:
        return _REGISTRY[str(name).lower()]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; registered methods: "
                         f"{', '.join(list_methods())}") from None


def constructor_parameters(cls: type) -> dict[str, inspect.Parameter] | None:
    """Keyword parameters a class's constructor accepts: its own, then its bases' for as
    long as each constructor forwards ``**kwargs`` (most derived first wins). None when
    every constructor up to ``object`` forwards ``**kwargs`` (nothing can be checked)."""
    params: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        sig = inspect.signature(inspect.unwrap(klass.__init__)).parameters
        for k, p in sig.items():
            if k != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                params.setdefault(k, p)
        if not any(p.kind == p.VAR_KEYWORD for p in sig.values()):
            return params
    return None


def check_method_args(name: str, kwargs: dict) -> type:
    """Check a method name and its keyword arguments without building the method.

    Returns the method's class. Raises ``ValueError`` naming the registered methods for an
    unknown name, and the accepted arguments for an unknown keyword (so a benchmark with
    ``crh:reasign=none`` fails before any cell runs).
    """
    cls = _method_class(name)
    accepted = constructor_parameters(cls)
    if accepted is not None:
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            raise ValueError(f"{name}: unknown argument(s) {unknown}; "
                             f"accepted: {sorted(accepted)}")
    return cls


def create_method(name: str, *, seed: int | None = 0, **kwargs):
    """Build a registered method; keyword arguments go to its constructor.

    ``seed`` seeds the weight initialisation (default 0), so the same call gives the same
    initial weights every time, in any process; the global torch RNG is left as it was.
    ``seed=None`` draws the initial weights from the global torch RNG instead. The seed is
    kept as ``method.init_seed`` (part of a run's config).

    Raises ``ValueError`` naming the registered methods for an unknown name, and the
    constructor's own ``ValueError`` for unsupported settings (e.g. bits).
    """
    cls = check_method_args(name, kwargs)
    if seed is None:
        method = cls(**kwargs)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            method = cls(**kwargs)
    method.init_seed = None if seed is None else int(seed)
    return method


def parse_method_spec(spec: str) -> tuple[str, dict]:
    """``"crh:reassign=greedy,heads=1"`` -> ``("crh", {"reassign": "greedy", "heads": 1})``.

    A *variant spec* names a method and constructor arguments for an ablation. Values are
    Python literals (``1``, ``0.5``, ``True``, ``'greedy'``); a bare word that is not a
    literal is taken as a string.
    """
    name, _, rest = str(spec).partition(":")
    name = name.strip()
    if not name:
        raise ValueError(f"method spec {spec!r} has no method name; write name:key=value,...")
    kwargs: dict = {}
    for item in filter(None, (t.strip() for t in rest.split(","))):
        key, eq, val = item.partition("=")
        if not eq or not key.strip().isidentifier():
            raise ValueError(f"method spec {spec!r}: {item!r} is not key=value; "
                             "write e.g. crh:reassign=greedy,heads=1")
        try:
            kwargs[key.strip()] = ast.literal_eval(val.strip())
        except (ValueError, SyntaxError):
            kwargs[key.strip()] = val.strip()
    return name, kwargs
