"""MLH: Mutual Learning for Hashing, with a Mixture of Hash Experts (MoHE).

Ma, Li, Weng, "Mutual Learning for Hashing: Unlocking Strong Hash Functions from Weak
Supervision", arXiv 2510.07703 (2025). A shared backbone feeds a mixture of hash experts
and two hash heads: a **center branch** (strong: class centers) and a **pairwise branch**
(weak: pair similarities). The two learn from each other through a mutual loss on the
relaxed codes of the same image; retrieval uses the center branch.

Only the abstract, a figure caption and AI-written summaries of the paper were available,
and no code (chapter 5 lists the sources). Everything marked **(our reconstruction)** below is
a guess made as faithfully as we could, and each is a constructor switch:

* losses (:mod:`hashnb.losses.mlh`): L_C = BCE on softmax(sqrt(K) cos(u, h_c)) plus
  quantization (MDS's released loss, which the summaries describe); L_P = the DPSH
  likelihood on tanh codes within the batch **(our reconstruction)**; L_M = mean
  (1 - cos(u^C, u^P)), symmetric or with a stop-gradient on the pairwise side
  (``stop_grad``) **(our reconstruction)**; weights (4, 1, 1) (secondary source).
* centers: one per class, minimum distance chosen from the Gilbert--Varshamov bound
  (summaries); here fixed, built by the greedy max-distance construction of
  :mod:`hashnb.centers` and checked to reach the GV distance (``centers="gv"``); whether the
  paper's centers are learnable is unclear, ours are fixed **(our reconstruction)**.
* MoHE (:class:`hashnb.models.HashExperts`): E experts ``Linear -> ReLU`` shared by both
  branches, a top-k softmax gate per branch, a Switch-style load-balancing term
  **(our reconstruction: E = 4, k = 2, weight 0.01, expert width 256)**. ``experts=0``
  removes the module (both heads sit on the backbone).
* ``branches``: "both" (MLH), "center" or "pairwise" (each branch alone, no mutual term),
  so the ablation's baselines are variants of this one method.
"""
from __future__ import annotations

import numpy as np
import torch

from hashnb.centers import center_report, gilbert_varshamov_distance, make_centers, max_distance_centers
from hashnb.losses.mlh import mlh_loss
from hashnb.methods.base import BranchOutput, HashMethod, HashOutput, register_method
from hashnb.models import HashExperts, HashHead
from hashnb.utils import binarize

__all__ = ["MLH", "gv_centers"]

_BRANCHES = {"both": ("center", "pairwise"), "center": ("center",), "pairwise": ("pairwise",)}


def gv_centers(num_classes: int, bits: int, *, seed: int = 0) -> np.ndarray:
    """Centers whose minimum Hamming distance reaches the Gilbert--Varshamov distance.

    The greedy max-distance construction (:func:`hashnb.centers.max_distance_centers`) is
    used; it provably reaches the GV distance for K <= 16 and in practice beyond (checked
    here, ``ValueError`` otherwise). MDS/MLH optimise their centers to a GV target; the
    construction is ours.
    """
    c = max_distance_centers(num_classes, bits, seed=seed)
    d, gv = center_report(c)["min"], gilbert_varshamov_distance(num_classes, bits)
    if d is not None and d < gv:
        raise ValueError(f"centers reach min distance {d} < GV distance {gv} for {num_classes} "
                         f"classes at {bits} bits; pass centers='hadamard' or an array")
    return c


@register_method("mlh")
class MLH(HashMethod):
    """Mutual Learning for Hashing (two branches, optional mixture of hash experts).

    Parameters (keyword-only, beyond :class:`HashMethod`'s)
    ----------------------------------------------------
    lambda_center, lambda_pair, lambda_mutual : 4, 1, 1 (reported best, secondary source).
    branches : "both" (default), "center" or "pairwise" (a branch alone; no mutual term).
    stop_grad : False (default, symmetric mutual loss) or True (the pairwise side is
        detached: the pairwise branch teaches the center branch, never the reverse).
    experts : E, 4 (our reconstruction); 0 = no MoHE, heads on the backbone.
    top_k : experts per sample, 2 (our reconstruction; clipped to 1 when E = 1).
    balance_weight : load-balancing weight, 0.01 (Switch Transformer's alpha).
    expert_dim : expert output width, 256 (our reconstruction).
    expert_activation : "relu" (default, our reconstruction) or None (linear experts): the
        switch of chapter 6's probe of what the expert layer itself costs.
    centers : "gv" (default, :func:`gv_centers`), a :func:`hashnb.centers.make_centers`
        kind ("hadamard", ...) or a (C, K) +-1 array.
    center_seed : seed of the center construction.
    quant_weight : center-branch quantization, 1e-4 (MDS).
    eta : DPSH quantization weight (per item eta / N_train), 10 (DPSH port, CIFAR-10).
    scale : softmax scale of the center loss, default sqrt(K).
    encode_branch : "auto" (center when active, else pairwise), "center" or "pairwise":
        the codes :meth:`encode` and ``forward(x).u`` give (and validation selects on).

    ``forward(x)`` returns a :class:`~hashnb.methods.base.HashOutput`: ``z``/``u`` of the
    retrieval branch, ``branches`` (``"center"``/``"pairwise"`` -> ``BranchOutput`` with
    ``z``, ``u`` and, with experts, the (n, E) routing weights ``gates``) and ``balance``
    (with experts: the load-balancing terms of the active branches' gates, summed, so 2
    means uniform routing in both gates of a two-branch model). Per-epoch mean gate
    weights appear in the history as ``usage_center_e0``, ``usage_pair_e0``, ...
    """

    default_epochs = 30  # as CSQ; chapter 5: ablation at 15 epochs, core variants again at 30
    default_lr = 1e-3
    default_batch_size = 128

    def __init__(self, *, bits: int, num_classes: int, lambda_center: float = 4.0,
                 lambda_pair: float = 1.0, lambda_mutual: float = 1.0, branches: str = "both",
                 stop_grad: bool = False, experts: int = 4, top_k: int = 2,
                 balance_weight: float = 0.01, expert_dim: int = 256,
                 expert_activation: str | None = "relu", centers="gv",
                 center_seed: int = 0, quant_weight: float = 1e-4, eta: float = 10.0,
                 scale: float | None = None, encode_branch: str = "auto", **kw):
        super().__init__(bits=bits, num_classes=num_classes, **kw)
        if branches not in _BRANCHES:
            raise ValueError(f"branches must be one of {sorted(_BRANCHES)}, got {branches!r}")
        if encode_branch not in ("auto", "center", "pairwise"):
            raise ValueError(f"encode_branch must be 'auto', 'center' or 'pairwise', got "
                             f"{encode_branch!r}")
        self.active = _BRANCHES[branches]
        if encode_branch != "auto" and encode_branch not in self.active:
            raise ValueError(f"encode_branch={encode_branch!r} is not trained with "
                             f"branches={branches!r}")
        if isinstance(experts, bool) or int(experts) < 0:
            raise ValueError(f"experts must be >= 0 (0 = no expert module), got {experts}")
        if min(lambda_center, lambda_pair, lambda_mutual, balance_weight) < 0:
            raise ValueError("loss weights must be >= 0")
        experts = int(experts)
        feat_dim = self.model.head.in_dim
        if experts > 0:
            self.moe = HashExperts(feat_dim, int(expert_dim), experts=experts, top_k=top_k,
                                   branches=("center", "pairwise"),
                                   activation=expert_activation)
            head_in = int(expert_dim)
            top_k = self.moe.top_k
        else:
            self.moe = None
            head_in = feat_dim
        self.model.head = HashHead(head_in, self.bits, **self.head_options)  # the center head
        self.pair_head = HashHead(head_in, self.bits, **self.head_options)
        if isinstance(centers, str):
            centers = (gv_centers(num_classes, self.bits, seed=center_seed) if centers == "gv"
                       else make_centers(centers, num_classes, self.bits, seed=center_seed))
        self.fixed_centers(centers)

        self.lambdas = (float(lambda_center), float(lambda_pair), float(lambda_mutual))
        self.branches, self.stop_grad = branches, bool(stop_grad)
        self.experts, self.top_k = experts, int(top_k)
        self.balance_weight, self.expert_dim = float(balance_weight), int(expert_dim)
        self.quant_weight, self.eta, self.scale = float(quant_weight), float(eta), scale
        self.encode_branch = (self.active[0] if encode_branch == "auto" else encode_branch)
        self.n_train: int | None = None

    # -- model ------------------------------------------------------------------------
    def _heads(self):
        return {"center": self.model.head, "pairwise": self.pair_head}

    def forward(self, x: torch.Tensor, *, branches=None) -> HashOutput:
        f = self.features(x).flatten(1)
        names = self.active if branches is None else tuple(branches)
        if self.encode_branch not in names:
            names = names + (self.encode_branch,)
        outs = self.moe.expert_outputs(f) if self.moe is not None else None
        res: dict[str, BranchOutput] = {}
        balance = f.new_zeros(())
        for b in names:
            h, gates = f, None
            if self.moe is not None:
                h, info = self.moe(f, b, outputs=outs)
                gates = info["weights"]
                balance = balance + info["balance"]
            z = self._heads()[b].preactivation(h)
            res[b] = BranchOutput(z=z, u=torch.tanh(z), gates=gates)
        main = res[self.encode_branch]
        return HashOutput(z=main.z, u=main.u, branches=res, balance=balance)

    def on_train_start(self, ctx) -> None:
        super().on_train_start(ctx)
        self.n_train = len(ctx.train_y)

    def loss(self, out, batch):
        uc = out.branches["center"].u if "center" in self.active else None
        up = out.branches["pairwise"].u if "pairwise" in self.active else None
        loss, logs = mlh_loss(uc, up, batch["y"], self.centers, lambdas=self.lambdas,
                              quant_weight=self.quant_weight, eta=self.eta,
                              n_train=self.n_train, stop_grad=self.stop_grad, scale=self.scale)
        if self.moe is not None:
            loss = loss + self.balance_weight * out.balance
            logs["balance"] = float(out.balance.detach())
            for b in self.active:  # mean gate weight per expert: the history's usage curves
                w = out.branches[b].gates.detach().float().mean(0)
                for e, v in enumerate(w.tolist()):
                    logs[f"usage_{_key(b)}_e{e}"] = v
        return loss, logs

    # -- codes and gates ----------------------------------------------------------------
    @torch.no_grad()
    def encode(self, x, *, batch_size: int = 1024, device=None, branch: str | None = None):
        """Binary codes (n, K) of ``branch`` (default ``encode_branch``), eval mode, chunked."""
        if branch is None:
            return super().encode(x, batch_size=batch_size, device=device)
        if branch not in ("center", "pairwise"):
            raise ValueError(f"branch must be 'center' or 'pairwise', got {branch!r}")
        return self._collect(x, "u", batch_size, device, branch, binary=True)

    @torch.no_grad()
    def gate_weights(self, x, *, branch: str = "center", batch_size: int = 1024, device=None):
        """Routing weights (n, E) of ``branch``'s gate in eval mode (needs ``experts`` >= 1)."""
        if self.moe is None:
            raise ValueError("this MLH has no expert module (experts=0): no gates to read")
        if branch not in ("center", "pairwise"):
            raise ValueError(f"branch must be 'center' or 'pairwise', got {branch!r}")
        return self._collect(x, "gates", batch_size, device, branch, binary=False)

    def _collect(self, x, field, batch_size, device, branch, *, binary):
        def take(xb):
            v = getattr(self(xb, branches=(branch,)).branches[branch], field).float()
            return (binarize(v) if binary else v).cpu()

        return torch.cat(self.eval_chunks(x, take, batch_size=batch_size, device=device))


def _key(branch: str) -> str:
    return "pair" if branch == "pairwise" else branch
