"""Hash centers: fixed target codes, one per class, for center-based hashing.

* :func:`hadamard_centers` -- the construction of CSQ (Yuan et al., "Central Similarity
  Quantization for Efficient Image and Video Retrieval", CVPR 2020, arXiv 1908.00347):
  rows of the Sylvester Hadamard matrix H_K, or of [H_K; -H_K] when K < C <= 2K. Any two
  distinct rows of H_K are exactly K/2 apart; a row and its negation are K apart.
* :func:`balanced_random_centers` -- CSQ's fallback: random codes with exactly K/2 entries
  equal to -1, redrawn (rejection sampling) until the minimum and mean pairwise Hamming
  distances reach the requested bounds.
* :func:`csq_centers` -- Hadamard when it fits, balanced random otherwise (CSQ's rule).
* :func:`multilabel_targets` -- CSQ's multi-label centroid: bitwise majority vote of the
  centers of all positive labels; ties filled from one random +-1 vector drawn once.
* :func:`center_report` -- min / mean pairwise distance of a codebook.

All centers are float32 arrays in {-1, +1} of shape (C, K).
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "hadamard_matrix", "hadamard_centers", "balanced_random_centers", "csq_centers",
    "multilabel_targets", "pairwise_hamming", "center_report",
]


def _is_pow2(n: int) -> bool:
    return n >= 1 and (n & (n - 1)) == 0


def hadamard_matrix(n: int) -> np.ndarray:
    """Sylvester Hadamard matrix of order ``n`` (a power of 2), float32 in {-1, +1}."""
    if not _is_pow2(n):
        raise ValueError(f"Sylvester Hadamard matrices exist for powers of 2 only, got {n}")
    h = np.ones((1, 1), dtype=np.float32)
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h


def hadamard_centers(num_classes: int, bits: int) -> np.ndarray:
    """CSQ's Hadamard centers: the first C rows of H_K (C <= K) or of [H_K; -H_K] (C <= 2K).

    Returns
    -------
    centers : float32 (C, K) in {-1, +1}

    Raises
    ------
    ValueError
        if ``bits`` is not a power of 2 or ``num_classes > 2 * bits``; use
        :func:`balanced_random_centers` (or :func:`csq_centers`, which falls back to it).
    """
    if num_classes < 1:
        raise ValueError("num_classes must be >= 1")
    if not _is_pow2(bits):
        raise ValueError(f"the Hadamard construction needs a power-of-2 code length, got "
                         f"{bits} bits; use balanced_random_centers instead")
    if num_classes > 2 * bits:
        raise ValueError(f"the Hadamard construction gives at most 2K = {2 * bits} centers for "
                         f"{bits} bits, but {num_classes} classes were requested; use "
                         "balanced_random_centers or more bits")
    h = hadamard_matrix(bits)
    if num_classes > bits:
        h = np.concatenate([h, -h], axis=0)
    return h[:num_classes].copy()


def pairwise_hamming(codes: np.ndarray) -> np.ndarray:
    """All-pairs Hamming distances of +-1 codes (n, K) -> int64 (n, n)."""
    codes = np.asarray(codes, dtype=np.float64)
    k = codes.shape[1]
    return np.rint((k - codes @ codes.T) / 2).astype(np.int64)


def _offdiag(d: np.ndarray) -> np.ndarray:
    return d[~np.eye(len(d), dtype=bool)]


def balanced_random_centers(num_classes: int, bits: int, *, seed: int = 0,
                            min_dist: float | None = None, mean_dist: float | None = None,
                            max_tries: int = 1000) -> np.ndarray:
    """Random balanced centers (exactly floor(K/2) entries -1 each) by rejection sampling.

    Parameters
    ----------
    min_dist : default ``K/4`` (DeepHash-pytorch's bound; CSQ used 20 of 64 bits).
        All C centers are redrawn until every pair is at least this far apart.
    mean_dist : default ``K/2 - 1``; the mean pairwise distance must reach it.
    max_tries : redraws before giving up with a ``ValueError`` that reports the best
        minimum distance reached, so the caller can lower ``min_dist`` or add bits.

    Returns
    -------
    centers : float32 (C, K) in {-1, +1}; the same for the same seed.
    """
    if num_classes < 1 or bits < 1:
        raise ValueError("num_classes and bits must be >= 1")
    min_dist = bits / 4 if min_dist is None else min_dist
    mean_dist = bits / 2 - 1 if mean_dist is None else mean_dist
    if num_classes > 1 and num_classes > 2 ** bits:
        raise ValueError(f"{bits} bits hold only {2 ** bits} distinct codes, fewer than "
                         f"{num_classes} classes")
    from math import comb

    n_neg = bits // 2
    if num_classes > comb(bits, n_neg):
        raise ValueError(f"only {comb(bits, n_neg)} balanced {bits}-bit codes exist, fewer than "
                         f"{num_classes} classes; use more bits")
    rng = np.random.default_rng(seed)
    best = -1
    for _ in range(max_tries):
        c = np.ones((num_classes, bits), dtype=np.float32)
        for i in range(num_classes):
            c[i, rng.permutation(bits)[:n_neg]] = -1
        if num_classes == 1:
            return c
        d = _offdiag(pairwise_hamming(c))
        best = max(best, int(d.min()))
        if d.min() >= min_dist and d.mean() >= mean_dist:
            return c
    raise ValueError(f"could not draw {num_classes} balanced {bits}-bit centers with min distance "
                     f">= {min_dist} and mean >= {mean_dist} in {max_tries} tries (best min "
                     f"distance {best}); lower min_dist, raise max_tries or use more bits")


def csq_centers(num_classes: int, bits: int, *, seed: int = 0) -> np.ndarray:
    """CSQ's rule: Hadamard centers when K is a power of 2 and C <= 2K, else balanced random.

    For the random fallback the bound is relaxed step by step (K/4, then lower) only if
    the default cannot be met; :func:`center_report` tells what was reached.
    """
    if _is_pow2(bits) and num_classes <= 2 * bits:
        return hadamard_centers(num_classes, bits)
    for frac in (4, 6, 8, 16):
        try:
            return balanced_random_centers(num_classes, bits, seed=seed, min_dist=bits / frac,
                                           mean_dist=0, max_tries=200)
        except ValueError:
            continue
    return balanced_random_centers(num_classes, bits, seed=seed, min_dist=1, mean_dist=0)


def multilabel_targets(labels: np.ndarray, centers: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Per-item target codes: the class center (single label) or CSQ's majority vote.

    Parameters
    ----------
    labels : (n, C) multi-hot; an item with no label raises ``ValueError``.
    centers : (C, K) +-1

    Returns
    -------
    targets : float32 (n, K) in {-1, +1}. Bits where the vote ties are taken from one
    random +-1 vector drawn once from ``seed`` (CSQ's convention).
    """
    labels = np.asarray(labels, dtype=np.float32)
    if labels.ndim != 2 or labels.shape[1] != centers.shape[0]:
        raise ValueError(f"labels must be (n, {centers.shape[0]}) multi-hot, got {labels.shape}")
    if (labels.sum(1) == 0).any():
        raise ValueError("some items have no label; drop them before building center targets")
    votes = labels @ centers
    fill = np.random.default_rng(seed).choice(np.array([-1.0, 1.0], dtype=np.float32),
                                              size=centers.shape[1])
    return np.where(votes > 0, 1.0, np.where(votes < 0, -1.0, fill)).astype(np.float32)


def center_report(centers: np.ndarray) -> dict:
    """Quality of a codebook: C, K, min / mean / max pairwise Hamming distance."""
    centers = np.asarray(centers)
    c, k = centers.shape
    if c < 2:
        return {"classes": c, "bits": k, "min": None, "mean": None, "max": None}
    d = _offdiag(pairwise_hamming(centers))
    return {"classes": c, "bits": k, "min": int(d.min()), "mean": float(d.mean()),
            "max": int(d.max())}
