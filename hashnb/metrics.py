"""Retrieval metrics for binary codes: tie-aware mAP@R, P@k, PR curves, precision within radius.

Conventions (the "HashNet convention", Cao et al., *HashNet: Deep Learning to Hash by
Continuation*, ICCV 2017, arXiv:1702.00758, used by DeepHash-pytorch, CSQ and OrthoHash):

* relevant = the query and the database item share at least one label
  (``query_labels @ db_labels.T > 0``);
* AP@R is normalised by the number of relevant items *inside the top R*; a query with none
  scores 0 (it still counts in the mean).

**Ties.** Hamming distances are integers ``0..bits``, so many database items share a
distance and the order among them decides the score (at 8 bits tie order alone moves mAP
from 0.14 to 0.33, see the book's metric chapter). Two conventions are offered:

``ties="average"`` (default)
    Tied items form one group, as scikit-learn's ``average_precision_score`` groups tied
    scores: with ``n_d`` items and ``r_d`` relevant items at distance ``d``,
    ``AP = sum_d r_d * P_d / sum_d r_d`` where ``P_d`` is the precision at the end of group
    ``d``. It equals ``sklearn.metrics.average_precision_score(rel, -dist)`` when R covers
    the database, and does not depend on database order. When R cuts a group of size
    ``n_d`` after ``m`` of its items, the group counts with the fraction ``f = m / n_d``:
    ``f * r_d`` expected relevant items, precision at R ``(rel_before + f * r_d) / R``, and
    the normaliser is ``rel_before + f * r_d``. AP then depends only on the counts
    ``n_d, r_d``, so nothing is sorted: the counts come from one pass over the
    (query, item) pairs (see below).
``ties="index"``
    Rank by (distance, database index), what DeepHash-pytorch does since it stopped shuffling
    its loaders (commit ab14068); use it only to reproduce published numbers.

Unlike DeepHash-pytorch's ``CalcTopMap(..., topk=-1)``, ``R=None`` keeps *every* database
item (theirs slices ``[0:-1]`` and drops the last one).

All inputs may be numpy arrays or torch tensors: codes float {-1, +1} of shape (n, bits),
labels multi-hot (n, C). The counts are computed on CPU by a fused numba kernel (XOR,
popcount, histogram; no distance matrix) when numba is installed, otherwise, and on CUDA
(the default ``device`` when available), with torch: one matrix product and a ``bincount``
per chunk of queries. ``HASHNB_NUMBA=0`` forces the torch path. ``ties="index"`` always
uses torch.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from hashnb.utils import as_tensor, check_codes, check_finite, default_device

try:  # optional: a fused popcount + histogram kernel, ~8x faster than the torch path on CPU
    import numba
    from numba.extending import intrinsic as _intrinsic
except ImportError:  # pragma: no cover - numba comes with umap-learn
    numba = None

__all__ = [
    "hamming_distance", "mean_average_precision", "map_at_r", "precision_at_k",
    "precision_recall_curve", "precision_within_radius", "evaluate",
]

_TIES = ("average", "index")
_EMPTY = ("zero", "skip")
# elements of one (queries x database) chunk; ~4 MB of float32, which keeps the chunk's
# intermediates near the CPU caches
_CHUNK_ELEMENTS = 1 << 20


# ---------------------------------------------------------------------------- validation
def _check_labels(y, name: str, n: int, device) -> torch.Tensor:
    t = as_tensor(y.detach() if isinstance(y, torch.Tensor) else y, device=device)
    if t.ndim != 2:
        raise ValueError(f"{name} must be 2-D multi-hot (n, C), got shape {tuple(t.shape)}; "
                         "convert class ids with hashnb.utils.to_multihot")
    if t.shape[0] != n:
        raise ValueError(f"{name} has {t.shape[0]} rows but there are {n} codes")
    check_finite(t, name)
    if (t < 0).any():
        raise ValueError(f"{name} must be non-negative (multi-hot 0/1)")
    return t


def _check_inputs(query_codes, db_codes, query_labels, db_labels, device):
    dev = default_device(device, mps=False)
    q = check_codes(query_codes, "query_codes", device=dev)
    db = check_codes(db_codes, "db_codes", device=dev)
    if q.shape[1] != db.shape[1]:
        raise ValueError(f"query_codes have {q.shape[1]} bits but db_codes have {db.shape[1]}")
    ql = _check_labels(query_labels, "query_labels", q.shape[0], dev)
    dbl = _check_labels(db_labels, "db_labels", db.shape[0], dev)
    if ql.shape[1] != dbl.shape[1]:
        raise ValueError(f"query_labels have {ql.shape[1]} classes but db_labels have "
                         f"{dbl.shape[1]}")
    return q, db, ql, dbl


def _check_R(R, n: int, name: str = "R") -> int:
    if R is None:
        return n
    if isinstance(R, bool) or not isinstance(R, (int, np.integer)):
        raise ValueError(f"{name} must be a positive integer or None (all), got {R!r}")
    if R <= 0:
        raise ValueError(f"{name} must be a positive integer or None (all), got {R}")
    return min(int(R), n)


def _check_ties(ties: str) -> None:
    if ties not in _TIES:
        raise ValueError(f"ties must be one of {_TIES}, got {ties!r}")


def _chunk(chunk_size, n_db: int) -> int:
    if chunk_size is None:
        return max(1, _CHUNK_ELEMENTS // max(n_db, 1))
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) \
            or chunk_size <= 0:
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    return int(chunk_size)


# ----------------------------------------------------------------------------- distances
def hamming_distance(a, b) -> torch.Tensor:
    """Hamming distances between two sets of ±1 codes.

    Parameters
    ----------
    a : array-like, (na, bits), values in {-1, +1}
    b : array-like, (nb, bits), values in {-1, +1}

    Returns
    -------
    torch.LongTensor, (na, nb)
        ``(bits - a @ b.T) / 2``, on the device of ``a`` when it is a tensor, else CPU.
    """
    dev = a.device if isinstance(a, torch.Tensor) else None
    ta = check_codes(a, "a", device=dev)
    tb = check_codes(b, "b", device=ta.device)
    if ta.shape[1] != tb.shape[1]:
        raise ValueError(f"a has {ta.shape[1]} bits but b has {tb.shape[1]}")
    bits = ta.shape[1]
    return ((bits - ta @ tb.T) / 2).round().long()


# ------------------------------------------------------------------ per-distance counts
def _binary(y: torch.Tensor) -> bool:
    return bool(((y == 0) | (y == 1)).all())


def _at_most_one_label(y: torch.Tensor) -> bool:
    return bool((y.sum(1) <= 1).all())


if numba is not None:
    @_intrinsic
    def _popcount(typingctx, x):
        """LLVM ``ctpop`` on a uint64 (one POPCNT instruction)."""
        sig = numba.types.uint64(numba.types.uint64)

        def codegen(context, builder, signature, args):
            return builder.ctpop(args[0])
        return sig, codegen

    @numba.njit(parallel=True, nogil=True, cache=True, boundscheck=False)
    def _hist_1w(qw, dw, qm, dm, out):  # pragma: no cover - compiled, tested via results
        """<= 64 bits and <= 64 classes: out[i, 2 * dist + rel] += 1 over the database."""
        for i in numba.prange(qw.shape[0]):
            # sizes read inside the parallel loop: hoisted outside, they cost ~1.5x here
            n = dw.shape[0]
            K = out.shape[1]
            n4 = n - n % 4
            h = np.zeros(4 * K, np.int32)  # 4 interleaved histograms: no store chains
            q = qw[i]
            m = qm[i]
            for j in range(0, n4, 4):
                h[2 * _popcount(q ^ dw[j]) + ((m & dm[j]) != 0)] += 1
                h[K + 2 * _popcount(q ^ dw[j + 1]) + ((m & dm[j + 1]) != 0)] += 1
                h[2 * K + 2 * _popcount(q ^ dw[j + 2]) + ((m & dm[j + 2]) != 0)] += 1
                h[3 * K + 2 * _popcount(q ^ dw[j + 3]) + ((m & dm[j + 3]) != 0)] += 1
            for j in range(n4, n):
                h[2 * _popcount(q ^ dw[j]) + ((m & dm[j]) != 0)] += 1
            for t in range(K):
                out[i, t] = h[t] + h[K + t] + h[2 * K + t] + h[3 * K + t]

    @numba.njit(parallel=True, nogil=True, cache=True, boundscheck=False)
    def _hist_nw(qw, dw, qm, dm, out):  # pragma: no cover - compiled, tested via results
        """Any number of 64-bit words of code (W) and of label mask (L)."""
        for i in numba.prange(qw.shape[0]):
            n, W = dw.shape
            L = dm.shape[1]
            h = np.zeros(out.shape[1], np.int64)
            for j in range(n):
                d = 0
                for w in range(W):
                    d += _popcount(qw[i, w] ^ dw[j, w])
                rel = 0
                for t in range(L):
                    if qm[i, t] & dm[j, t]:
                        rel = 1
                        break
                h[2 * d + rel] += 1
            for t in range(out.shape[1]):
                out[i, t] = h[t]

    @numba.njit(parallel=True, nogil=True, cache=True, boundscheck=False)
    def _ap_index_kernel(qw, dw, qm, dm, ncount, rcount, R, out):  # pragma: no cover
        """AP@R ranked by (distance, database index) without sorting.

        With the per-distance counts known, an item's rank is (items at smaller distances)
        + (its position among equal-distance items in index order): one pass over the
        database in index order per query gives every relevant item's rank and the number
        of relevant items ranked at or before it.
        """
        for i in numba.prange(qw.shape[0]):
            n, W = dw.shape
            L = dm.shape[1]
            K1 = ncount.shape[1]
            before = np.zeros(K1, np.int64)
            relbefore = np.zeros(K1, np.int64)
            acc = 0
            racc = 0
            for d in range(K1):
                before[d] = acc
                relbefore[d] = racc
                acc += ncount[i, d]
                racc += rcount[i, d]
            pos = np.zeros(K1, np.int64)
            rpos = np.zeros(K1, np.int64)
            total = 0.0
            hits = 0
            for j in range(n):
                d = 0
                for w in range(W):
                    d += _popcount(qw[i, w] ^ dw[j, w])
                pos[d] += 1
                rel = False
                for t in range(L):
                    if qm[i, t] & dm[j, t]:
                        rel = True
                        break
                if rel:
                    rpos[d] += 1
                    rank = before[d] + pos[d]
                    if rank <= R:
                        total += (relbefore[d] + rpos[d]) / rank
                        hits += 1
            out[i] = total / hits if hits > 0 else 0.0


def _use_numba(device: torch.device) -> bool:
    """The numba kernel runs on CPU when numba imports and ``HASHNB_NUMBA`` is not 0."""
    return (numba is not None and device.type == "cpu"
            and os.environ.get("HASHNB_NUMBA", "1").strip().lower() not in ("0", "false", "no"))


def _words(bits01: np.ndarray) -> np.ndarray:
    """(n, m) bool -> (n, ceil(m / 64)) uint64 bit masks (popcounts ignore the bit order)."""
    packed = np.packbits(bits01, axis=1)
    W = -(-packed.shape[1] // 8)
    buf = np.zeros((packed.shape[0], 8 * W), dtype=np.uint8)
    buf[:, :packed.shape[1]] = packed
    return buf.view(np.uint64)


def _count_tables_numba(q, db, ql, dbl) -> tuple[torch.Tensor, torch.Tensor]:
    # The kernel runs on as many threads as torch is allowed (the user's
    # torch.set_num_threads / OMP_NUM_THREADS), not numba's own count; numba's OpenMP layer
    # shares the process-wide thread setting with torch, so torch's count is put back after.
    torch_threads = torch.get_num_threads()
    numba.set_num_threads(max(1, min(torch_threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        return _count_tables_numba_kernel(q, db, ql, dbl)
    finally:
        if torch.get_num_threads() != torch_threads:
            torch.set_num_threads(torch_threads)


def _count_tables_numba_kernel(q, db, ql, dbl) -> tuple[torch.Tensor, torch.Tensor]:
    bits = q.shape[1]
    qw, dw = _words(q.numpy() > 0), _words(db.numpy() > 0)
    qm, dm = _words(ql.numpy() > 0), _words(dbl.numpy() > 0)
    out = np.zeros((q.shape[0], 2 * (bits + 1)), dtype=np.int64)
    if qw.shape[1] == 1 and qm.shape[1] == 1:
        _hist_1w(qw[:, 0].copy(), dw[:, 0].copy(), qm[:, 0].copy(), dm[:, 0].copy(), out)
    else:
        _hist_nw(qw, dw, qm, dm, out)
    h = torch.from_numpy(out).view(-1, bits + 1, 2).double()
    return h.sum(-1), h[..., 1].contiguous()


def _count_tables(q, db, ql, dbl, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per query and distance: items ``n[q, d]`` and relevant items ``r[q, d]``.

    On CPU with numba, one fused kernel (XOR + popcount + histogram, no distance matrix);
    otherwise the torch path below. Both are exact integer counts.
    """
    if _use_numba(q.device):
        return _count_tables_numba(q, db, ql, dbl)
    return _count_tables_torch(q, db, ql, dbl, chunk)


def _count_tables_torch(q, db, ql, dbl, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch path of :func:`_count_tables` (CPU or CUDA).

    Returns two float64 CPU tensors of shape (nq, bits + 1). The key ``2 * dist + rel`` of
    every (query, item) pair comes out of one matrix product ``[-q, ql] @ [db, dbl].T``
    (``-q.db + bits = 2 * dist``; ``ql.dbl`` is the 0/1 relevance when either side has at
    most one label per row, otherwise it is computed separately and thresholded), then one
    ``bincount`` per chunk of queries counts all keys at once. Everything is an exact
    small integer in float32 (also under TF32, whose inputs here are 0/±1).
    """
    nq, bits = q.shape
    B2 = 2 * (bits + 1)
    # ql . dbl is the 0/1 relevance itself when labels are 0/1 and one side has <= 1
    fused = (_binary(ql) and _binary(dbl)
             and (_at_most_one_label(ql) or _at_most_one_label(dbl)))
    if fused:
        qa = torch.cat([-q, ql.to(q.dtype)], 1)
        dbT = torch.cat([db, dbl.to(db.dtype)], 1).T.contiguous()
    else:
        qa = -q
        dbT = db.T.contiguous()
        dblT = dbl.T.contiguous()
    cpu = q.device.type == "cpu"
    hists = []
    for s in range(0, nq, chunk):
        c = min(chunk, nq - s)
        key = (qa[s:s + c] @ dbT).long()
        if not fused:
            key += (ql[s:s + c] @ dblT > 0)
        key += (torch.arange(c, device=q.device) * B2 + bits)[:, None]
        if cpu:  # numpy's bincount is several times faster than torch's on CPU
            h = torch.from_numpy(np.bincount(key.view(-1).numpy(), minlength=c * B2))
        else:
            h = torch.bincount(key.view(-1), minlength=c * B2).cpu()
        hists.append(h.view(c, bits + 1, 2))
    h = torch.cat(hists).double()
    return h.sum(-1), h[..., 1].contiguous()


def _take(n: torch.Tensor, R: int) -> torch.Tensor:
    """Items taken from each distance group when the top R are kept (fractional last group)."""
    before = torch.cumsum(n, 1) - n
    return (R - before).clamp(min=0).minimum(n)


def _expected_relevant(n, r, R: int) -> torch.Tensor:
    """Expected relevant items per group inside the top R (ties="average")."""
    take = _take(n, R)
    frac = torch.where(n > 0, take / n.clamp(min=1), torch.zeros_like(n))
    return frac * r, take


def _ap_from_counts(n: torch.Tensor, r: torch.Tensor, R: int) -> torch.Tensor:
    """Per-query tie-aware AP@R (float64, (nq,)) from the counts of :func:`_count_tables`."""
    eff, take = _expected_relevant(n, r, R)
    cum_eff = torch.cumsum(eff, 1)
    cum_take = torch.cumsum(take, 1)
    prec = torch.where(cum_take > 0, cum_eff / cum_take.clamp(min=1e-300),
                       torch.zeros_like(cum_eff))
    num = (eff * prec).sum(1)
    den = eff.sum(1)
    return torch.where(den > 0, num / den.clamp(min=1e-300), torch.zeros_like(den))


def _pk_from_counts(n, r, k: int) -> torch.Tensor:
    eff, _ = _expected_relevant(n, r, k)
    return eff.sum(1) / k


def _radius_from_counts(n, r, radius: int, empty: str) -> torch.Tensor:
    """Per-query precision of the items within Hamming ``radius``; NaN where none (skip)."""
    bits = n.shape[1] - 1
    rad = min(int(radius), bits)
    got = n[:, :rad + 1].sum(1)
    hit = r[:, :rad + 1].sum(1)
    fill = torch.zeros_like(got) if empty == "zero" else torch.full_like(got, float("nan"))
    return torch.where(got > 0, hit / got.clamp(min=1), fill)


# ------------------------------------------------------------------- ties="index" ranking
def _ranked_relevance(q, db, ql, dbl, R: int, chunk: int):
    """Yield (c, R) float64 relevance of the top R ranked by (distance, database index)."""
    nq, bits = q.shape
    n = db.shape[0]
    dbT = db.T.contiguous()
    dblT = dbl.T.contiguous()
    arange = torch.arange(n, device=q.device)
    for s in range(0, nq, chunk):
        dist = ((bits - q[s:s + chunk] @ dbT) / 2).round_().long()
        rel = ql[s:s + chunk] @ dblT > 0
        if R >= n:
            order = torch.sort(dist, dim=1, stable=True).indices
        else:  # partial selection on a combined key: no full sort
            order = (dist * n + arange).topk(R, dim=1, largest=False, sorted=True).indices
        yield rel.gather(1, order).double().cpu()


def _ap_index(q, db, ql, dbl, R: int, chunk: int) -> torch.Tensor:
    if _use_numba(q.device):
        n, r = _count_tables_numba(q, db, ql, dbl)
        out = np.zeros(q.shape[0], dtype=np.float64)
        _ap_index_kernel(_words(q.numpy() > 0), _words(db.numpy() > 0),
                         _words(ql.numpy() > 0), _words(dbl.numpy() > 0),
                         n.long().numpy(), r.long().numpy(), int(R), out)
        return torch.from_numpy(out)
    out = []
    for rel in _ranked_relevance(q, db, ql, dbl, R, chunk):
        pos = torch.arange(1, rel.shape[1] + 1, dtype=torch.float64)
        prec = torch.cumsum(rel, 1) / pos
        num = (prec * rel).sum(1)
        den = rel.sum(1)
        out.append(torch.where(den > 0, num / den.clamp(min=1), torch.zeros_like(den)))
    return torch.cat(out)


# -------------------------------------------------------------------------- public API
def mean_average_precision(query_codes, db_codes, query_labels, db_labels, *, R=None,
                           ties: str = "average", chunk_size=None, device=None,
                           return_per_query: bool = False):
    """Mean average precision over the top R (HashNet normalisation), tie-aware by default.

    Parameters
    ----------
    query_codes : array-like, (nq, bits), float in {-1, +1}
    db_codes : array-like, (n, bits), float in {-1, +1}
    query_labels : array-like, (nq, C), multi-hot
    db_labels : array-like, (n, C), multi-hot
    R : int or None, keyword-only
        Depth of the ranking; ``None`` (default) means the whole database. Values above
        ``n`` are clipped to ``n``. Conventional values: all for CIFAR-10 and MIRFlickr,
        1000 for ImageNet100, 5000 for NUS-WIDE and MS-COCO.
    ties : {"average", "index"}
        ``"average"`` (default): tied distances form one group (scikit-learn's grouping,
        fractional at the R boundary); deterministic and independent of database order.
        ``"index"``: rank by (distance, database index), as DeepHash-pytorch does.
    chunk_size : int, optional
        Queries per chunk (memory ~ ``chunk_size * n`` int64). Does not change the result.
    device : str or torch.device, optional
        Where to compute; default CUDA when available, else CPU.
    return_per_query : bool
        Return the per-query AP (float64 CPU tensor, (nq,)) instead of the mean.

    Returns
    -------
    float, or torch.Tensor of shape (nq,) with ``return_per_query=True``.
        AP of a query with no relevant item inside the top R is 0.
    """
    _check_ties(ties)
    q, db, ql, dbl = _check_inputs(query_codes, db_codes, query_labels, db_labels, device)
    R = _check_R(R, db.shape[0])
    chunk = _chunk(chunk_size, db.shape[0])
    if ties == "average":
        n, r = _count_tables(q, db, ql, dbl, chunk)
        ap = _ap_from_counts(n, r, R)
    else:
        ap = _ap_index(q, db, ql, dbl, R, chunk)
    return ap if return_per_query else float(ap.mean())


map_at_r = mean_average_precision


def precision_at_k(query_codes, db_codes, query_labels, db_labels, k: int = 1000, *,
                   ties: str = "average", chunk_size=None, device=None,
                   return_per_query: bool = False):
    """Precision of the top k retrieved items (expected precision over tie orders).

    With ``ties="average"`` the group that straddles position k contributes the fraction
    of its items that fit, i.e. the expected precision when tied items are ordered at
    random; with ``ties="index"`` items are ranked by (distance, database index).
    ``k`` above the database size is clipped to it. Inputs as in
    :func:`mean_average_precision`; returns a float (or the (nq,) float64 tensor).
    """
    _check_ties(ties)
    q, db, ql, dbl = _check_inputs(query_codes, db_codes, query_labels, db_labels, device)
    k = _check_R(k, db.shape[0], "k")
    chunk = _chunk(chunk_size, db.shape[0])
    if ties == "average":
        n, r = _count_tables(q, db, ql, dbl, chunk)
        p = _pk_from_counts(n, r, k)
    else:
        p = torch.cat([rel.sum(1) / k for rel in _ranked_relevance(q, db, ql, dbl, k, chunk)])
    return p if return_per_query else float(p.mean())


def _check_empty(empty: str) -> None:
    if empty not in _EMPTY:
        raise ValueError(f"empty must be one of {_EMPTY}, got {empty!r}")


def precision_within_radius(query_codes, db_codes, query_labels, db_labels, *,
                            radius: int = 2, empty: str = "zero", chunk_size=None,
                            device=None, return_per_query: bool = False):
    """Precision of the items within Hamming distance ``radius`` (inclusive), "P@r2".

    Hash-lookup precision: everything with ``dist <= radius`` is retrieved. A query that
    retrieves nothing scores **0** with ``empty="zero"`` (default; the HashNet / DSH
    convention, which penalises codes that scatter); ``empty="skip"`` averages only over
    queries that retrieve at least one item (NaN if none does; per-query values are NaN).
    Ties cannot matter here. Returns a float (or the (nq,) float64 tensor).
    """
    _check_empty(empty)
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
        raise ValueError(f"radius must be a non-negative integer, got {radius!r}")
    q, db, ql, dbl = _check_inputs(query_codes, db_codes, query_labels, db_labels, device)
    n, r = _count_tables(q, db, ql, dbl, _chunk(chunk_size, db.shape[0]))
    p = _radius_from_counts(n, r, radius, empty)
    if return_per_query:
        return p
    return float(p.mean()) if empty == "zero" else float(torch.nanmean(p))


def precision_recall_curve(query_codes, db_codes, query_labels, db_labels, *,
                           empty: str = "zero", chunk_size=None, device=None) -> dict:
    """Precision and recall of hash lookup at every Hamming radius 0..bits.

    At radius ``t`` the items with ``dist <= t`` are retrieved. Precision of a query that
    retrieves nothing is 0 with ``empty="zero"`` (so ``precision[2]`` equals
    :func:`precision_within_radius` at radius 2) or left out of the mean with
    ``empty="skip"``; recall of a query with no relevant item in the database is 0.

    Returns
    -------
    dict with numpy arrays of shape (bits + 1,)
        ``"radius"`` (int64), ``"precision"``, ``"recall"`` (float64, means over queries),
        ``"retrieved"`` (mean number of items retrieved, float64).
    """
    _check_empty(empty)
    q, db, ql, dbl = _check_inputs(query_codes, db_codes, query_labels, db_labels, device)
    n, r = _count_tables(q, db, ql, dbl, _chunk(chunk_size, db.shape[0]))
    got = torch.cumsum(n, 1)
    hit = torch.cumsum(r, 1)
    total = hit[:, -1:]
    fill = 0.0 if empty == "zero" else float("nan")
    prec = torch.where(got > 0, hit / got.clamp(min=1), torch.full_like(got, fill))
    rec = torch.where(total > 0, hit / total.clamp(min=1), torch.zeros_like(hit))
    precision = prec.mean(0) if empty == "zero" else torch.nanmean(prec, 0)
    return {
        "radius": np.arange(n.shape[1], dtype=np.int64),
        "precision": precision.numpy(),
        "recall": rec.mean(0).numpy(),
        "retrieved": got.mean(0).numpy(),
    }


def evaluate(query_codes, db_codes, query_labels, db_labels, *, R=None, chunk_size=None,
             device=None) -> dict:
    """The standard table of retrieval metrics, all tie-aware, from one pass over the data.

    Returns
    -------
    dict of float
        ``"map"``: mAP@R (``R=None``: the whole database), ``"map@1000"``,
        ``"p@1000"`` (expected precision of the top 1000) and ``"p@r2"`` (precision within
        Hamming radius 2, queries retrieving nothing score 0). R and k above the database
        size are clipped to it.
    """
    q, db, ql, dbl = _check_inputs(query_codes, db_codes, query_labels, db_labels, device)
    nd = db.shape[0]
    R = _check_R(R, nd)
    n, r = _count_tables(q, db, ql, dbl, _chunk(chunk_size, nd))
    k = min(1000, nd)
    return {
        "map": float(_ap_from_counts(n, r, R).mean()),
        "map@1000": float(_ap_from_counts(n, r, k).mean()),
        "p@1000": float(_pk_from_counts(n, r, k).mean()),
        "p@r2": float(_radius_from_counts(n, r, 2, "zero").mean()),
    }
