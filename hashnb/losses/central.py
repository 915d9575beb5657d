"""Center-based losses.

CSQ (Yuan et al., CVPR 2020, arXiv 1908.00347): bitwise binary cross-entropy between the
relaxed code mapped to [0, 1] and the target center mapped to {0, 1}, plus a quantization
term. The released code's form is used (``train.py``): the squared quantization
``mean((|u| - 1)^2)`` rather than the paper's log-cosh, lambda = 0.05 for ResNet-50, and no
pairwise term (the README commands set its weight to 0).

Stability: with u = tanh(z), (u + 1) / 2 = sigmoid(2 z) exactly, so the BCE is computed
from the logits 2 z (``binary_cross_entropy_with_logits``) and never takes log(0) when a
code saturates -- a silent NaN/clamp source in implementations that feed tanh outputs to BCE.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["csq_loss", "quantization_loss"]


def center_cosines(u: torch.Tensor, y: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Cosine of every code to every class center, (n, C), in ``u``'s dtype.

    The shared first step of the softmax-over-centers losses (OrthoHash/CRH logits, MLH's
    center branch). Checks that ``u`` (n, K) and ``centers`` (C, K) share K and that the
    labels ``y`` are multi-hot (n, C).
    """
    if u.dim() != 2 or centers.dim() != 2 or u.shape[1] != centers.shape[1]:
        raise ValueError(f"codes (n, K) and centers (C, K) must share K, got {tuple(u.shape)} "
                         f"and {tuple(centers.shape)}")
    if y.shape != (u.shape[0], centers.shape[0]):
        raise ValueError(f"y must be multi-hot ({u.shape[0]}, {centers.shape[0]}), got "
                         f"{tuple(y.shape)}; convert class ids with hashnb.utils.to_multihot")
    return F.normalize(u, dim=1) @ F.normalize(centers.to(u.dtype), dim=1).T


def quantization_loss(u: torch.Tensor) -> torch.Tensor:
    """mean over batch and bits of (|u| - 1)^2; 0 exactly when every entry is +-1."""
    return (u.abs() - 1).pow(2).mean()


def csq_loss(z: torch.Tensor, targets: torch.Tensor, *, quant_weight: float = 0.05):
    """Central similarity loss.

    Parameters
    ----------
    z : (n, K) float, hash-layer pre-activations (u = tanh(z)).
    targets : (n, K) float in {-1, +1}, each item's hash center.
    quant_weight : lambda of the quantization term (CSQ README, ResNet-50: 0.05).

    Returns
    -------
    loss : scalar tensor; logs : dict with "center" and "quant" floats.
    """
    if z.shape != targets.shape:
        raise ValueError(f"z {tuple(z.shape)} and targets {tuple(targets.shape)} must match")
    center = F.binary_cross_entropy_with_logits(2 * z, (targets + 1) / 2)
    quant = quantization_loss(torch.tanh(z))
    loss = center + quant_weight * quant
    return loss, {"center": float(center.detach()), "quant": float(quant.detach())}
