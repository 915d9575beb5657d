"""MLH losses: center branch, pairwise branch, mutual alignment.

MLH (Ma, Li, Weng, "Mutual Learning for Hashing: Unlocking Strong Hash Functions from Weak
Supervision", arXiv 2510.07703) trains two hash heads on one backbone,
``L = lambda_1 L_C + lambda_2 L_P + lambda_3 L_M`` with reported best (4, 1, 1). Neither the
paper body nor code was available (chapter 5 lists what was); the forms below are
**our reconstruction** from secondary summaries and the code MLH appears to reuse:

* :func:`center_softmax_bce_loss` -- L_C: probabilities ``P = softmax_c(sqrt(K) cos(u, h_c))``
  over the class centers, then binary cross-entropy of P against the multi-hot labels,
  averaged over items and classes. This is ``cos_eps_loss`` of MDS's released code
  (Wangld5/Center-Hashing ``loss/ourLoss.py``), which the summaries describe; plus the
  squared quantization term (MDS: weight 1e-4).
* L_P: the DPSH pairwise likelihood, :func:`hashnb.losses.pairwise.dpsh_loss` (our choice;
  the summaries cut off at "a pairwise likelihood of inner products").
* :func:`mutual_loss` -- L_M: ``mean_i (1 - cos(u^C_i, u^P_i))``, the "cosine-based"
  alignment of the two branches' relaxed codes of the same image. ``stop_grad=True``
  detaches the pairwise side, so only the center branch moves (weak teaches strong);
  ``False`` is symmetric.

Stability: log(P) and log(1 - P) are taken from log-softmax and
``log1p(-exp(log P))``-free forms (``logsumexp`` over the other classes), so a confident
softmax never produces log(0).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from hashnb.losses.central import center_cosines, quantization_loss
from hashnb.losses.pairwise import dpsh_loss

__all__ = ["center_softmax_bce_loss", "mutual_loss", "mlh_loss"]


def _log1m_softmax(logits: torch.Tensor) -> torch.Tensor:
    """log(1 - softmax(logits)) per entry, computed as logsumexp over the other entries
    minus logsumexp over all (exact, no log(0) when one class takes all the mass)."""
    n, c = logits.shape
    if c == 1:
        return torch.full_like(logits, -math.inf)
    others = logits.unsqueeze(1).expand(n, c, c).masked_fill(
        torch.eye(c, dtype=torch.bool, device=logits.device), -math.inf)
    return torch.logsumexp(others, dim=2) - torch.logsumexp(logits, dim=1, keepdim=True)


def center_softmax_bce_loss(u: torch.Tensor, y: torch.Tensor, centers: torch.Tensor, *,
                            scale: float | None = None, quant_weight: float = 1e-4):
    """MLH's center-branch loss (MDS's ``cos_eps_loss``) plus quantization.

    ::

        P_jc   = softmax_c( s * cos(u_j, h_c) ),   s = sqrt(K) by default
        center = -1/(n C) sum_jc [ y_jc log P_jc + (1 - y_jc) log(1 - P_jc) ]
        loss   = center + quant_weight * mean((|u| - 1)^2)

    Parameters
    ----------
    u : (n, K) float relaxed codes (tanh outputs).
    y : (n, C) float multi-hot labels.
    centers : (C, K) float +-1 class centers.
    scale : s; default sqrt(K) (MDS code, MLH summaries).
    quant_weight : 1e-4 (MDS's lambda, "in paper ... chose 0.0001").

    Returns
    -------
    loss : scalar tensor; logs : dict of floats "center", "quant", "p_true" (mean
    probability of the true classes).
    """
    u = u.float()
    s = math.sqrt(u.shape[1]) if scale is None else float(scale)
    logits = s * center_cosines(u, y, centers)
    logp = torch.log_softmax(logits, dim=1)
    log1mp = _log1m_softmax(logits)
    y = y.float()
    center = -(y * logp + (1 - y) * log1mp).mean()
    quant = quantization_loss(u)
    loss = center + quant_weight * quant
    p_true = (logp.exp() * y).sum() / y.sum().clamp_min(1)
    return loss, {"center": float(center.detach()), "quant_c": float(quant.detach()),
                  "p_true": float(p_true.detach())}


def mutual_loss(u_center: torch.Tensor, u_pair: torch.Tensor, *, stop_grad: bool = False):
    """Cosine alignment of the two branches' codes of the same items.

    ``mean_i (1 - cos(u_center_i, u_pair_i))``, in [0, 2]. ``stop_grad=True`` detaches
    ``u_pair`` (gradient only into the center branch: weak-to-strong); ``False`` moves both.

    Returns
    -------
    loss : scalar tensor; logs : dict with "mutual" and "agree" (fraction of equal bits of
    the two branches' signs).
    """
    if u_center.shape != u_pair.shape:
        raise ValueError(f"the two branches' codes must have the same shape, got "
                         f"{tuple(u_center.shape)} and {tuple(u_pair.shape)}")
    other = u_pair.detach() if stop_grad else u_pair
    loss = (1 - F.cosine_similarity(u_center.float(), other.float(), dim=1, eps=1e-8)).mean()
    agree = ((u_center.detach() >= 0) == (u_pair.detach() >= 0)).float().mean()
    return loss, {"mutual": float(loss.detach()), "agree": float(agree)}


def mlh_loss(u_center: torch.Tensor | None, u_pair: torch.Tensor | None, y: torch.Tensor,
             centers: torch.Tensor | None, *, lambdas=(4.0, 1.0, 1.0), quant_weight: float = 1e-4,
             eta: float = 10.0, n_train: int | None = None, stop_grad: bool = False,
             scale: float | None = None):
    """The MLH total ``l1 L_C + l2 L_P + l3 L_M``; a branch given as None is left out
    (with it the mutual term), so one function covers "center alone" and "pairwise alone".

    Parameters
    ----------
    u_center, u_pair : (n, K) relaxed codes of the two branches, or None.
    y : (n, C) multi-hot labels; centers : (C, K) +-1 (needed with ``u_center``).
    lambdas : (lambda_1, lambda_2, lambda_3), default (4, 1, 1) (MLH, secondary source).
    quant_weight : center-branch quantization (:func:`center_softmax_bce_loss`).
    eta, n_train : DPSH quantization weight and training-set size (:func:`dpsh_loss`).
    stop_grad, scale : see :func:`mutual_loss`, :func:`center_softmax_bce_loss`.

    Returns
    -------
    loss : scalar tensor; logs : dict of floats (each branch's terms, "L_C", "L_P", "L_M").
    """
    if u_center is None and u_pair is None:
        raise ValueError("mlh_loss needs at least one branch's codes")
    l1, l2, l3 = (float(v) for v in lambdas)
    ref = u_center if u_center is not None else u_pair
    total = ref.new_zeros(())
    logs: dict = {}
    if u_center is not None:
        if centers is None:
            raise ValueError("the center branch needs centers (C, K)")
        lc, lg = center_softmax_bce_loss(u_center, y, centers, scale=scale,
                                         quant_weight=quant_weight)
        total = total + l1 * lc
        logs.update(lg, L_C=float(lc.detach()))
    if u_pair is not None:
        lp, lg = dpsh_loss(u_pair, y, eta=eta, n_train=n_train)
        total = total + l2 * lp
        logs.update(lg, L_P=float(lp.detach()))
    if u_center is not None and u_pair is not None and l3 != 0:
        lm, lg = mutual_loss(u_center, u_pair, stop_grad=stop_grad)
        total = total + l3 * lm
        logs.update(lg, L_M=float(lm.detach()))
    return total, logs
