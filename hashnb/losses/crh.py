"""CRH's objective (Yin, Yin, Hou, Liu, Chen, Zhang, "Codebook-Centric Deep Hashing:
End-to-End Joint Learning of Semantic Hash Centers and Neural Hash Function", AAAI 2026,
arXiv 2511.12162). The official code was not available: this follows the loss as the paper's abstract
and secondary summaries describe it (our reconstruction; chapter 4 lists the sources).

Against the *currently assigned* class centers h_c (which the reassignment step moves
between epochs) the logits are scaled cosines with an additive margin on the true
class(es), as in OrthoHash,

    l_c = s * (cos(z, h_c) - m * y_c),   L_cls = - sum_c (y_c / ||y||_1) log softmax(l)_c,

plus a tanh quantization term

    L_q = mean_k (|tanh z_k| - 1)^2,     L = L_cls + lambda_q * L_q

with m = 0.2, s = sqrt(2) ln(C - 1) (the AdaCos value), lambda_q = 0.1 for single-label
data and 0 for multi-label data (then L_q is only logged).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from hashnb.losses.orthohash import orthohash_logits

__all__ = ["crh_loss", "crh_scale"]


def crh_scale(num_classes: int) -> float:
    """s = sqrt(2) ln(C - 1) (AdaCos' fixed scale), with C - 1 clamped to >= 2 so that two
    classes still get a positive scale."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return math.sqrt(2.0) * math.log(max(num_classes - 1, 2))


def crh_loss(z: torch.Tensor, y: torch.Tensor, centers: torch.Tensor, *, s: float,
             m: float = 0.2, quant_weight: float = 0.1):
    """CRH loss: margin-cosine cross-entropy against the assigned centers + quantization.

    Parameters
    ----------
    z : (n, K) float, hash-layer output (codes are sign(z)).
    y : (n, C) multi-hot float; every row needs a label (``ValueError`` otherwise).
    centers : (C, K) float +-1, the current class centers.
    s, m : scale and cosine margin.
    quant_weight : lambda_q of mean (|tanh z| - 1)^2.

    Returns
    -------
    loss : scalar tensor; logs : dict of floats "ce", "quant", "acc".
    """
    z = z if z.dtype in (torch.float32, torch.float64) else z.float()
    y = y.to(z.dtype)
    npos = y.sum(1, keepdim=True)
    if bool((npos == 0).any()):
        raise ValueError("some items have no label; drop them before training CRH")
    logits = orthohash_logits(z, y, centers, s=s, m=m, margin_type="cos")
    ce = -((y / npos) * F.log_softmax(logits, dim=1)).sum(1).mean()
    quant = (torch.tanh(z).abs() - 1.0).pow(2).mean()
    loss = ce + quant_weight * quant if quant_weight else ce
    with torch.no_grad():
        acc = y.gather(1, logits.argmax(1, keepdim=True)).gt(0).float().mean()
    return loss, {"ce": float(ce.detach()), "quant": float(quant.detach()), "acc": float(acc)}
