"""Mixture of hash experts (MoHE) with one top-k gate per branch.

MLH (Ma, Li, Weng, "Mutual Learning for Hashing: Unlocking Strong Hash Functions from Weak
Supervision", arXiv 2510.07703) puts a *mixture-of-hash-experts* module between the shared
backbone and its two hash heads, with the experts shared by both branches. The paper's
body and code were not available; everything below the words "experts shared across
branches" and "balanced diversity and sparsity" is **our reconstruction**
(chapter 6 lists the sources), in the usual sparse mixture-of-experts form
(Shazeer et al. 2017; the balance term of Switch Transformer, Fedus et al. 2021):

* E experts, each ``Linear(in_dim, out_dim) -> ReLU`` (``activation="relu"``; ``None``
  leaves them linear);
* one gate per branch, ``Linear(in_dim, E)``; the k largest gate logits of a sample are
  kept and the softmax is taken over those k only, so the routing weights g (n, E) have
  exactly k non-zero entries per sample, summing to 1;
* output ``h = sum_e g_e * expert_e(x)``: the experts a sample does not route to get no
  gradient from it, and neither do their gate logits;
* load balance (Switch form): ``E * sum_e f_e * P_e`` with f_e the fraction of the
  batch's k routing slots that go to expert e and P_e the mean *full* softmax probability
  of e. It equals 1 when routing is uniform and grows up to E when one expert takes all;
  only P carries gradient.

E = 1 is a plain layer: the single expert with weight 1 (the gate has nothing to choose).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["HashExperts", "topk_gate"]


def topk_gate(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k routing weights from gate logits.

    Parameters
    ----------
    logits : (n, E) float.
    k : number of experts per sample, 1 <= k <= E.

    Returns
    -------
    weights : (n, E) float, the softmax over each row's k largest logits, 0 elsewhere
        (exactly k non-zero entries per row; rows sum to 1).
    chosen : (n, E) bool, the k chosen experts of each row.
    """
    if logits.dim() != 2:
        raise ValueError(f"gate logits must be (n, E), got {tuple(logits.shape)}")
    e = logits.shape[1]
    if not 1 <= int(k) <= e:
        raise ValueError(f"top_k must be in [1, {e}] (the number of experts), got {k}")
    top, idx = logits.topk(int(k), dim=1)
    w_top = torch.softmax(top, dim=1)
    weights = torch.zeros_like(logits).scatter(1, idx, w_top)
    chosen = torch.zeros_like(logits, dtype=torch.bool).scatter(1, idx, True)
    return weights, chosen


class HashExperts(nn.Module):
    """E experts shared by named branches, one top-k gate per branch.

    Parameters
    ----------
    in_dim : input (backbone feature) dimension.
    out_dim : expert output dimension (the hash heads' input).
    experts : E >= 1 (MLH default 4, our reconstruction).
    top_k : k experts per sample, 1 <= k <= E (default 2, clipped to E when E = 1).
    branches : names of the gated branches, default ("center", "pairwise").
    activation : "relu" (default) or None, after each expert's linear map.

    ``forward(x, branch)`` returns ``(h, info)``: h (n, out_dim) and info a dict with
    ``"weights"`` (n, E) routing weights, ``"chosen"`` (n, E) bool, ``"probs"`` (n, E) full
    softmax of the gate logits and ``"balance"`` the scalar load-balancing term.
    """

    def __init__(self, in_dim: int, out_dim: int, *, experts: int = 4, top_k: int = 2,
                 branches: Sequence[str] = ("center", "pairwise"), activation: str | None = "relu"):
        super().__init__()
        if isinstance(experts, bool) or int(experts) < 1:
            raise ValueError(f"experts must be >= 1 (use 0 in MLH for no expert module), got {experts}")
        experts = int(experts)
        top_k = min(int(top_k), experts) if experts == 1 else int(top_k)
        if not 1 <= top_k <= experts:
            raise ValueError(f"top_k must be in [1, experts={experts}], got {top_k}")
        if activation not in ("relu", None):
            raise ValueError(f"activation must be 'relu' or None, got {activation!r}")
        branches = tuple(branches)
        if not branches or len(set(branches)) != len(branches):
            raise ValueError(f"branches must be distinct names, got {branches}")
        self.in_dim, self.out_dim = int(in_dim), int(out_dim)
        self.num_experts, self.top_k, self.branches = experts, top_k, branches
        self.activation = activation
        self.experts = nn.ModuleList(nn.Linear(self.in_dim, self.out_dim) for _ in range(experts))
        self.gates = nn.ModuleDict({b: nn.Linear(self.in_dim, experts) for b in branches})

    def expert_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """All experts' outputs (n, E, out_dim) (dense; E is small)."""
        h = torch.stack([ex(x) for ex in self.experts], dim=1)
        return F.relu(h) if self.activation == "relu" else h

    def route(self, x: torch.Tensor, branch: str) -> dict:
        """Gate of ``branch``: routing weights, chosen experts, full probabilities, balance."""
        if branch not in self.gates:
            raise ValueError(f"unknown branch {branch!r}; this module has {self.branches}")
        logits = self.gates[branch](x).float()
        weights, chosen = topk_gate(logits, self.top_k)
        probs = torch.softmax(logits, dim=1)
        frac = chosen.float().mean(0) / self.top_k            # f_e, sums to 1
        balance = self.num_experts * (frac * probs.mean(0)).sum()
        return {"weights": weights, "chosen": chosen, "probs": probs, "balance": balance}

    def forward(self, x: torch.Tensor, branch: str, *, outputs: torch.Tensor | None = None):
        """Mixture output of ``branch`` (n, out_dim) and its routing info.

        ``outputs`` lets several branches reuse one :meth:`expert_outputs` call.
        """
        x = x.flatten(1)
        info = self.route(x, branch)
        h = self.expert_outputs(x) if outputs is None else outputs
        out = (info["weights"].to(h.dtype).unsqueeze(-1) * h).sum(1)
        return out, info
