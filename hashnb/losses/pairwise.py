"""Pairwise likelihood losses: DPSH and HashNet.

DPSH -- Li, Wang, Kang, "Feature Learning based Deep Supervised Hashing with Pairwise
Labels", IJCAI 2016 (arXiv 1511.03855). The similarity S_ij = 1[y_i . y_j > 0] is modelled
by a logistic likelihood of theta_ij = 1/2 u_i^T u_j; the negative log-likelihood of one
pair is ``log(1 + exp(theta)) - s * theta`` and a quantization term eta * ||u_i - b_i||^2
with b_i = sign(u_i) pulls the relaxed codes to the vertices. The official PyTorch port
(jiangqy/DPSH-pytorch, ``DPSH_CIFAR_10.py``) sums the pairs over *mini-batch x the whole
training set* through a memory bank U of the latest outputs, includes each item's pair with
itself (U is updated with the batch before the loss), and divides both terms by
(n_train * batch).

HashNet -- Cao, Long, Wang, Yu, "HashNet: Deep Learning to Hash by Continuation",
ICCV 2017 (arXiv 1702.00758). A weighted pairwise cross-entropy on alpha-scaled inner
products of u = tanh(beta z); the weights balance similar and dissimilar pairs (the paper's
w_ij = |S|/|S_1| or |S|/|S_0|). The continuation of beta lives in the method
(:class:`hashnb.methods.pairwise.HashNet`).

Stability: log(1 + exp(t)) is always ``softplus(t)`` (= max(t, 0) + log1p(exp(-|t|))),
never formed from exp(t), so |theta| ~ 1e3 gives the exact asymptote rather than inf/NaN.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from hashnb.utils import binarize

__all__ = ["dpsh_loss", "hashnet_loss", "hashnet_pair_weights", "pair_similarity"]


def pair_similarity(y: torch.Tensor, y_other: torch.Tensor) -> torch.Tensor:
    """S (n, m) float {0, 1}: 1 where the two items share at least one label.

    ``y`` (n, C) and ``y_other`` (m, C) are multi-hot label matrices.
    """
    if y.dim() != 2 or y_other.dim() != 2 or y.shape[1] != y_other.shape[1]:
        raise ValueError(f"labels must be multi-hot (n, C) and (m, C) with the same C, got "
                         f"{tuple(y.shape)} and {tuple(y_other.shape)}; convert class ids with "
                         "hashnb.utils.to_multihot")
    return ((y.float() @ y_other.float().T) > 0).float()


def _other_side(u, y, u_bank, y_bank):
    if (u_bank is None) != (y_bank is None):
        raise ValueError("give both u_bank and y_bank (the bank's codes and labels), or neither")
    if u.dim() != 2 or y.dim() != 2 or len(u) != len(y):
        raise ValueError(f"u must be (n, K) and y (n, C) with the same n, got {tuple(u.shape)} "
                         f"and {tuple(y.shape)}")
    if u_bank is None:
        return u, y
    if u_bank.dim() != 2 or u_bank.shape[1] != u.shape[1] or len(u_bank) != len(y_bank):
        raise ValueError(f"u_bank must be (m, {u.shape[1]}) with y_bank (m, C), got "
                         f"{tuple(u_bank.shape)} and {tuple(y_bank.shape)}")
    return u_bank.to(u.dtype), y_bank


def dpsh_loss(u: torch.Tensor, y: torch.Tensor, *, u_bank: torch.Tensor | None = None,
              y_bank: torch.Tensor | None = None, eta: float = 10.0,
              n_train: int | None = None):
    """DPSH negative log-likelihood of the pairwise labels plus quantization.

    With V = ``u_bank`` (or ``u`` itself when no bank is given), M = len(V), n = len(u)
    and N = ``n_train`` (default M)::

        theta_ij = 1/2 u_i^T v_j
        pair     = 1/(n M) sum_ij [ softplus(theta_ij) - S_ij theta_ij ]
        quant    = 1/(n N) sum_i ||u_i - sign(u_i)||^2
        loss     = pair + eta * quant

    Normalisation: the paper's objective over a training set of N items (N^2 pairs, N
    quantization terms) divided by N^2, estimated on the n x M pairs at hand. With a bank of
    the whole training set (M = N) this is exactly the official port (both terms divided by
    n_train * batch). Within a batch, pass ``n_train`` = N so that the quantization keeps its
    paper weight eta / N per item; leaving it at M = n would make it N / n times stronger
    (x35 for 4,500 items in batches of 128), which freezes the random initial signs.

    Pairs (i, i) are included: within a batch the diagonal of u u^T, with a bank the row
    of item i that the caller has just written (the official code updates U before the
    loss). So the batch-only loss equals the bank loss when the bank holds exactly the
    batch. The bank side carries no gradient when it is a detached buffer (as in the
    official code); within a batch the gradient flows through both sides of each pair.

    Parameters
    ----------
    u : (n, K) float tensor, relaxed codes (DPSH: the linear hash-layer output).
    y : (n, C) float multi-hot labels.
    u_bank, y_bank : optional (M, K) codes and (M, C) labels forming the second side of the
        pairs (the memory bank of the training set); default the batch itself.
    eta : quantization weight. Default 10: the official port's CIFAR-10 demo
        (``DPSH_CIFAR_10_demo.py``, ``lamda = 10``; its ``__main__`` uses 50 for NUS-WIDE).
    n_train : N, the number of training items the objective is over; default M.

    Returns
    -------
    loss : scalar tensor; logs : dict of floats "pair", "quant", "theta_abs" (mean |theta|).
    """
    u = u.float()
    v, yv = _other_side(u, y, u_bank, y_bank)
    s = pair_similarity(y, yv)
    theta = 0.5 * (u @ v.float().T)                            # (n, M)
    n_pairs = theta.numel()
    pair = (F.softplus(theta) - s * theta).sum() / n_pairs
    n_items = len(v) if n_train is None else int(n_train)
    if n_items < 1:
        raise ValueError(f"n_train must be >= 1, got {n_train}")
    quant = (u - binarize(u.detach())).pow(2).sum() / (len(u) * n_items)
    loss = pair + eta * quant
    return loss, {"pair": float(pair.detach()), "quant": float(quant.detach()),
                  "theta_abs": float(theta.detach().abs().mean())}


def hashnet_pair_weights(s: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """HashNet's balancing weights (n, m): |S|/|S_1| on similar pairs, |S|/|S_0| on dissimilar.

    ``s`` is the (n, m) {0, 1} similarity, ``mask`` (n, m) bool marks the pairs that count
    (|S| = mask.sum(); pairs outside it get weight 0). Each of the two groups then sums to
    |S| (when not empty), so the similar and the dissimilar pairs weigh the same in total,
    whatever their ratio in the batch. An empty group gets no weight.
    """
    mask = torch.ones_like(s, dtype=torch.bool) if mask is None else mask.bool()
    pos = (s > 0) & mask
    neg = (s <= 0) & mask
    n = mask.sum().to(s.dtype)
    n1 = pos.sum().to(s.dtype)
    n0 = neg.sum().to(s.dtype)
    w = torch.zeros_like(s)
    w = torch.where(pos, n / n1.clamp_min(1), w)
    w = torch.where(neg, n / n0.clamp_min(1), w)
    return w


def hashnet_loss(u: torch.Tensor, y: torch.Tensor, *, alpha: float | None = None,
                 u_bank: torch.Tensor | None = None, y_bank: torch.Tensor | None = None):
    """HashNet's weighted pairwise cross-entropy (paper formula).

    With V = ``u_bank`` (or ``u``), a_ij = alpha u_i^T v_j and the weights of
    :func:`hashnet_pair_weights`::

        loss = 1/|S| sum_{(i,j) in S} w_ij [ softplus(a_ij) - S_ij a_ij ]
             = mean over similar pairs + mean over dissimilar pairs

    where S is the set of pairs used: within a batch all i != j (the released code pairs
    two independently drawn batches, so self-pairs occur only by chance; counting the n
    diagonal pairs would inflate the similar group: a batch of 128 over 100 classes has
    ~163 genuine similar pairs next to the 128 diagonal ones); with a bank all n x M pairs
    (the caller decides what the bank holds). Multi-label data uses the same 0/1
    similarity; the paper's extra weight for graded multi-label similarity is not included.

    Differences from the released code (thuml/HashNet ``pytorch/src/loss.py``), kept out on
    purpose: (1) in the version at commit 48652bf the similarity term is S_ij u_i^T v_j
    *without* alpha (only the exp term is scaled: log(1 + exp(alpha u^T v)) - S u^T v); the
    later revision (9d87b6f) scales both, as here. (2) It weights similar pairs by a fixed
    ``class_num`` (100 ImageNet, 5 NUS-WIDE, 1 COCO) instead of |S|/|S_1|, and (3) replaces
    the log-term by the inner product above 15 ("l_threshold"); softplus makes that
    unnecessary here.

    Parameters
    ----------
    u : (n, K) float tensor in [-1, 1], relaxed codes tanh(beta z).
    y : (n, C) float multi-hot labels.
    alpha : scale of the inner product; default 10 / K (released code's ``sigmoid_param``).
    u_bank, y_bank : optional (M, K) and (M, C) second side of the pairs.

    Returns
    -------
    loss : scalar tensor; logs : dict of floats "similar" and "dissimilar" (unweighted mean
    loss of each group) and "frac_similar" (|S_1| / |S|).
    """
    u = u.float()
    if alpha is None:
        alpha = 10.0 / u.shape[1]
    v, yv = _other_side(u, y, u_bank, y_bank)
    s = pair_similarity(y, yv)
    if u_bank is None:
        mask = ~torch.eye(len(u), dtype=torch.bool, device=u.device)
    else:
        mask = torch.ones_like(s, dtype=torch.bool)
    if not bool(mask.any()):
        raise ValueError("hashnet_loss needs at least one pair: a batch of >= 2 items or a bank")
    a = alpha * (u @ v.float().T)
    per_pair = F.softplus(a) - s * a
    w = hashnet_pair_weights(s, mask)
    loss = (w * per_pair).sum() / mask.sum()
    pos, neg = (s > 0) & mask, (s <= 0) & mask
    pl = per_pair.detach()
    return loss, {"similar": float(pl[pos].mean()) if pos.any() else 0.0,
                  "dissimilar": float(pl[neg].mean()) if neg.any() else 0.0,
                  "frac_similar": float(pos.sum()) / float(mask.sum())}
