"""OrthoHash's single objective (Hoe, Ng, Zhang, Chan, Song, Xiang, "One Loss for All: Deep
Hashing with a Single Cosine Similarity based Learning Objective", NeurIPS 2021,
arXiv 2109.14449; official code kamwoh/orthohash, ``functions/loss/orthohash.py``).

Each class c has a fixed binary target o_c in {-1, +1}^K. The BatchNorm'ed hash output v
is compared with every target by cosine similarity; the logits are scaled cosines with an
additive margin on the true class(es) (CosFace style, "OrthoCos"),

    l_c = s * (cos(v, o_c) - m * y_c),

and the loss is softmax cross-entropy. Because ||v - b||^2 = 2K (1 - cos(v, b)) when
||v|| = sqrt(K), raising the cosine to the true target also shrinks the quantization error,
so the paper needs no separate quantization term (the code's default weight is 0).

Multi-label data (the paper's multi-label setting): the paper's "label smoothing" cross-entropy, the
target distribution y / ||y||_1 over the positive labels, with the margin subtracted from
*every* positive class (the code's ``labels * m``). For one-hot labels this is exactly the
usual cross-entropy, so one formula serves both cases. (The released ``main.py`` treats only
NUS-WIDE as multi-label and runs COCO through argmax of the multi-hot; we apply the paper's
rule to every multi-label item.)

Optional margin ``"arc"`` ("OrthoArc"): l_c = s * cos(theta_c + m * y_c) with the cosine
clamped to +-0.99999 as in the code. Optional quantization term, as in the code, against the
detached sign b = sign(v): ``"cs"`` 1 - cos(v, b) (per item), ``"l1"`` |v - b|, ``"l2"``
(v - b)^2, each averaged.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from hashnb.losses.central import center_cosines
from hashnb.utils import binarize

__all__ = ["orthohash_logits", "orthohash_loss"]


def _f32(t: torch.Tensor) -> torch.Tensor:
    """At least float32 (half precision under autocast is promoted; float64 kept)."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def orthohash_logits(z_bn: torch.Tensor, y: torch.Tensor, targets: torch.Tensor, *,
                     s: float = 8.0, m: float = 0.2, margin_type: str = "cos") -> torch.Tensor:
    """Scaled cosine logits with the margin on the positive classes.

    Parameters
    ----------
    z_bn : (n, K) float, the BatchNorm'ed hash output v.
    y : (n, C) multi-hot float.
    targets : (C, K) +-1 class targets o_c.
    s, m : scale and margin.
    margin_type : "cos" (s * (cos - m y)) or "arc" (s * cos(arccos(cos) + m y)).

    Returns
    -------
    logits : (n, C), float32 (float64 for float64 inputs).
    """
    z_bn = _f32(z_bn)
    cos = center_cosines(z_bn, y, targets)
    y = y.to(z_bn.dtype)
    if margin_type == "cos":
        return s * (cos - m * y)
    if margin_type == "arc":
        return s * torch.cos(torch.acos(cos.clamp(-0.99999, 0.99999)) + m * y)
    raise ValueError(f"margin_type must be 'cos' or 'arc', got {margin_type!r}")


def orthohash_loss(z_bn: torch.Tensor, y: torch.Tensor, targets: torch.Tensor, *,
                   s: float = 8.0, m: float = 0.2, quant_weight: float = 0.0,
                   quant_type: str = "cs", margin_type: str = "cos"):
    """OrthoHash loss: margin cosine softmax cross-entropy (+ optional quantization).

    Parameters
    ----------
    z_bn : (n, K) float, BatchNorm'ed hash output (codes are its sign).
    y : (n, C) multi-hot float; every row needs at least one label (``ValueError``
        otherwise). One-hot rows give the plain cross-entropy; multi-hot rows the paper's
        label-smoothed cross-entropy with target y / ||y||_1.
    targets : (C, K) float +-1, the fixed class targets.
    s : scale, 8 in the code (``--scale``); the paper's sqrt(K) equals it at 64 bits.
    m : cosine margin, 0.2 (code and paper; the README uses 0.3 for CIFAR-10).
    quant_weight : weight of the quantization term, 0 in the code (``--quan``).
    quant_type : "cs" | "l1" | "l2" (code's ``--quan-type``, default "cs").
    margin_type : "cos" (OrthoCos, default) or "arc" (OrthoArc).

    Returns
    -------
    loss : scalar tensor; logs : dict of floats "ce", "quant" and "acc" (share of items whose
    top logit is one of their labels).
    """
    if quant_type not in ("cs", "l1", "l2"):
        raise ValueError(f"quant_type must be 'cs', 'l1' or 'l2', got {quant_type!r}")
    z_bn = _f32(z_bn)
    y = y.to(z_bn.dtype)
    npos = y.sum(1, keepdim=True)
    if bool((npos == 0).any()):
        raise ValueError("some items have no label; drop them before training OrthoHash")
    logits = orthohash_logits(z_bn, y, targets, s=s, m=m, margin_type=margin_type)
    ce = -((y / npos) * F.log_softmax(logits, dim=1)).sum(1).mean()
    if quant_weight:
        v = z_bn
        b = binarize(v.detach())
        if quant_type == "cs":
            quant = (1.0 - F.cosine_similarity(v, b, dim=1)).mean()
        elif quant_type == "l1":
            quant = (v - b).abs().mean()
        else:
            quant = (v - b).pow(2).mean()
    else:
        quant = logits.new_zeros(())
    loss = ce + quant_weight * quant
    with torch.no_grad():
        acc = y.gather(1, logits.argmax(1, keepdim=True)).gt(0).float().mean()
    return loss, {"ce": float(ce.detach()), "quant": float(quant.detach()), "acc": float(acc)}
