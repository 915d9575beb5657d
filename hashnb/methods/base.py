"""The method protocol and its registry.

A method is an ``nn.Module`` with

* ``forward(x) -> dict`` with at least ``"z"`` (pre-activation, (n, K)) and ``"u"``
  (relaxed code tanh(z) or another map into [-1, 1]);
* ``loss(out, batch) -> (loss, logs)``, where ``batch`` is a dict with ``"x"``, ``"y"``
  (multi-hot (n, C)) and ``"idx"`` (positions in the training set);
* optional hooks ``on_train_start(ctx)``, ``on_epoch_start(epoch, ctx)``,
  ``on_epoch_end(epoch, ctx)`` for epoch-level steps (center reassignment, database-code
  updates);
* ``encode(x) -> (n, K)`` float {-1, +1} codes, computed in eval mode and chunk by chunk
  so that a code never depends on the rest of the batch.

Closed-form methods (LSH, ITQ) derive from :class:`ClosedFormMethod` and implement
``fit_closed_form(x, y)``; the loop calls it instead of running epochs.
"""
from __future__ import annotations

import inspect
from typing import Callable

import numpy as np
import torch
from torch import nn

from hashnb.utils import as_tensor, binarize, check_finite

__all__ = ["HashMethod", "ClosedFormMethod", "SingleItemBatchNorm", "register_method",
           "create_method", "check_method_args", "list_methods"]

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


def check_method_args(name: str, kwargs: dict) -> type:
    """Check a method name and its keyword arguments without building the method.

    Returns the method's class. Raises ``ValueError`` naming the registered methods for an
    unknown name, and the accepted arguments for an unknown keyword (so a benchmark with
    ``crh:reasign=none`` fails before any cell runs).
    """
    cls = _method_class(name)
    # accepted names: the constructor's own, and its bases' while it forwards **kwargs
    accepted: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters
        accepted |= {k for k, p in params.items() if k != "self"
                     and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            break
    else:  # every constructor up to object forwards **kwargs: cannot check
        return cls
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ValueError(f"{name}: unknown argument(s) {unknown}; accepted: {sorted(accepted)}")
    return cls


def create_method(name: str, *, seed: int | None = 0, **kwargs) -> "HashMethod":
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


def _check_bits(bits, supported=None):
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or bits < 1:
        raise ValueError(f"bits must be a positive integer, got {bits!r}")
    if supported is not None and bits not in supported:
        raise ValueError(f"bits={bits} is not supported; choose one of {sorted(supported)}")
    return int(bits)


class _Standardize(nn.Module):
    """Per-feature standardisation with statistics fitted on the training inputs only."""

    def __init__(self, dim: int | None):
        super().__init__()
        d = dim or 0
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("std", torch.ones(d))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    def fit(self, x: torch.Tensor) -> None:
        x = x.float().flatten(1)
        self.mean = x.mean(0).to(self.mean.device)
        self.std = x.std(0).clamp_min(1e-6).to(self.std.device)
        self.fitted.fill_(True)

    def forward(self, x):
        if not bool(self.fitted) or x.dim() != 2:
            return x
        return (x - self.mean) / self.std


class SingleItemBatchNorm:
    """Mixin for methods with a BatchNorm hash layer (OrthoHash, CRH): put it before
    :class:`HashMethod` in the bases.

    A training batch of one item (a possible last batch) cannot be batch-normalised; it is
    passed through BatchNorm's running statistics instead of raising.
    """

    def forward(self, x: torch.Tensor) -> dict:
        bn = self.model.head.bn
        if self.training and bn is not None and x.shape[0] == 1:
            bn.eval()
            try:
                return super().forward(x)
            finally:
                bn.train()
        return super().forward(x)


class HashMethod(nn.Module):
    """Base class of gradient-trained methods: backbone -> hash head -> codes.

    Parameters (keyword-only)
    -------------------------
    bits : code length K.
    num_classes : C, for supervised methods.
    in_dim : input dimension for vector inputs (features, digits); selects the default
        ``backbone="mlp"``. For images give ``backbone`` (e.g. ``"small_cnn"``).
    backbone : registry name in :mod:`hashnb.models` or an ``nn.Module`` with ``out_dim``.
    backbone_kwargs : passed to ``create_backbone``.
    head_hidden, head_batchnorm, head_dropout : hash-head options (``HashHead``).
    standardize : standardise vector inputs with training-set statistics (default True).
    backbone_lr_mult : learning-rate multiplier for a pretrained backbone (CSQ: 0.01).
    """

    trainable = True
    default_epochs = 30
    default_lr = 1e-3
    default_batch_size = 128
    default_weight_decay = 0.0

    def __init__(self, *, bits: int, num_classes: int | None = None, in_dim: int | None = None,
                 backbone: str | nn.Module | None = None, backbone_kwargs: dict | None = None,
                 pretrained: bool = False, head_hidden: tuple = (), head_batchnorm: bool = False,
                 head_dropout: float = 0.0, standardize: bool = True,
                 backbone_lr_mult: float = 1.0):
        super().__init__()
        from hashnb.models import HashHead, HashModel, create_backbone

        self.bits = _check_bits(bits)
        self.num_classes = num_classes
        self.in_dim = in_dim
        self.backbone_lr_mult = backbone_lr_mult
        if backbone is None:
            if in_dim is None:
                raise ValueError("give in_dim for vector inputs or a backbone name for images")
            backbone = "mlp"
        kw = dict(backbone_kwargs or {})
        if isinstance(backbone, str):
            if backbone in ("mlp", "identity"):
                if in_dim is None:
                    raise ValueError(f"backbone {backbone!r} needs in_dim")
                kw.setdefault("in_dim", in_dim)
            if pretrained:
                kw["pretrained"] = True
            self.backbone_name = backbone
            net = create_backbone(backbone, **kw)
        else:
            self.backbone_name = type(backbone).__name__
            net = backbone
        self.input_norm = _Standardize(in_dim if (standardize and in_dim) else None)
        self.standardize = bool(standardize and in_dim)
        head = HashHead(net.out_dim, self.bits, hidden=tuple(head_hidden),
                        batchnorm=head_batchnorm, dropout=head_dropout)
        self.model = HashModel(net, head)
        self._hparams = {"bits": self.bits, "num_classes": num_classes, "in_dim": in_dim,
                         "backbone": self.backbone_name, "backbone_kwargs": kw,
                         "head_hidden": list(head_hidden), "head_batchnorm": head_batchnorm,
                         "head_dropout": head_dropout, "standardize": self.standardize,
                         "backbone_lr_mult": backbone_lr_mult}

    # -- the pieces the loop uses -------------------------------------------------------
    def forward(self, x: torch.Tensor) -> dict:
        x = self.input_norm(x)
        z = self.model.head.preactivation(self.model.backbone(x))
        return {"z": z, "u": torch.tanh(z)}

    def loss(self, out: dict, batch: dict):  # pragma: no cover - abstract
        raise NotImplementedError

    def on_train_start(self, ctx) -> None:
        """Fit input statistics on the training inputs (vector data only)."""
        if self.standardize and ctx.train_x is not None and ctx.train_x.dim() == 2:
            self.input_norm.fit(ctx.train_x)

    def on_epoch_start(self, epoch: int, ctx) -> None:
        pass

    def on_epoch_end(self, epoch: int, ctx) -> None:
        pass

    def parameter_groups(self, lr: float) -> list[dict]:
        """Optimizer groups: the backbone at ``lr * backbone_lr_mult``, the rest at ``lr``."""
        bb = list(self.model.backbone.parameters())
        bb_ids = {id(p) for p in bb}
        rest = [p for p in self.parameters() if id(p) not in bb_ids and p.requires_grad]
        groups = [{"params": rest, "lr": lr}]
        bb = [p for p in bb if p.requires_grad]
        if bb:
            groups.append({"params": bb, "lr": lr * self.backbone_lr_mult})
        return groups

    def hparams(self) -> dict:
        """JSON-able constructor settings (for config.json and run identity)."""
        return dict(self._hparams)

    @torch.no_grad()
    def eval_chunks(self, x, fn, *, batch_size: int = 1024, device=None) -> list:
        """``[fn(chunk) for chunk in x]`` in eval mode without gradients, ``batch_size`` rows
        at a time on ``device`` (default: the model's); the previous train/eval mode is
        restored afterwards. The one chunked-inference loop of every ``encode``-like method."""
        was_training = self.training
        self.eval()
        dev = device or next(self.parameters()).device
        x = x if isinstance(x, torch.Tensor) else as_tensor(x)
        try:
            return [fn(x[i:i + batch_size].to(dev)) for i in range(0, len(x), batch_size)]
        finally:
            self.train(was_training)

    @torch.no_grad()
    def encode(self, x, *, batch_size: int = 1024, device=None) -> torch.Tensor:
        """Binary codes (n, K) float {-1, +1} on CPU, computed in eval mode, chunk by chunk."""
        x = check_finite(x if isinstance(x, torch.Tensor) else as_tensor(x), "encode input x")
        outs = self.eval_chunks(x, lambda xb: binarize(self(xb)["u"].float()).cpu(),
                                batch_size=batch_size, device=device)
        return torch.cat(outs) if outs else torch.empty(0, self.bits)


class ClosedFormMethod(nn.Module):
    """Base of methods fitted in closed form on training vectors (no epochs).

    Subclasses implement ``fit_closed_form(x, y)`` (x float (n, d)) and ``project(x)``
    returning real-valued (n, K); codes are ``binarize(project(x))``.
    """

    trainable = False
    default_epochs = 0
    default_lr = 0.0
    default_batch_size = 0
    default_weight_decay = 0.0

    def __init__(self, *, bits: int, in_dim: int, num_classes: int | None = None):
        super().__init__()
        self.bits = _check_bits(bits)
        if in_dim is None or in_dim < 1:
            raise ValueError(f"{type(self).__name__} works on vectors: give in_dim (>= 1)")
        self.in_dim = int(in_dim)
        self.num_classes = num_classes
        self.register_buffer("mean", torch.zeros(self.in_dim))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    def hparams(self) -> dict:
        return {"bits": self.bits, "in_dim": self.in_dim, "num_classes": self.num_classes}

    def fit_closed_form(self, x: torch.Tensor, y: torch.Tensor | None = None,
                        *, seed: int = 0) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def project(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x):
        p = self.project(x)
        return {"z": p, "u": torch.tanh(p)}

    @torch.no_grad()
    def encode(self, x, *, batch_size: int = 65536, device=None) -> torch.Tensor:
        if not bool(self.fitted):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call hashnb.train.fit "
                               "(or fit_closed_form) first")
        x = x if isinstance(x, torch.Tensor) else as_tensor(x)
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"expected inputs of shape (n, {self.in_dim}), got {tuple(x.shape)}")
        check_finite(x, "encode input x")
        dev = self.mean.device
        return torch.cat([binarize(self.project(x[i:i + batch_size].to(dev).float())).cpu()
                          for i in range(0, len(x), batch_size)]) if len(x) else \
            torch.empty(0, self.bits)
