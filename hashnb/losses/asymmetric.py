"""Asymmetric hashing: the ADSH objective and its discrete database-code step.

ADSH (Jiang & Li, AAAI 2018, arXiv 1707.08325; official code jiangqy/ADSH-AAAI2018) learns
network codes ``U`` only for a sampled subset Omega of the database and *free* binary codes
``V`` (n, K) for the whole database (the training pool)::

    J(U, V) = sum_{i in Omega} sum_{j <= n} (u_i . v_j - K S~_ij)^2
              + gamma * sum_{i in Omega} ||v_{omega_i} - u_i||^2

``S~`` is the similarity of Omega to the pool: ``"soft"`` (the released code) gives +1 to
similar pairs and -r to dissimilar ones, r = #similar / #dissimilar in the Omega x pool
block; ``"pm1"`` (the paper's {+-1}) is the special case r = 1.

With U fixed, J is a quadratic in V; writing ``Q = -2K S~^T U - 2 gamma U_bar`` (U_bar = U
placed at Omega's rows of an (n, K) zero matrix), each bit column has the closed-form
minimiser ``V[:, k] = -sign(2 V[:, !k] U[:, !k]^T U[:, k] + Q[:, k])`` (discrete cyclic
coordinate descent, one column at a time): :func:`dcc_update`. Shapes: U (m, K) float,
V (n, K) float in {-1, +1} (zeros allowed before the first step), Y multi-hot (., C).
"""
from __future__ import annotations

import torch

from hashnb.utils import binarize

__all__ = ["similarity", "soft_ratio", "adsh_loss", "adsh_loss_factored", "pool_statistics",
           "adsh_objective", "adsh_q", "dcc_update"]

SIMILARITIES = ("soft", "pm1")


def _check_similarity(mode: str) -> None:
    if mode not in SIMILARITIES:
        raise ValueError(f"similarity must be one of {SIMILARITIES} ('soft': +1 / -r as in the "
                         f"released ADSH code; 'pm1': +1 / -1 as in the paper), got {mode!r}")


def similarity(y_a: torch.Tensor, y_b: torch.Tensor, *, r: float = 1.0) -> torch.Tensor:
    """S~ (len(y_a), len(y_b)): +1 where two items share a label, ``-r`` where they do not."""
    s = (y_a.float() @ y_b.float().T > 0).float()
    return s * (1.0 + r) - r


@torch.no_grad()
def soft_ratio(y_omega: torch.Tensor, y_pool: torch.Tensor, *, chunk: int = 8192) -> float:
    """r = #similar / #dissimilar pairs of the Omega x pool block (ADSH's ``calc_sim``)."""
    n_sim, total = 0.0, 0
    for lo in range(0, len(y_pool), chunk):
        s = (y_omega.float() @ y_pool[lo:lo + chunk].float().T > 0)
        n_sim += float(s.sum())
        total += s.numel()
    n_dis = total - n_sim
    return n_sim / n_dis if n_dis > 0 else 1.0


def adsh_loss(u: torch.Tensor, v_pool: torch.Tensor, s: torch.Tensor, v_self: torch.Tensor,
              *, gamma: float, n: int | None = None):
    """ADSH network loss of one batch, divided by ``n * batch`` like the released code.

    u : (b, K) relaxed codes of the batch (items of Omega).
    v_pool : (n, K) database codes (constants).
    s : (b, n) S~ rows of the batch.
    v_self : (b, K) the batch items' own database codes.
    Returns ``(loss, logs)`` with the two parts in ``logs``.
    """
    k = u.shape[1]
    n = len(v_pool) if n is None else n
    denom = float(n * len(u))
    square = ((u @ v_pool.T - k * s) ** 2).sum() / denom
    quant = gamma * ((v_self - u) ** 2).sum() / denom
    return square + quant, {"square": float(square.detach()), "quant": float(quant.detach())}


@torch.no_grad()
def pool_statistics(v_pool: torch.Tensor, y_pool: torch.Tensor) -> dict:
    """Sufficient statistics of fixed database codes for :func:`adsh_loss_factored`.

    ``gram = V^T V`` (K, K), ``vy = V^T Y`` (K, C), ``vsum = V^T 1`` (K,), ``count = 1^T Y``
    (C,), ``n``. Valid while V is fixed (one outer iteration).
    """
    v, y = v_pool.float(), y_pool.float()
    return {"gram": v.T @ v, "vy": v.T @ y, "vsum": v.sum(0), "count": y.sum(0), "n": len(v)}


def adsh_loss_factored(u: torch.Tensor, y: torch.Tensor, stats: dict, v_self: torch.Tensor,
                       *, gamma: float, r: float = 1.0):
    """:func:`adsh_loss` for **single-label** data without the (b, n) block.

    With one-hot labels S_ij = y_i . y_j, so for S~ = (1 + r) S - r
    ``sum_j (u.v_j - K S~_ij)^2 = u^T G u - 2K u^T((1+r) V^T Y y_i - r V^T 1) + K^2 c_i``,
    ``c_i = #sim_i + r^2 (n - #sim_i)``: the same value and gradient in O(b K (K + C))
    instead of O(b n K). ``stats`` from :func:`pool_statistics`.
    """
    k = u.shape[1]
    n = stats["n"]
    y = y.float()
    quad = ((u @ stats["gram"]) * u).sum()
    lin = (u * ((1.0 + r) * (y @ stats["vy"].T) - r * stats["vsum"])).sum()
    n_sim = y @ stats["count"]
    const = (n_sim + r * r * (n - n_sim)).sum()
    denom = float(n * len(u))
    square = (quad - 2.0 * k * lin + k * k * const) / denom
    quant = gamma * ((v_self - u) ** 2).sum() / denom
    return square + quant, {"square": float(square.detach()), "quant": float(quant.detach())}


def adsh_objective(u: torch.Tensor, v: torch.Tensor, s: torch.Tensor, omega: torch.Tensor,
                   *, gamma: float) -> float:
    """J(U, V) written out (no normalisation): the quantity :func:`dcc_update` minimises.

    u (m, K), v (n, K), s (m, n) S~ of Omega vs the pool, omega (m,) pool rows of Omega.
    """
    k = u.shape[1]
    u, v, s = u.double(), v.double(), s.double()
    return float(((u @ v.T - k * s) ** 2).sum() + gamma * ((v[omega] - u) ** 2).sum())


@torch.no_grad()
def adsh_q(u: torch.Tensor, y_omega: torch.Tensor, y_pool: torch.Tensor, omega: torch.Tensor,
           *, gamma: float, r: float = 1.0, chunk: int = 8192) -> torch.Tensor:
    """Q = -2K S~^T U - 2 gamma U_bar, (n, K), computed chunk by chunk over the pool.

    ``S~ = (1 + r) S - r`` with S = 1[y_omega . y_pool > 0], so
    ``S~^T U = (1 + r) S^T U - r 1 (1^T U)``: the (m, n) block is never held whole.
    """
    k = u.shape[1]
    u = u.float()
    st_u = torch.empty(len(y_pool), k, device=u.device)
    single = bool((y_omega.sum(1) == 1).all()) and bool((y_pool.sum(1) == 1).all())
    if single:  # one-hot labels: S = Y_omega Y_pool^T exactly
        st_u = y_pool.float() @ (y_omega.float().T @ u)
    else:
        for lo in range(0, len(y_pool), chunk):
            s = (y_pool[lo:lo + chunk].float() @ y_omega.float().T > 0).float()
            st_u[lo:lo + chunk] = s @ u
    st_u = (1.0 + r) * st_u - r * u.sum(0, keepdim=True)
    q = -2.0 * k * st_u
    q[omega] -= 2.0 * gamma * u
    return q


@torch.no_grad()
def dcc_update(v: torch.Tensor, u: torch.Tensor, q: torch.Tensor, *,
               columns=None) -> torch.Tensor:
    """One sweep of discrete cyclic coordinate descent over V's bit columns (in place).

    v (n, K) database codes, u (m, K) network codes of Omega, q from :func:`adsh_q`.
    ``columns`` restricts the sweep (default: all K in order). Each column update is the
    exact minimiser of J over that column when the other columns are binary (``sign(0)`` ->
    +1, :func:`hashnb.utils.binarize`), so J never increases once V is in {-1, +1}. (From
    ADSH's all-zero start the first sweep fills V; J is then not comparable.) Returns ``v``.
    """
    u = u.to(v.dtype)
    kk = v.shape[1]
    for k in (range(kk) if columns is None else columns):
        rest = [j for j in range(kk) if j != k]
        g = v[:, rest] @ (u[:, rest].T @ u[:, k]) if rest else torch.zeros_like(q[:, k])
        v[:, k] = -binarize(2.0 * g + q[:, k])
    return v
