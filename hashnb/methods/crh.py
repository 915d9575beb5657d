"""CRH: Center-Reassigned Hashing (Yin, Yin, Hou, Liu, Chen, Zhang, "Codebook-Centric Deep
Hashing: End-to-End Joint Learning of Semantic Hash Centers and Neural Hash Function",
AAAI 2026, arXiv 2511.12162).

Fixed hash centers (CSQ, OrthoHash) are drawn without looking at the data, so which class
gets which code is arbitrary: "cat" may sit as far from "dog" as from "truck". CRH keeps a
preset **codebook** of M > C candidate codes and, between epochs, **reassigns** the classes
to codebook entries so that each class takes the candidate nearest (on average) to the
codes its training images already produce. Centers therefore follow the network, and
classes that the network maps close together can take nearby codes.

* Codebook: M candidates (default M = 2C), distinct, with large pairwise distances: the
  greedy max-min-distance construction (:func:`hashnb.centers.max_distance_centers`,
  ``codebook="max-distance"``, default) or the best of ``codebook_trials`` uniform draws
  (:func:`hashnb.centers.crh_codebook`, ``codebook="random"``).
* Multi-head codebook: the K bits are split into H heads of d bits, d the smallest divisor
  of K with 2^d >= M (:func:`hashnb.centers.crh_head_bits`); each head has its own
  sub-codebook and its own class -> sub-code matching (distinct within a head); a class
  center is the concatenation of its H sub-codes. ``heads=1`` uses one K-bit codebook.
* Reassignment (after the epochs of the schedule): per head, the (C, M) cost is the
  weighted mean squared distance ||sign(z^h) - b_m||^2 between the class's *training*
  codes, collected during that epoch's training pass (a sample with q labels counts 1/q
  for each), and every candidate b_m; the one-to-one matching is solved exactly by the
  Hungarian algorithm or greedily in a random class order
  (:func:`hashnb.centers.match_classes_to_codes`). Default schedule: once early in the
  first epoch, after ``first_reassign`` training batches (the codes of a barely trained
  network, which already group by class on pretrained features), then after every epoch
  for the first 20, then every 5th. Without the early step (``first_reassign=0``, the
  schedule of earlier hashnb versions) the first matching waits a full epoch, by which time every
  class has been pulled to its random initial center and the matching keeps it there.
* Loss: margin-cosine cross-entropy against the assigned centers plus tanh quantization
  (:func:`hashnb.losses.crh.crh_loss`).

**Our reconstruction.** Neither the paper's full text nor its code was available (chapter 4
lists the sources and how certain each detail is). Guessed or adapted here,
each a constructor switch: how "large distances" are obtained for the codebook (greedy
max-min distance; the best of ``codebook_trials`` uniform draws is the ``"random"``
switch); when the first reassignment runs (``first_reassign``); the initial
assignment (uniformly random, per head); the codebook seed (the run's seed unless
``center_seed`` is given); the Hungarian solver as the default (the release reportedly
defaults to greedy); the hash layer (a BatchNorm'ed linear layer on hashnb's MLP, as our
OrthoHash, instead of a linear layer on a fine-tuned ResNet-34) and the frozen-feature
training settings (Adam 1e-3, batch 256, 50 epochs, best validation epoch kept) instead of
the paper's (Adam 1e-4, cosine schedule, 300 epochs). The release's undocumented
"best-of-1000 center candidates" heuristic is left out.

Per-epoch records (``history``): ``assignment`` (H, C) code index of every class in every
head after the epoch, ``reassigned`` (1 when the step ran), ``centers_changed`` (classes
whose center moved), and in the first record ``assignment_init`` and
``early_centers_changed`` (centers moved by the early step).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hashnb.centers import (crh_codebook, crh_head_bits, match_classes_to_codes,
                            max_distance_centers)
from hashnb.losses.crh import crh_loss, crh_scale
from hashnb.methods.base import EpochLog, HashMethod, SingleItemBatchNorm, register_method
from hashnb.utils import binarize

__all__ = ["CRH", "CRHEpochLog"]

_REASSIGN = ("hungarian", "greedy", "none")
_CODEBOOKS = ("max-distance", "random")
_EARLY = 2 ** 31 - 1  # the early step's key for the greedy order's random stream


@register_method("crh")
class CRH(SingleItemBatchNorm, HashMethod):
    """Center-Reassigned Hashing with a (multi-head) codebook.

    Parameters (keyword-only, beyond :class:`HashMethod`'s)
    ----------------------------------------------------
    reassign : "hungarian" (exact matching, default), "greedy" (random class order, each
        takes its cheapest free code) or "none" (centers stay at their random initial
        assignment: fixed random centers).
    heads : "auto" (the divisor rule above, paper) or an int H dividing K with
        2^(K/H) >= M; 1 = a single K-bit codebook.
    codebook_size : M, default 2C ("2x the number of classes performs best", paper).
    reassign_until, reassign_every : reassign after each of the first ``reassign_until``
        epochs, then after every ``reassign_every``-th epoch (20 and 5, paper/release);
        ``reassign_every=0`` stops after ``reassign_until``.
    margin : m = 0.2 (paper). scale : "adacos" = sqrt(2) ln(C - 1) (paper) or a number.
    quant_weight : lambda_q; "auto" = 0.1 for single-label training data, 0 for
        multi-label (paper/release).
    center_seed : seed of the codebook, the initial assignment and the greedy order;
        None (default) = the run's seed (so seeds also vary the codebook).
    codebook : "max-distance" (default: greedy farthest-point sub-codebooks, which reach
        the Gilbert--Varshamov distance for d <= 16) or "random" (best of
        ``codebook_trials`` uniform draws, by minimum then mean distance); both ours.
    codebook_trials : uniform draws per sub-codebook for ``codebook="random"``.
    first_reassign : run the first reassignment after this many training batches of the
        first epoch (default 4; ours), on the codes collected in those batches; 0 = only at
        epoch ends.
    head_batchnorm : BatchNorm on the hash layer (default True, as our OrthoHash).
    """

    default_epochs = 50         # as our OrthoHash (same loss family); paper: 300 (fine-tuning)
    default_lr = 1e-3           # Adam on frozen features; paper: 1e-4 on ResNet-34
    default_batch_size = 256    # as our OrthoHash; paper: 128
    default_weight_decay = 0.0  # as our OrthoHash (see its docstring); paper: 1e-5

    def __init__(self, *, bits: int, num_classes: int, reassign: str = "hungarian",
                 heads: int | str = "auto", codebook_size: int | None = None,
                 reassign_until: int = 20, reassign_every: int = 5, margin: float = 0.2,
                 scale: float | str = "adacos", quant_weight: float | str = "auto",
                 center_seed: int | None = None, codebook: str = "max-distance",
                 codebook_trials: int = 200, first_reassign: int = 4,
                 head_batchnorm: bool = True, **kw):
        super().__init__(bits=bits, num_classes=num_classes, head_batchnorm=head_batchnorm, **kw)
        if reassign not in _REASSIGN:
            raise ValueError(f"reassign must be one of {_REASSIGN}, got {reassign!r}")
        C, K = int(num_classes), self.bits
        M = 2 * C if codebook_size is None else codebook_size
        if not isinstance(M, (int, np.integer)) or M < C:
            raise ValueError(f"codebook_size must be an integer >= num_classes ({C}), got {M!r}")
        M = int(M)
        if heads == "auto":
            d = crh_head_bits(K, M)
        elif isinstance(heads, (int, np.integer)) and heads >= 1 and K % heads == 0:
            d = K // int(heads)
            if d < 63 and 2 ** d < M:
                raise ValueError(f"heads={heads} gives {d}-bit heads, too few for {M} distinct "
                                 f"codes; use fewer heads or heads='auto'")
        else:
            raise ValueError(f"heads must be 'auto' or a positive divisor of bits={K}, "
                             f"got {heads!r}")
        if isinstance(scale, str):
            if scale != "adacos":
                raise ValueError(f"scale must be a number or 'adacos', got {scale!r}")
            s = crh_scale(C)
        else:
            s = float(scale)
        if not s > 0:
            raise ValueError(f"scale must be > 0, got {scale!r}")
        if not (quant_weight == "auto" or (isinstance(quant_weight, (int, float))
                                            and quant_weight >= 0)):
            raise ValueError(f"quant_weight must be 'auto' or a number >= 0, got {quant_weight!r}")
        if reassign_until < 0 or reassign_every < 0:
            raise ValueError("reassign_until and reassign_every must be >= 0")
        if codebook not in _CODEBOOKS:
            raise ValueError(f"codebook must be one of {_CODEBOOKS}, got {codebook!r}")
        if isinstance(first_reassign, bool) or not isinstance(first_reassign, (int, np.integer)) \
                or first_reassign < 0:
            raise ValueError(f"first_reassign must be an integer >= 0 (training batches of "
                             f"the first epoch; 0 = none), got {first_reassign!r}")
        self.reassign = reassign
        self.num_heads, self.head_bits, self.codebook_size = K // d, d, M
        self.reassign_until, self.reassign_every = int(reassign_until), int(reassign_every)
        self.margin, self.s = float(margin), s
        self.quant_weight_setting = quant_weight
        self.quant_weight = 0.1 if quant_weight == "auto" else float(quant_weight)
        self.center_seed = center_seed
        self.codebook_kind = codebook
        self.codebook_trials = int(codebook_trials)
        self.first_reassign = int(first_reassign)
        self._batches = 0  # training batches seen in the first epoch (early step)
        self._all_reduce = None  # the context's all_reduce_, set at train start
        self._early_moved: int | None = None  # centers moved by the early step (this epoch)
        H = self.num_heads
        self.register_buffer("codebook", torch.zeros(H, M, d))
        self.register_buffer("assignment", torch.zeros(H, C, dtype=torch.long))
        self.register_buffer("centers", torch.zeros(C, K))
        self._draw(0 if center_seed is None else center_seed)
        self._seed_used = 0 if center_seed is None else int(center_seed)
        self._reset_stats()
        self.last_cost: np.ndarray | None = None  # (H, C, M) cost of the latest step

    # -- codebook and centers -------------------------------------------------------------
    def _draw(self, seed: int) -> None:
        """Sub-codebooks and a uniformly random initial assignment, from ``seed``."""
        H, C, M, d = self.num_heads, self.num_classes, self.codebook_size, self.head_bits
        if self.codebook_kind == "max-distance":
            cb = np.stack([max_distance_centers(M, d, seed=[int(seed), h]) for h in range(H)])
        else:
            cb = np.stack([crh_codebook(M, d, seed=[int(seed), h],
                                        n_trials=self.codebook_trials) for h in range(H)])
        rng = np.random.default_rng([int(seed), 7919])
        asg = np.stack([rng.permutation(M)[:C] for _ in range(H)])
        dev = self.codebook.device
        self.codebook = torch.from_numpy(cb).to(dev)
        self.assignment = torch.from_numpy(asg).long().to(dev)
        self._update_centers()
        self._moved = False  # the assignment is the initial one of this draw

    def _update_centers(self) -> None:
        H = self.num_heads
        parts = [self.codebook[h][self.assignment[h]] for h in range(H)]  # H x (C, d)
        self.centers = torch.cat(parts, dim=1).to(self.centers.dtype)

    def center_similarity(self) -> np.ndarray:
        """(C, C) cosine similarity of the current centers, 1 - 2 d_H / K."""
        c = self.centers.cpu().double().numpy()
        return c @ c.T / self.bits

    # -- collecting training codes --------------------------------------------------------
    def _reset_stats(self) -> None:
        self._sum = torch.zeros(self.num_classes, self.bits, dtype=torch.float64)
        self._weight = torch.zeros(self.num_classes, dtype=torch.float64)

    @torch.no_grad()
    def _collect(self, z: torch.Tensor, y: torch.Tensor) -> None:
        b = binarize(z.detach().float()).double().cpu()
        y = y.detach().double().cpu()
        w = y / y.sum(1, keepdim=True).clamp_min(1.0)  # 1/q to each of the q labels
        self._sum += w.T @ b
        self._weight += w.sum(0)

    def reassignment_cost(self) -> np.ndarray:
        """(H, C, M) cost: weighted mean ||sign(z^h) - b_m||^2 over each class's training
        codes collected this epoch (= 2d - 2 <mean code, b_m>). A class with no collected
        code gets the constant row 2d."""
        W = self._weight.clamp_min(1e-12)[:, None]
        mean = (self._sum / W).numpy()                       # (C, K)
        mean[self._weight.numpy() == 0] = 0.0
        d = self.head_bits
        cb = self.codebook.cpu().double().numpy()            # (H, M, d)
        return np.stack([2 * d - 2 * mean[:, h * d:(h + 1) * d] @ cb[h].T
                         for h in range(self.num_heads)])

    def scheduled(self, epoch: int) -> bool:
        """Whether the step runs after (0-based) ``epoch``."""
        if self.reassign == "none":
            return False
        e = epoch + 1
        every = self.reassign_every
        return e <= self.reassign_until or (every > 0 and e % every == 0)

    @torch.no_grad()
    def reassign_centers(self, epoch: int = 0) -> int:
        """Run the matching on the collected codes; returns how many class centers moved."""
        cost = self.reassignment_cost()
        self.last_cost = cost
        old = self.centers.clone()
        new = np.stack([match_classes_to_codes(
            cost[h], method=self.reassign,
            rng=np.random.default_rng([self._seed_used, int(epoch), h]))
            for h in range(self.num_heads)])
        self.assignment = torch.from_numpy(new).long().to(self.assignment.device)
        self._update_centers()
        self._moved = True
        return int((self.centers != old).any(1).sum())

    # -- hooks ----------------------------------------------------------------------------
    def on_train_start(self, ctx) -> None:
        super().on_train_start(ctx)
        if self.center_seed is None and (self._seed_used != int(ctx.seed) or self._moved):
            self._seed_used = int(ctx.seed)  # the run's seed (drawn at construction for 0)
            self._draw(self._seed_used)
        if self.quant_weight_setting == "auto":
            multi = bool((ctx.train_y.sum(1) > 1).any())
            self.quant_weight = 0.0 if multi else 0.1
        self._all_reduce = ctx.all_reduce_

    def on_epoch_start(self, epoch: int, ctx) -> "CRHEpochLog | None":
        self._reset_stats()
        self._batches, self._early_moved = (0 if epoch == 0 else -1), None
        if epoch == 0:
            return CRHEpochLog(assignment_init=self.assignment.cpu().tolist())
        return None

    @torch.no_grad()
    def on_batch_end(self, out, batch) -> None:
        """Collect the step's training codes per class for the next reassignment; run the
        early step after ``first_reassign`` batches of the first epoch."""
        if self.reassign == "none":
            return
        self._collect(out.z.float(), batch["y"])
        if self.first_reassign and self._batches >= 0:
            self._batches += 1
            if self._batches == self.first_reassign:
                self._early_moved = self._reassign_collected(_EARLY, self._all_reduce)
                self._batches = -1

    def _reassign_collected(self, key: int, all_reduce) -> int:
        """Sum the collected codes over the ranks (``all_reduce``, None = one process), run the
        matching and start collecting afresh; returns how many class centers moved."""
        for t in (self._sum, self._weight):
            if all_reduce is not None:
                all_reduce(t)
        moved = self.reassign_centers(key)
        self._reset_stats()
        return moved

    def on_epoch_end(self, epoch: int, ctx) -> "CRHEpochLog":
        ran = self.scheduled(epoch)
        moved = self._reassign_collected(epoch, ctx.all_reduce_) if ran else 0
        self._reset_stats()
        return CRHEpochLog(early_centers_changed=self._early_moved, reassigned=int(ran),
                           centers_changed=moved, assignment=self.assignment.cpu().tolist())

    # -- loss -----------------------------------------------------------------------------
    def loss(self, out, batch):
        return crh_loss(out.z.float(), batch["y"], self.centers, s=self.s, m=self.margin,
                        quant_weight=self.quant_weight)


@dataclass
class CRHEpochLog(EpochLog):
    """History records of CRH: the assignment before training (first epoch), whether the
    step ran, how many class centers moved, and the assignment (H, C) after the epoch."""
    assignment_init: list | None = None
    early_centers_changed: int | None = None
    reassigned: int | None = None
    centers_changed: int | None = None
    assignment: list | None = None
