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
* :func:`bernoulli_centers` -- i.i.d. fair +-1 bits, OrthoHash's default codebook "B"
  (Hoe et al., "One Loss for All: Deep Hashing with a Single Cosine Similarity based
  Learning Objective", NeurIPS 2021, arXiv 2109.14449; ``--codebook-method B``).
* :func:`max_distance_centers` -- a greedy max-min-distance (farthest-point) codebook, in
  the spirit of OrthoHash's "O"/MaxHD targets (their code uses threshold rejection
  sampling; the farthest-point form here is ours): start from a random code and add, one
  at a time, the candidate whose minimum distance to the chosen codes is largest. With all
  2^K codes as candidates (K <= 16) it provably reaches the Gilbert-Varshamov distance.
* :func:`make_centers` -- one dispatcher for "hadamard", "random" (balanced), "bernoulli",
  "max-distance" and "csq".
* Bounds on the best achievable minimum distance d of C codewords of K bits:
  :func:`gilbert_varshamov_distance` (a code with distance d is guaranteed to exist),
  :func:`hamming_bound_distance` (sphere packing) and :func:`plotkin_distance` (averaging
  argument; also bounds the *mean* pairwise distance), with
  :func:`hamming_ball_volume` V(K, r).
* :func:`center_report` -- min / mean pairwise distance of a codebook and the bounds.

All centers are float32 arrays in {-1, +1} of shape (C, K).
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "hadamard_matrix", "hadamard_centers", "balanced_random_centers", "csq_centers",
    "multilabel_targets", "pairwise_hamming", "center_report", "bernoulli_centers",
    "max_distance_centers", "make_centers", "center_kinds", "hamming_ball_volume",
    "gilbert_varshamov_distance", "hamming_bound_distance", "plotkin_distance",
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
    """Quality of a codebook and what coding theory allows for its size.

    Returns
    -------
    dict with
        ``classes``, ``bits`` : C, K;
        ``min``, ``mean``, ``max`` : pairwise Hamming distances (None when C < 2);
        ``gv_bound`` : :func:`gilbert_varshamov_distance` -- a minimum distance some code of
        this size is guaranteed to reach (a good construction should match or beat it);
        ``hamming_bound``, ``plotkin_bound`` : upper bounds on any code's minimum distance
        (:func:`hamming_bound_distance`, :func:`plotkin_distance`; the Plotkin value also
        bounds the mean). The bounds are None when C > 2^K (no such code exists).
    """
    centers = np.asarray(centers)
    if centers.ndim != 2:
        raise ValueError(f"centers must be a (C, K) array, got shape {centers.shape}")
    c, k = centers.shape
    rep: dict = {"classes": c, "bits": k, "min": None, "mean": None, "max": None}
    if c >= 2:
        d = _offdiag(pairwise_hamming(centers))
        rep.update(min=int(d.min()), mean=float(d.mean()), max=int(d.max()))
    ok = c >= 1 and k >= 1 and c <= 2 ** k
    rep["gv_bound"] = gilbert_varshamov_distance(c, k) if ok else None
    rep["hamming_bound"] = hamming_bound_distance(c, k) if ok else None
    rep["plotkin_bound"] = plotkin_distance(c, k) if ok else None
    return rep


# ---------------------------------------------------------------------------------------
# coding-theory bounds
# ---------------------------------------------------------------------------------------
def hamming_ball_volume(bits: int, radius: int) -> int:
    """V(K, r) = sum_{i=0..r} binom(K, i): the number of K-bit codes within distance r of
    a given code (exact Python int; r < 0 gives 0, r >= K gives 2^K)."""
    from math import comb

    if bits < 0:
        raise ValueError(f"bits must be >= 0, got {bits}")
    return sum(comb(bits, i) for i in range(0, min(int(radius), bits) + 1))


def _check_size(num_classes: int, bits: int) -> None:
    if int(num_classes) < 1 or int(bits) < 1:
        raise ValueError(f"num_classes and bits must be >= 1, got {num_classes} and {bits}")
    if num_classes > 2 ** bits:
        raise ValueError(f"{bits} bits hold only {2 ** bits} distinct codes, fewer than "
                         f"{num_classes} classes; use at least "
                         f"{int(np.ceil(np.log2(num_classes)))} bits")


def gilbert_varshamov_distance(num_classes: int, bits: int) -> int:
    """Largest d in [1, K] with C * V(K, d - 1) <= 2^K.

    The Gilbert-Varshamov argument: while fewer than 2^K / V(K, d - 1) codes are chosen,
    their radius-(d - 1) balls cannot cover the cube, so another code at distance >= d from
    all of them exists. Hence C codes with minimum distance d exist (and greedy choice finds
    them). For C = 1 the answer is K by convention.

    Raises ``ValueError`` when C > 2^K.
    """
    _check_size(num_classes, bits)
    if num_classes == 1:
        return int(bits)
    total = 2 ** bits
    d = 1
    while d < bits and num_classes * hamming_ball_volume(bits, d) <= total:
        d += 1
    return d


def hamming_bound_distance(num_classes: int, bits: int) -> int:
    """Sphere-packing (Hamming) upper bound: largest d in [1, K] with
    C * V(K, floor((d - 1) / 2)) <= 2^K.

    Balls of radius floor((d - 1) / 2) around the codewords of a distance-d code are
    disjoint, so no C-word code of K bits has a larger minimum distance. K for C = 1.
    """
    _check_size(num_classes, bits)
    if num_classes == 1:
        return int(bits)
    total = 2 ** bits
    d = 1
    while d < bits and num_classes * hamming_ball_volume(bits, d // 2) <= total:
        d += 1  # d + 1 is allowed: floor(((d + 1) - 1) / 2) = d // 2
    return d


def plotkin_distance(num_classes: int, bits: int) -> int:
    """Plotkin (averaging) upper bound on the minimum -- and the mean -- pairwise distance.

    In each bit, at most floor(C/2) * ceil(C/2) of the binom(C, 2) pairs differ, so
    min <= mean <= K * floor(C/2) * ceil(C/2) / binom(C, 2); returns the floor of that
    (K for C = 1). Much tighter than the Hamming bound when C is small relative to 2^K,
    e.g. 8 for 10 classes at 16 bits (which Hadamard centers reach).
    """
    _check_size(num_classes, bits)
    c = int(num_classes)
    if c == 1:
        return int(bits)
    return int(bits) * (c // 2) * ((c + 1) // 2) // (c * (c - 1) // 2)


# ---------------------------------------------------------------------------------------
# more constructions
# ---------------------------------------------------------------------------------------
def bernoulli_centers(num_classes: int, bits: int, *, seed: int = 0,
                      distinct: bool = True) -> np.ndarray:
    """OrthoHash's default codebook "B": every bit an independent fair +-1 coin.

    Expected pairwise distance K/2, no balance or distance constraint (Hoe et al. 2021,
    ``--codebook-method B``). ``distinct=True`` (ours) redraws the rare rows equal to an
    earlier row, so no two classes share a target; ``False`` is the plain i.i.d. draw.

    Returns
    -------
    centers : float32 (C, K) in {-1, +1}; the same for the same seed.
    """
    _check_size(num_classes, bits)
    rng = np.random.default_rng(seed)
    c = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(num_classes, bits))
    if distinct:
        seen: set = set()
        for i in range(num_classes):
            while c[i].tobytes() in seen:
                c[i] = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=bits)
            seen.add(c[i].tobytes())
    return c


def _all_codes(bits: int) -> np.ndarray:
    """All 2^K codes as float32 +-1 rows; row j has bit i = +1 iff bit i of j is set."""
    j = np.arange(2 ** bits, dtype=np.int64)[:, None]
    return np.where((j >> np.arange(bits)) & 1, 1.0, -1.0).astype(np.float32)


_POP8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _popcount_rows(x: np.ndarray) -> np.ndarray:
    """Number of set bits per row of a uint8 array (n, B) -> int64 (n,)."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(x).sum(1, dtype=np.int64)
    return _POP8[x].sum(1, dtype=np.int64)


def max_distance_centers(num_classes: int, bits: int, *, seed: int = 0,
                         n_candidates: int | None = None) -> np.ndarray:
    """Greedy max-min-distance (farthest-point) codebook.

    Start from a random candidate; then repeatedly add the candidate whose minimum Hamming
    distance to the codes chosen so far is largest (ties broken at random). Candidates are
    all 2^K codes when K <= 16 and ``n_candidates`` is None -- then the result provably
    reaches :func:`gilbert_varshamov_distance` -- otherwise ``n_candidates`` (default
    20,000) i.i.d. random codes drawn from ``seed``.

    OrthoHash's "O" (MaxHD) targets pursue the same goal by threshold rejection sampling
    (accept a random code if it is >= 0.61 K from every accepted one, lowering the
    threshold after 10,000 failures); this deterministic-given-seed greedy form is ours.

    Returns
    -------
    centers : float32 (C, K) in {-1, +1}, all distinct; the same for the same seed.

    Raises
    ------
    ValueError
        if C > 2^K, or if the candidate pool is smaller than C.
    """
    _check_size(num_classes, bits)
    rng = np.random.default_rng(seed)
    if n_candidates is None and bits <= 16:
        cand = _all_codes(bits)[rng.permutation(2 ** bits)]
    else:
        n = 20000 if n_candidates is None else int(n_candidates)
        if n < num_classes:
            raise ValueError(f"n_candidates={n} is smaller than num_classes={num_classes}; "
                             "raise n_candidates")
        cand = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(n, bits))
    packed = np.packbits(cand > 0, axis=1)  # Hamming distance = popcount of XOR

    def dist_to(j: int) -> np.ndarray:
        return _popcount_rows(packed ^ packed[j])

    chosen = [0]
    mind = dist_to(0)  # min distance of every candidate to the chosen set (chosen ones: 0)
    for _ in range(1, num_classes):
        j = int(np.argmax(mind))
        if mind[j] == 0:
            raise ValueError(f"only {len(chosen)} distinct codes among the candidates, fewer "
                             f"than {num_classes} classes; raise n_candidates")
        chosen.append(j)
        np.minimum(mind, dist_to(j), out=mind)
    return cand[chosen].astype(np.float32)


_KINDS = ("hadamard", "random", "bernoulli", "max-distance", "csq")
_ALIASES = {"balanced": "random", "balanced-random": "random", "b": "bernoulli",
            "maxhd": "max-distance", "max-hd": "max-distance", "greedy": "max-distance"}


def center_kinds() -> list[str]:
    """Names accepted by :func:`make_centers`."""
    return list(_KINDS)


def make_centers(kind: str, num_classes: int, bits: int, *, seed: int = 0, **kwargs) -> np.ndarray:
    """Build a codebook by name.

    Parameters
    ----------
    kind : "hadamard" (:func:`hadamard_centers`, C <= 2K, K a power of 2), "random"
        (:func:`balanced_random_centers`), "bernoulli" (:func:`bernoulli_centers`),
        "max-distance" (:func:`max_distance_centers`) or "csq" (:func:`csq_centers`:
        Hadamard when it fits, else balanced random). Case and "_" vs "-" are ignored.
    seed : for the random kinds (ignored by "hadamard").
    kwargs : passed to the construction (e.g. ``min_dist=`` for "random",
        ``n_candidates=`` for "max-distance").

    Returns
    -------
    centers : float32 (C, K) in {-1, +1}.
    """
    if not isinstance(kind, str):
        raise ValueError(f"kind must be a string, one of {', '.join(_KINDS)}; got {kind!r}")
    k = kind.strip().lower().replace("_", "-")
    k = _ALIASES.get(k, k)
    if k not in _KINDS:
        raise ValueError(f"unknown center kind {kind!r}; choose one of {', '.join(_KINDS)}")
    _check_size(num_classes, bits)
    if k == "hadamard":
        return hadamard_centers(num_classes, bits, **kwargs)
    if k == "random":
        return balanced_random_centers(num_classes, bits, seed=seed, **kwargs)
    if k == "bernoulli":
        return bernoulli_centers(num_classes, bits, seed=seed, **kwargs)
    if k == "max-distance":
        return max_distance_centers(num_classes, bits, seed=seed, **kwargs)
    return csq_centers(num_classes, bits, seed=seed, **kwargs)


# ---------------------------------------------------------------------------------------
# CRH: a codebook of candidate codes and the one-to-one class -> code matching
# (Yin et al., "Codebook-Centric Deep Hashing", AAAI 2026, arXiv 2511.12162; used by
# hashnb.methods.crh). The paper's code was not available: see that module's docstring.
# ---------------------------------------------------------------------------------------
def crh_head_bits(bits: int, codebook_size: int) -> int:
    """CRH's head-size rule: the smallest divisor d of ``bits`` with 2^d >= ``codebook_size``.

    The K bits are split into K / d heads of d bits, each with its own sub-codebook of M
    distinct d-bit codes (so 2^d >= M is needed). Equals the paper's "smallest power of two
    d >= log2 M" whenever K is a power of two.

    Raises ``ValueError`` when no divisor fits (M > 2^K).
    """
    if not isinstance(bits, (int, np.integer)) or bits < 1:
        raise ValueError(f"bits must be a positive integer, got {bits!r}")
    if not isinstance(codebook_size, (int, np.integer)) or codebook_size < 1:
        raise ValueError(f"codebook_size must be a positive integer, got {codebook_size!r}")
    for d in range(1, int(bits) + 1):
        if bits % d == 0 and 2 ** d >= codebook_size:
            return d
    raise ValueError(f"a codebook of {codebook_size} distinct codes needs more than {bits} "
                     f"bits (2^{bits} < {codebook_size}); lower codebook_size or raise bits")


def crh_codebook(size: int, bits: int, *, seed: int = 0, n_trials: int = 100) -> np.ndarray:
    """``size`` distinct uniformly random codes of ``bits`` bits with large pairwise distances.

    Each trial samples ``size`` codes uniformly *without replacement* from {-1, +1}^bits;
    the trial with the largest minimum pairwise Hamming distance (ties: largest mean) is
    kept. The best-of-``n_trials`` rule is our reconstruction of CRH's "uniform sampling
    with large Hamming distances" (the paper's exact procedure was not available).

    Returns
    -------
    codebook : float32 (size, bits) in {-1, +1}, rows distinct; the same for the same seed.
    """
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    if bits < 1 or (bits < 63 and size > 2 ** bits):
        raise ValueError(f"cannot draw {size} distinct codes of {bits} bits (2^{bits} < {size})")
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials!r}")
    rng = np.random.default_rng(seed)
    best, best_key = None, None
    for _ in range(int(n_trials)):
        if bits <= 20:
            ints = rng.choice(2 ** bits, size=size, replace=False)
            cb = ((ints[:, None] >> np.arange(bits)[None, :]) & 1).astype(np.float32) * 2 - 1
        else:  # 2^bits is huge: draw i.i.d. codes and redraw duplicates (rare)
            cb = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(size, bits))
            while len(np.unique(cb, axis=0)) < size:
                cb = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(size, bits))
        if size == 1:
            return cb.astype(np.float32)
        d = _offdiag(pairwise_hamming(cb))
        key = (d.min(), d.mean())
        if best_key is None or key > best_key:
            best, best_key = cb, key
    return best.astype(np.float32)


def match_classes_to_codes(cost: np.ndarray, *, method: str = "hungarian",
                           rng: np.random.Generator | int | None = None) -> np.ndarray:
    """One-to-one matching of C classes to M >= C candidate codes by a (C, M) cost matrix.

    ``method="hungarian"``: the exact minimum-total-cost matching
    (:func:`scipy.optimize.linear_sum_assignment`, Kuhn's Hungarian method).
    ``method="greedy"``: classes visited in a random order (``rng``), each taking its
    cheapest still-free code (ties: the lowest code index) -- CRH's cheaper alternative.

    Returns
    -------
    assignment : int64 (C,), distinct code indices in [0, M).
    """
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2 or cost.shape[0] > cost.shape[1] or cost.shape[0] < 1:
        raise ValueError(f"cost must be (C, M) with 1 <= C <= M, got shape {cost.shape}")
    if not np.isfinite(cost).all():
        raise ValueError("cost has non-finite entries")
    if method == "hungarian":
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(cost)
        out = np.empty(cost.shape[0], dtype=np.int64)
        out[rows] = cols
        return out
    if method == "greedy":
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        free = np.ones(cost.shape[1], dtype=bool)
        out = np.empty(cost.shape[0], dtype=np.int64)
        for c in rng.permutation(cost.shape[0]):
            row = np.where(free, cost[c], np.inf)
            j = int(np.argmin(row))
            out[c] = j
            free[j] = False
        return out
    raise ValueError(f"method must be 'hungarian' or 'greedy', got {method!r}")
