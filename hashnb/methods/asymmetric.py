"""Asymmetric hashing: ADSH and MAH (extremely low-bit, multi-head).

* **ADSH** -- Asymmetric Deep Supervised Hashing (Jiang & Li, AAAI 2018, arXiv 1707.08325;
  official code jiangqy/ADSH-AAAI2018). Queries are encoded by the network; the database
  codes V are free binary variables learned directly. Each outer iteration samples Omega
  (``num_samples`` = 2,000 items) from the training pool, trains the network on Omega for
  ``inner_epochs`` = 3 passes against V (:func:`hashnb.losses.asymmetric.adsh_loss`), then
  updates V by discrete cyclic coordinate descent, one bit column at a time, in closed form
  (:func:`~hashnb.losses.asymmetric.dcc_update`). gamma = 200. The similarity convention is a
  switch: ``"soft"`` (+1 / -r, the released code) or ``"pm1"`` (+-1, the paper).
* **MAH** -- "Collaborative Learning for Extremely Low Bit Asymmetric Hashing" (Luo et al.,
  arXiv 1809.09329, TKDE 2021; official code Luoyadan/MAH-Pytorch, Python 2.7, read but not
  copied). Several code lengths trained together on one backbone, each with its own ADSH
  objective and its own database codes, sharing Omega, S~ and gamma; losses weighted 4:2:1
  with the largest weight on the shortest code. Two heads: ``"flat"`` (parallel linear
  heads) and ``"cascade"`` (the longest code from the features, each shorter code a linear
  map of the next longer code's pre-activation, no non-linearity in between).

How this maps onto the one loop (:func:`hashnb.train.fit`): one loop **epoch = one outer
iteration**. ``on_epoch_start`` samples Omega (seeded by the run's seed and the epoch) and
the soft ratio r; ``epoch_items`` hands the loop Omega repeated ``inner_epochs`` times (each
pass freshly shuffled); ``loss`` records the outputs U of Omega, as the released code does
during its last inner pass; ``on_epoch_end`` runs the V-step. The database codes are buffers
of the module, so checkpoints, the best-validation snapshot and cached runs keep network and
V together. ``stored_codes`` lets :class:`hashnb.train.Run` and the validation use V instead
of forward passes wherever V covers the items (asymmetric evaluation).

The training pool (switch ``pool``): ``"train"`` (default) is ``split.train``, the labels
every other method gets; ``"database"`` is ``split.database`` minus the validation items,
i.e. ADSH/MAH's own protocol, where the whole labelled database is the training pool (use
it with protocol ``cifar10-1``; on ``cifar10`` the database is disjoint from train and its
labels must not be used). Items V does not cover (queries; the validation items; the
database of protocol ``cifar10``) are encoded by forward passes.

Our reconstruction / differences from the released code, each a switch where it matters:
Adam at the loop's learning rate instead of SGD lr 1e-3 with /10 steps; frozen-feature MLP
backbone in the book (ResNet-50 fine-tuned there); Omega and the shuffles are seeded (the
released code's are not); the bit length ``bits`` is the evaluated head, with
``lengths=(bits, 2 bits, 4 bits)`` by default ((4, 8, 16) at 4 bits is the released CIFAR
cascade default; its flat CIFAR default (6, 48, 96) is ``lengths=(6, 48, 96)``). The
optional ``distill`` term between heads is **our extension**, not in the paper's abstract
or the released code (default 0: off).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from hashnb.losses.asymmetric import (SIMILARITIES, adsh_loss, adsh_loss_factored, adsh_q,
                                      dcc_update, pool_statistics, similarity, soft_ratio)
from hashnb.methods.base import EpochLog, HashMethod, HashOutput, register_method
from hashnb.models import HashHead
from hashnb.utils import binarize, check_bits

__all__ = ["ADSH", "MAH", "AsymmetricEpochLog"]

POOLS = ("train", "database")
VARIANTS = ("cascade", "flat")


class _AsymmetricBase(HashMethod):
    """Shared machinery of ADSH and MAH: pool, Omega, database codes per head, V-step."""

    default_epochs = 50  # ADSH: 50 outer iterations
    default_lr = 1e-3
    default_batch_size = 64  # ADSH / MAH CIFAR: batch 64

    def _setup_asym(self, *, lengths, weights, gamma, num_samples, inner_epochs, similarity,
                    pool):
        if similarity not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS} ('train': split.train; 'database': "
                             f"the database minus validation items, ADSH's protocol), got {pool!r}")
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        if int(num_samples) < 1 or int(inner_epochs) < 1:
            raise ValueError("num_samples and inner_epochs must be >= 1")
        self.lengths = tuple(int(k) for k in lengths)
        self.weights = tuple(float(w) for w in weights)
        self.gamma = float(gamma)
        self.num_samples = int(num_samples)
        self.inner_epochs = int(inner_epochs)
        self.similarity = similarity
        self.pool = pool
        self.primary = self.lengths.index(self.bits)
        # learned state, sized in on_train_start; buffers so checkpoints keep them with weights
        self.register_buffer("pool_index", torch.zeros(0, dtype=torch.long))
        for h, k in enumerate(self.lengths):
            self.register_buffer(f"db_codes_{h}", torch.zeros(0, k))
        self._pool_pos: torch.Tensor | None = None  # dataset index -> pool row (-1: none)
        self._pool_y: torch.Tensor | None = None
        self._omega: torch.Tensor | None = None  # pool rows of this iteration's Omega
        self._omega_row: torch.Tensor | None = None  # pool row -> row of Omega (-1: none)
        self._u: list[torch.Tensor] = []
        self._r = 1.0

    # -- database codes -------------------------------------------------------------------
    def db_codes(self, head: int | None = None) -> torch.Tensor:
        """Learned database codes V (n_pool, K_head) of a head (default: the evaluated one)."""
        return getattr(self, f"db_codes_{self.primary if head is None else head}")

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # the pool's size is only known after training: take the saved buffers' shapes
        for name in ["pool_index"] + [f"db_codes_{h}" for h in range(len(self.lengths))]:
            key = prefix + name
            if key in state_dict:
                old = getattr(self, name)
                setattr(self, name, torch.empty_like(state_dict[key], device=old.device))
        self._pool_pos = None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _lookup(self, n_total: int) -> torch.Tensor:
        if self._pool_pos is None or len(self._pool_pos) < n_total:
            size = max(n_total, int(self.pool_index.max()) + 1 if len(self.pool_index) else 0)
            pos = torch.full((size,), -1, dtype=torch.long)
            pos[self.pool_index.cpu()] = torch.arange(len(self.pool_index))
            self._pool_pos = pos
        return self._pool_pos

    def stored_codes(self, indices, head: int | None = None) -> torch.Tensor | None:
        """Learned codes of dataset ``indices`` (float (n, K)); rows V does not cover are 0;
        None when it covers none of them (see :func:`hashnb.train.codes_for`). ``head``
        picks another MAH head (index into ``lengths``; default: the evaluated one)."""
        if len(self.pool_index) == 0:
            return None
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        pos = self._lookup(int(idx.max()) + 1 if len(idx) else 0)[idx]
        known = pos >= 0
        if not bool(known.any()):
            return None
        v = self.db_codes(head).detach().float().cpu()
        out = torch.zeros(len(idx), v.shape[1])
        out[known] = v[pos[known]]
        return out

    # -- loop hooks ------------------------------------------------------------------------
    def on_train_start(self, ctx) -> None:
        super().on_train_start(ctx)
        split = ctx.split
        if self.pool == "train":
            pool = np.asarray(split.train)
        else:
            pool = np.setdiff1d(np.asarray(split.database), np.asarray(split.val))
        if len(pool) == 0:
            raise ValueError("the training pool is empty")
        dev = ctx.device
        self.pool_index = torch.as_tensor(np.sort(pool), dtype=torch.long, device=dev)
        for h, k in enumerate(self.lengths):  # ADSH starts from V = 0
            setattr(self, f"db_codes_{h}", torch.zeros(len(pool), k, device=dev))
        self._pool_pos = None
        self._lookup(len(ctx.dataset.labels))
        self._pool_y = torch.as_tensor(np.asarray(ctx.dataset.labels[self.pool_index.cpu().numpy()]),
                                       dtype=torch.float32, device=dev)
        # one-hot labels: the network loss needs only K x K / K x C statistics of V
        self._single_label = bool((self._pool_y.sum(1) == 1).all())

    def _need_pool(self):
        if self._pool_y is None:
            raise RuntimeError(f"{type(self).__name__} has no training pool yet: train it with "
                               "hashnb.train.fit (on_train_start sets it up)")

    def on_epoch_start(self, epoch: int, ctx) -> None:
        self._need_pool()
        n = len(self.pool_index)
        rng = np.random.default_rng([int(ctx.seed), int(epoch), 7])
        m = min(self.num_samples, n)
        omega = np.sort(rng.choice(n, size=m, replace=False))
        self._omega = torch.as_tensor(omega, dtype=torch.long, device=self._pool_y.device)
        self._passes = [omega[rng.permutation(m)] for _ in range(self.inner_epochs)]
        row = torch.full((n,), -1, dtype=torch.long, device=self._omega.device)
        row[self._omega] = torch.arange(m, device=self._omega.device)
        self._omega_row = row
        self._r = (soft_ratio(self._pool_y[self._omega], self._pool_y)
                   if self.similarity == "soft" else 1.0)
        self._u = [torch.zeros(m, k, device=self._omega.device) for k in self.lengths]
        self._stats = ([pool_statistics(self.db_codes(h), self._pool_y)
                        for h in range(len(self.lengths))] if self._single_label else None)

    def epoch_items(self, epoch: int, ctx) -> np.ndarray:
        """Dataset indices of this outer iteration: Omega, ``inner_epochs`` shuffled passes."""
        return self.pool_index.cpu().numpy()[np.concatenate(self._passes)]

    @staticmethod
    def head_outputs(out: HashOutput) -> list[torch.Tensor]:
        """Relaxed codes of every head, shortest first (one head: the code itself)."""
        return out.heads if out.heads is not None else [out.u]

    def _pool_rows(self, batch) -> torch.Tensor:
        """Pool rows of the batch's items (``batch["index"]``: dataset indices)."""
        self._need_pool()
        if "index" not in batch:
            raise RuntimeError(f"{type(self).__name__} trains on its own sampled items: "
                               "run it with hashnb.train.fit (the epoch_items hook)")
        # _lookup, not _pool_pos: loading a checkpoint (resume) clears the cached positions
        pos = self._lookup(0)[batch["index"].cpu()].to(self._pool_y.device)
        if bool((pos < 0).any()):
            raise RuntimeError("a batch item is outside the training pool")
        return pos

    def loss(self, out, batch):
        pos = self._pool_rows(batch)
        single = self._stats is not None and bool((batch["y"].sum(1) == 1).all())
        s = None if single else similarity(batch["y"].float(), self._pool_y, r=self._r)
        total, logs = 0.0, {}
        for h, (u, w) in enumerate(zip(self.head_outputs(out), self.weights)):
            u = u.float()
            v = self.db_codes(h)
            if single:  # exact, without the (batch, pool) block
                lh, _ = adsh_loss_factored(u, batch["y"], self._stats[h], v[pos],
                                           gamma=self.gamma, r=self._r)
            else:
                lh, _ = adsh_loss(u, v, s, v[pos], gamma=self.gamma)
            total = total + w * lh
            if len(self.lengths) > 1:
                logs[f"loss_{self.lengths[h]}b"] = float(lh.detach())
        extra, elogs = self.extra_loss(out)
        if extra is not None:
            total = total + extra
            logs.update(elogs)
        return total, logs

    def extra_loss(self, out):
        return None, {}

    @torch.no_grad()
    def on_batch_end(self, out, batch) -> None:
        """Record the outputs U of Omega's items (the V-step's input), as the released code
        does during its last inner pass."""
        rows = self._omega_row[self._pool_rows(batch)]
        for h, u in enumerate(self.head_outputs(out)):
            self._u[h][rows] = u.detach().float()

    @torch.no_grad()
    def on_epoch_end(self, epoch: int, ctx) -> "AsymmetricEpochLog":
        """V-step: one DCC sweep per head over all bit columns (ADSH's closed form)."""
        self._need_pool()
        y_om = self._pool_y[self._omega]
        flips = {}
        for h in range(len(self.lengths)):
            v = self.db_codes(h)
            old = v.clone()
            q = adsh_q(self._u[h], y_om, self._pool_y, self._omega, gamma=self.gamma, r=self._r)
            dcc_update(v, self._u[h], q)
            flips[self.lengths[h]] = float((old != v).float().mean())
        return AsymmetricEpochLog(v_flip=flips)


@dataclass
class AsymmetricEpochLog(EpochLog):
    """Fraction of database-code bits the V-step flipped, per code length; recorded in the
    history as ``v_flip_<K>b``."""
    v_flip: dict

    def record(self) -> dict:
        return {f"v_flip_{k}b": v for k, v in self.v_flip.items()}


@register_method("adsh")
class ADSH(_AsymmetricBase):
    """Asymmetric Deep Supervised Hashing (one head; see the module docstring).

    Parameters (keyword-only, beyond :class:`HashMethod`'s)
    ----------------------------------------------------
    gamma : 200 (released code and paper).
    num_samples : |Omega| = 2,000 per outer iteration (released code, CIFAR-10).
    inner_epochs : 3 passes over Omega per outer iteration (released code).
    similarity : "soft" (+1 / -r, released code, default) or "pm1" (+-1, paper).
    pool : "train" (default: split.train) or "database" (database minus val: ADSH's protocol).
    """

    default_epochs = 50  # released code: 50 outer iterations

    def __init__(self, *, bits: int, num_classes: int, gamma: float = 200.0,
                 num_samples: int = 2000, inner_epochs: int = 3, similarity: str = "soft",
                 pool: str = "train", **kw):
        super().__init__(bits=bits, num_classes=num_classes, **kw)
        self._setup_asym(lengths=(self.bits,), weights=(1.0,), gamma=gamma,
                         num_samples=num_samples, inner_epochs=inner_epochs,
                         similarity=similarity, pool=pool)


@register_method("mah")
class MAH(_AsymmetricBase):
    """Multi-head asymmetric hashing, flat or cascade (see the module docstring).

    Parameters (keyword-only, beyond :class:`ADSH`'s)
    -----------------------------------------------
    lengths : code lengths trained together; must contain ``bits`` (the evaluated head).
        Default ``(bits, 2 bits, 4 bits)``: (4, 8, 16) at 4 bits, the released CIFAR default.
    weights : loss weight per length, in the order of ``sorted(lengths)``; default 4:2:1 for
        three lengths (largest on the shortest code, released code), else 2^(H-1-h).
    variant : "cascade" (default; the published best) or "flat".
    distill : weight of **our** optional distillation term (not in the paper or the released
        code): each shorter head's batch similarity u u^T / K is pulled towards the next
        longer head's (detached). Default 0 (off).
    """

    default_epochs = 41  # released code, CIFAR-10: --max-iter default 41

    def __init__(self, *, bits: int, num_classes: int, lengths: tuple | None = None,
                 weights: tuple | None = None, variant: str = "cascade", distill: float = 0.0,
                 gamma: float = 200.0, num_samples: int = 2000, inner_epochs: int = 3,
                 similarity: str = "soft", pool: str = "train", **kw):
        super().__init__(bits=bits, num_classes=num_classes, **kw)
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        lengths = (self.bits, 2 * self.bits, 4 * self.bits) if lengths is None else lengths
        lengths = tuple(sorted(check_bits(k) for k in lengths))
        if len(set(lengths)) != len(lengths) or self.bits not in lengths:
            raise ValueError(f"lengths must be distinct and contain bits={self.bits}, "
                             f"got {lengths}")
        if weights is None:
            weights = (4.0, 2.0, 1.0) if len(lengths) == 3 else \
                tuple(float(2 ** (len(lengths) - 1 - h)) for h in range(len(lengths)))
        if len(weights) != len(lengths) or any(w < 0 for w in weights):
            raise ValueError(f"weights must be {len(lengths)} non-negative numbers (one per "
                             f"length, shortest first), got {weights}")
        if distill < 0:
            raise ValueError(f"distill must be >= 0, got {distill}")
        self.variant = variant
        self.distill = float(distill)
        feat = self.model.head.in_dim
        hidden = self.head_options["hidden"]
        if variant == "flat":  # parallel heads on the shared features
            self.heads = nn.ModuleList(HashHead(feat, k, hidden=hidden) for k in lengths)
        else:  # longest from the features; each shorter from the next longer's logits
            self.heads = nn.ModuleList(
                [nn.Linear(lengths[h + 1], lengths[h]) for h in range(len(lengths) - 1)]
                + [HashHead(feat, lengths[-1], hidden=hidden)])
        self.model.head = self.heads[len(lengths) - 1 if variant == "cascade"
                                     else lengths.index(self.bits)]
        self._setup_asym(lengths=lengths, weights=weights, gamma=gamma,
                         num_samples=num_samples, inner_epochs=inner_epochs,
                         similarity=similarity, pool=pool)

    def forward(self, x) -> HashOutput:
        f = self.features(x)
        if self.variant == "flat":
            zs = [head.preactivation(f) for head in self.heads]
        else:
            zs = [None] * len(self.lengths)
            zs[-1] = self.heads[-1].preactivation(f)
            for h in range(len(self.lengths) - 2, -1, -1):
                zs[h] = self.heads[h](zs[h + 1])
        us = [torch.tanh(z) for z in zs]
        return HashOutput(z=zs[self.primary], u=us[self.primary], heads=us)

    def extra_loss(self, out):
        if self.distill <= 0:
            return None, {}
        us = [u.float() for u in out.heads]
        term = 0.0
        for h in range(len(us) - 1):
            short = us[h] @ us[h].T / self.lengths[h]
            long = (us[h + 1] @ us[h + 1].T / self.lengths[h + 1]).detach()
            term = term + ((short - long) ** 2).mean()
        return self.distill * term, {"distill": float(term.detach())}

    @torch.no_grad()
    def encode_heads(self, x, *, batch_size: int = 1024, device=None) -> list[torch.Tensor]:
        """Forward-pass codes of every head (list of (n, K_h) float {-1, +1}, shortest first)."""
        chunks = self.eval_chunks(x, lambda xb: [binarize(u.float()).cpu()
                                                 for u in self(xb).heads],
                                  batch_size=batch_size, device=device)
        if not chunks:  # no rows: one empty (0, K_h) array per head, as encode gives
            return [torch.empty(0, k) for k in self.lengths]
        return [torch.cat(per_head) for per_head in zip(*chunks)]
