"""The method protocol: one base class whose hooks all exist, with documented defaults.

A method is an ``nn.Module`` (:class:`MethodBase`) with

* ``forward(x) -> HashOutput``: ``z`` (pre-activation, (n, K)) and ``u`` (relaxed code
  tanh(z) or another map into [-1, 1]), plus the typed extras some methods have (MAH's
  ``heads``, MLH's ``branches`` and ``balance``);
* ``loss(out, batch) -> (loss, logs)``, where ``batch`` is a dict with ``"x"``, ``"y"``
  (multi-hot (n, C)), ``"idx"`` (positions in the training set) and, when the method
  chooses its own items (``epoch_items``), ``"index"`` (dataset indices); a loss is pure:
  statistics are collected in ``on_batch_end``;
* the loop's hooks, each a no-op by default: ``on_train_start(ctx)``,
  ``on_epoch_start(epoch, ctx) -> EpochLog | None``, ``epoch_items(epoch, ctx)``,
  ``on_batch_end(out, batch)``, ``on_epoch_end(epoch, ctx) -> EpochLog | None``, and for
  state beyond the weights ``extra_state()`` / ``load_extra_state(state)``;
* ``stored_codes(indices)``: learned database codes (asymmetric methods), None by default;
* ``encode(x) -> (n, K)`` float {-1, +1} codes, computed in eval mode and chunk by chunk
  so that a code never depends on the rest of the batch;
* ``hparams()``: every constructor argument with its value, recorded once from the
  constructor's signature (no method lists its settings by hand), for the run key, the
  result JSON and ``create_method``'s argument check alike.

Closed-form methods (LSH, ITQ) derive from :class:`ClosedFormMethod` and implement
``fit_closed_form(x, y)``; the loop calls it instead of running epochs. The registry
(``register_method``, ``create_method``) is :mod:`hashnb.methods.registry`.
"""
from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from hashnb.centers import center_report
from hashnb.models import HashHead, HashModel, create_backbone
from hashnb.methods.registry import (check_method_args, constructor_parameters, create_method,
                                     list_methods, register_method)
from hashnb.utils import as_tensor, binarize, check_bits, check_finite, json_default

__all__ = ["HashMethod", "ClosedFormMethod", "MethodBase", "SingleItemBatchNorm",
           "HashOutput", "BranchOutput", "EpochLog", "register_method", "create_method",
           "check_method_args", "list_methods"]


# ----------------------------------------------------------------------- typed outputs
@dataclass
class BranchOutput:
    """One branch of a multi-branch method (MLH): ``z``, ``u`` (n, K) and, with a mixture
    of experts, the branch's routing weights ``gates`` (n, E)."""
    z: torch.Tensor
    u: torch.Tensor
    gates: torch.Tensor | None = None


@dataclass
class HashOutput:
    """What ``forward`` returns.

    z, u : (n, K) pre-activation and relaxed code of the retrieval code.
    heads : MAH: relaxed codes of every head, shortest code first.
    branches : MLH: ``{"center": BranchOutput, "pairwise": BranchOutput}`` (computed ones).
    balance : MLH with experts: the gates' load-balancing term (scalar).

    ``out["z"]`` reads a field like ``out.z`` (as transformers' ``ModelOutput``), so code
    written against the earlier dict outputs keeps working.
    """
    z: torch.Tensor
    u: torch.Tensor
    heads: list | None = None
    branches: dict | None = None
    balance: torch.Tensor | None = None

    def __getitem__(self, key: str):
        if key not in self.__dataclass_fields__:
            raise KeyError(f"HashOutput has no field {key!r}; fields: "
                           f"{list(self.__dataclass_fields__)}")
        return getattr(self, key)

    def __contains__(self, key: str) -> bool:
        return key in self.__dataclass_fields__ and getattr(self, key) is not None


@dataclass
class EpochLog:
    """Per-epoch records a hook returns; ``record()`` gives the history entries.

    Subclasses declare their fields; a field left at None is not recorded.
    """

    def record(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


def _canonical(value):
    """JSON-able form of a constructor argument (arrays as lists, modules by class name)."""
    if isinstance(value, nn.Module):
        return type(value).__name__
    return json.loads(json.dumps(value, default=json_default))


# ----------------------------------------------------------------------- the protocol
class MethodBase(nn.Module):
    """Every hook of the loop, with its default, and ``hparams()`` from the signature."""

    trainable = True
    default_epochs = 30
    default_lr = 1e-3
    default_batch_size = 128
    default_weight_decay = 0.0
    method_name: str | None = None  # the registry name (set by register_method)
    backbone_name: str | None = None  # a hashnb.models backbone, for its preprocessing
    init_seed: int | None = None  # set by create_method
    num_classes: int | None = None  # label columns C the method was built for (None: any)
    in_dim: int | None = None       # input features for vector inputs (None: images / any)

    def __init_subclass__(cls, **kwargs):
        """Record the arguments of the outermost constructor call (``hparams``)."""
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None or getattr(init, "_records_args", False):
            return

        @functools.wraps(init)
        def __init__(self, *args, **kw):
            outer = "_init_args" not in self.__dict__
            if outer:
                object.__setattr__(self, "_init_args", {})
            init(self, *args, **kw)
            if outer:
                params = constructor_parameters(type(self)) or {}
                values = {k: p.default for k, p in params.items()
                          if p.default is not p.empty}
                values.update(kw)
                object.__setattr__(self, "_init_args",
                                   {k: _canonical(v) for k, v in sorted(values.items())})

        __init__._records_args = True
        cls.__init__ = __init__

    # -- identity -----------------------------------------------------------------------
    def hparams(self) -> dict:
        """Every constructor argument and its value (defaults included), JSON-able: part
        of a run's key and config and of every benchmark result."""
        return dict(self._init_args)

    # -- hooks of the loop (hashnb.train.fit), all optional -------------------------------
    def on_train_start(self, ctx) -> None:
        """Before the first epoch (after a resume too): set up training-set state."""

    def on_epoch_start(self, epoch: int, ctx) -> EpochLog | None:
        """Before each epoch's batches; may return records for the epoch's history."""
        return None

    def epoch_items(self, epoch: int, ctx) -> np.ndarray | None:
        """The dataset indices this epoch trains on, in order (ADSH/MAH: the sampled subset,
        repeated for its inner passes), or None: a shuffled pass over ``split.train``."""
        return None

    def on_batch_end(self, out: HashOutput, batch: dict) -> None:
        """After each optimizer step, with the step's outputs: collect statistics."""

    def on_epoch_end(self, epoch: int, ctx) -> EpochLog | None:
        """After each epoch's batches (before validation); may return history records."""
        return None

    def stored_codes(self, indices) -> torch.Tensor | None:
        """Learned {-1, +1} codes of dataset ``indices`` (float (n, K), rows of zeros where
        none is stored), or None: every item is encoded by forward passes."""
        return None

    def extra_state(self) -> dict | None:
        """Training state that is not in ``state_dict`` (saved with checkpoints and runs)."""
        return None

    def load_extra_state(self, state: dict | None) -> None:
        """Restore what :meth:`extra_state` returned."""

    def center_report(self) -> dict:
        """Minimum / mean Hamming distance of the class centers (:func:`hashnb.centers.center_report`)."""
        centers = self._buffers.get("centers")
        if centers is None:
            raise ValueError(f"{type(self).__name__} has no class centers")
        return center_report(centers.cpu().numpy())


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

    def forward(self, x: torch.Tensor) -> HashOutput:
        bn = self.model.head.bn
        if self.training and bn is not None and x.shape[0] == 1:
            bn.eval()
            try:
                return super().forward(x)
            finally:
                bn.train()
        return super().forward(x)


class HashMethod(MethodBase):
    """Base class of gradient-trained methods: backbone -> hash head -> codes.

    Parameters (keyword-only)
    -------------------------
    bits : code length K.
    num_classes : C, required for supervised methods (``supervised = True``, all here).
    in_dim : input dimension for vector inputs (features, digits); selects the default
        ``backbone="mlp"``. For images give ``backbone`` (e.g. ``"small_cnn"``).
    backbone : registry name in :mod:`hashnb.models` or an ``nn.Module`` with ``out_dim``.
    backbone_kwargs : passed to ``create_backbone``.
    head_hidden, head_batchnorm, head_dropout : hash-head options (``HashHead``).
    standardize : standardise vector inputs with training-set statistics (default True).
    backbone_lr_mult : learning-rate multiplier for a pretrained backbone (CSQ: 0.01).
    """

    supervised = True

    def __init__(self, *, bits: int, num_classes: int | None = None, in_dim: int | None = None,
                 backbone: str | nn.Module | None = None, backbone_kwargs: dict | None = None,
                 pretrained: bool = False, head_hidden: tuple = (), head_batchnorm: bool = False,
                 head_dropout: float = 0.0, standardize: bool = True,
                 backbone_lr_mult: float = 1.0):
        super().__init__()
        self.bits = check_bits(bits)
        if self.supervised and (num_classes is None or num_classes < 1):
            raise ValueError(f"{type(self).__name__} is supervised: give num_classes (the "
                             "label dimension C)")
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
        self.head_options = dict(hidden=tuple(head_hidden), batchnorm=head_batchnorm,
                                 dropout=head_dropout)
        self.model = HashModel(net, HashHead(net.out_dim, self.bits, **self.head_options))

    def fixed_centers(self, centers) -> None:
        """Register validated fixed class centers (C, K) +-1 as the ``centers`` buffer."""
        c = np.asarray(centers, dtype=np.float32)
        if c.shape != (self.num_classes, self.bits) or not np.isin(c, (-1, 1)).all():
            raise ValueError(f"centers must be a +-1 array of shape ({self.num_classes}, "
                             f"{self.bits}), got {c.shape}")
        self.register_buffer("centers", torch.from_numpy(c))

    # -- the pieces the loop uses -------------------------------------------------------
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features of (standardised) inputs."""
        return self.model.backbone(self.input_norm(x))

    def forward(self, x: torch.Tensor) -> HashOutput:
        z = self.model.head.preactivation(self.features(x))
        return HashOutput(z=z, u=torch.tanh(z))

    def loss(self, out: HashOutput, batch: dict):  # pragma: no cover - abstract
        raise NotImplementedError

    def on_train_start(self, ctx) -> None:
        """Fit input statistics on the training inputs (vector data only)."""
        if self.standardize and ctx.train_x is not None and ctx.train_x.dim() == 2:
            self.input_norm.fit(ctx.train_x)

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

    @torch.no_grad()
    def eval_chunks(self, x, fn, *, batch_size: int = 1024, device=None) -> list:
        """``[fn(chunk) for chunk in x]`` in eval mode without gradients, ``batch_size`` rows
        at a time on ``device`` (default: the model's); the previous train/eval mode is
        restored afterwards. The one chunked-inference loop of every ``encode``-like method."""
        was_training = self.training
        self.eval()
        dev = device or next(self.parameters()).device
        x = check_finite(x if isinstance(x, torch.Tensor) else as_tensor(x), "encode input x")
        try:
            return [fn(x[i:i + batch_size].to(dev)) for i in range(0, len(x), batch_size)]
        finally:
            self.train(was_training)

    @torch.no_grad()
    def encode(self, x, *, batch_size: int = 1024, device=None) -> torch.Tensor:
        """Binary codes (n, K) float {-1, +1} on CPU, computed in eval mode, chunk by chunk."""
        outs = self.eval_chunks(x, lambda xb: binarize(self(xb).u.float()).cpu(),
                                batch_size=batch_size, device=device)
        return torch.cat(outs) if outs else torch.empty(0, self.bits)


class ClosedFormMethod(MethodBase):
    """Base of methods fitted in closed form on training vectors (no epochs).

    Subclasses implement ``fit_closed_form(x, y)`` (x float (n, d)) and ``project(x)``
    returning real-valued (n, K); codes are ``binarize(project(x))``.
    """

    trainable = False
    default_epochs = 0
    default_lr = 0.0
    default_batch_size = 0

    def __init__(self, *, bits: int, in_dim: int, num_classes: int | None = None):
        super().__init__()
        self.bits = check_bits(bits)
        if in_dim is None or in_dim < 1:
            raise ValueError(f"{type(self).__name__} works on vectors: give in_dim (>= 1)")
        self.in_dim = int(in_dim)
        self.num_classes = num_classes
        self.register_buffer("mean", torch.zeros(self.in_dim))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    def fit_closed_form(self, x: torch.Tensor, y: torch.Tensor | None = None,
                        *, seed: int = 0) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def project(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x) -> HashOutput:
        p = self.project(x)
        return HashOutput(z=p, u=torch.tanh(p))

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
