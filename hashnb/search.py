"""Exact Hamming search over binary codes: packing, k-NN and radius search, FAISS or torch.

Sources: FAISS binary indexes (Johnson, Douze, Jegou, *Billion-scale similarity search with
GPUs*, arXiv:1702.08734; wiki "Binary indexes": ``IndexBinaryFlat`` takes ``uint8`` codes of
``d / 8`` bytes, ``range_search`` is strict, ``d < radius``). At the book's scale (<= a few
10^5 codes of 8-128 bits) an exhaustive scan answers in milliseconds, so only exact search
lives here.

Contracts
---------
* Codes are float {-1, +1} of shape (n, bits); packed codes are ``uint8`` of shape
  (n, ceil(bits / 8)) in ``np.packbits`` layout (+1 -> bit 1, padding bits 0): what FAISS
  binary indexes take. Zero padding leaves Hamming distances unchanged.
* Results are ordered by (distance, database index), so ties are broken by index and both
  backends return identical arrays. FAISS orders ties arbitrarily; the "faiss" backend asks
  it for extra candidates (or, where a tie group is larger still, for every item within the
  boundary distance) and re-sorts.
* ``radius_search`` is inclusive: it returns items with ``dist <= radius``, the convention
  of "precision within Hamming radius 2" (:func:`hashnb.metrics.precision_within_radius`).

The torch backend on CPU computes ``q . db`` with one matrix product per chunk of queries
(bf16 on CPUs with AVX512-BF16/AMX, exact for up to 127 bits; float32 otherwise), then
selects the top k without sorting the whole row: the maxima of blocks of 64 items give a
lower bound on the k-th best score, only blocks reaching it are inspected, and a stable
sort of the few surviving candidates picks the exact (distance, index) top k. On CUDA it
uses ``topk`` on the key ``dist * n + index``.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from hashnb.utils import check_codes, default_device

__all__ = ["pack_codes", "unpack_codes", "knn_search", "radius_search", "HammingIndex",
           "faiss_available"]

_BACKENDS = ("auto", "faiss", "torch")
_BLOCK = 64                  # items per block for the block-maximum bound
_CHUNK_ELEMENTS = 1 << 21    # (queries x database) scores per chunk


# ------------------------------------------------------------------------------ helpers
def faiss_available() -> bool:
    """True when ``import faiss`` works (the "auto" backend then uses it)."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _import_faiss():
    try:
        import faiss
    except ImportError as e:  # pragma: no cover - faiss is installed in the dev env
        raise ImportError("backend='faiss' needs FAISS: pip install faiss-cpu "
                          "(or use backend='torch')") from e
    return faiss


def _resolve_backend(backend: str) -> str:
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "faiss" if faiss_available() else "torch"
    return backend


def _check_int(v, name: str, low: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
    return int(v)


# ------------------------------------------------------------------------------ packing
def pack_codes(codes) -> np.ndarray:
    """Pack ±1 codes into bytes, the layout of FAISS binary indexes.

    Parameters
    ----------
    codes : array-like, (n, bits), values in {-1, +1}

    Returns
    -------
    np.ndarray, uint8, (n, ceil(bits / 8))
        ``np.packbits(codes > 0, axis=1)``: +1 -> bit 1, most significant bit first; when
        ``bits`` is not a multiple of 8 the last byte is padded with 0 bits.
    """
    t = check_codes(codes, "codes", allow_empty=True)
    return np.packbits(t.cpu().numpy() > 0, axis=1)


def unpack_codes(packed, bits: int) -> np.ndarray:
    """Inverse of :func:`pack_codes`: uint8 (n, ceil(bits / 8)) -> float32 ±1 (n, bits)."""
    packed = np.asarray(packed)
    bits = _check_int(bits, "bits", 1)
    if packed.dtype != np.uint8 or packed.ndim != 2:
        raise ValueError(f"packed codes must be a 2-D uint8 array, got {packed.dtype} "
                         f"with shape {packed.shape}")
    if packed.shape[1] != math.ceil(bits / 8):
        raise ValueError(f"{bits} bits need {math.ceil(bits / 8)} bytes per code, packed "
                         f"codes have {packed.shape[1]}")
    b = np.unpackbits(packed, axis=1, count=bits)
    return b.astype(np.float32) * 2 - 1


# ----------------------------------------------------------------------- torch backend
def _native_bf16() -> bool:
    """True on CPUs with bf16 arithmetic (AVX512-BF16 or AMX), where bf16 GEMMs are fast."""
    cpu = getattr(torch, "cpu", None)
    try:
        return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())
    except AttributeError:  # pragma: no cover - older torch
        return False


class _TorchDB:
    """Database prepared for repeated torch searches (padded, transposed, biased).

    On CPU every (query, item) pair gets an integer score whose bit pattern is linear in
    the *level* ``bits - dist``: the product ``[q, 1, 1] @ [db, base, bits].T`` equals
    ``base + q.db + bits = base + 2 * level``, placed in one binade of the float format
    (``base = 256`` in bf16, exact for up to 127 bits; ``2**23`` in float32 otherwise), so
    viewing it as int16/int32 gives ``pattern(base) + level`` (bf16) or
    ``pattern(base) + 2 * level`` (float32). Block maxima, thresholds and distances are then
    integer operations on the raw patterns. Padding items score 0, below every real item.
    """

    def __init__(self, db: torch.Tensor, device=None):
        self.device = default_device(device, mps=False)
        self.bits = bits = db.shape[1]
        self.n = n = db.shape[0]
        self.db = db.to(self.device, torch.float32)
        self.blocked = self.device.type == "cpu"
        if not self.blocked:
            return
        if bits <= 127 and _native_bf16():
            base, self.dtype, self.itype, self.shift = 256.0, torch.bfloat16, torch.int16, 0
        else:
            base, self.dtype, self.itype, self.shift = 2.0 ** 23, torch.float32, torch.int32, 1
        self.p0 = int(torch.tensor([base], dtype=self.dtype).view(self.itype))
        self.b = _BLOCK
        self.nb = -(-n // self.b)
        self.npad = self.nb * self.b
        dT = torch.zeros(bits + 2, self.npad, dtype=torch.float32)
        dT[:bits, :n] = self.db.T
        dT[bits, :n] = base
        dT[bits + 1, :n] = bits
        self.dT = dT.to(self.dtype).contiguous()

    def _chunk(self, chunk_size, *, knn: bool) -> int:
        if chunk_size is not None:
            return _check_int(chunk_size, "chunk_size", 1)
        if knn and self.blocked:
            # 128 queries measured best at 54k codes (GEMM rows vs cache); fewer for huge n
            return max(8, min(128, (1 << 23) // self.npad))
        return max(1, _CHUNK_ELEMENTS // max(self.n, 1))

    def knn(self, q: torch.Tensor, k: int, chunk_size=None):
        nq = q.shape[0]
        out_d = torch.empty(nq, k, dtype=torch.int64)
        out_i = torch.empty(nq, k, dtype=torch.int64)
        chunk = self._chunk(chunk_size, knn=True)
        if self.blocked:
            qa = torch.ones(nq, self.bits + 2, dtype=self.dtype)
            qa[:, :self.bits] = q
            # reused output buffers: the score matrix is the one big allocation
            c = min(chunk, nq)
            bufs = (torch.empty(c, self.npad, dtype=self.dtype),
                    torch.empty(c, self.nb, dtype=self.itype))
        else:
            qa = q.to(self.device, torch.float32)
        for s in range(0, nq, chunk):
            if self.blocked:
                d, i = self._knn_blocked(qa[s:s + chunk], k, bufs)
            else:
                d, i = self._knn_topk(qa[s:s + chunk], k)
            out_d[s:s + chunk] = d
            out_i[s:s + chunk] = i
        return out_d.to(torch.int32).numpy(), out_i.numpy()

    def _knn_topk(self, q, k):
        dist = ((self.bits - q @ self.db.T) / 2).round_().long()
        key = dist * self.n + torch.arange(self.n, device=self.device)
        key = key.topk(k, dim=1, largest=False, sorted=True).values
        return (key // self.n).cpu(), (key % self.n).cpu()

    def _knn_blocked(self, qa, k, bufs):
        c, b, nb, bits, B1 = qa.shape[0], self.b, self.nb, self.bits, self.bits + 1
        # the two passes over all c x npad scores run in torch (multi-threaded) ...
        sc = torch.matmul(qa, self.dT, out=bufs[0][:c]).view(self.itype)  # (c, npad)
        bmax = torch.amax(sc.view(c, nb, b), -1, out=bufs[1][:c])          # (c, nb)
        if nb >= k:
            # the k-th best block maximum is <= the k-th best score (k blocks each hold an
            # item at least that good), so every top-k item sits in a block reaching it
            lo = bmax.topk(k, dim=1, sorted=False).values.amin(1).numpy()
        else:
            lo = np.full(c, self.p0, dtype=bmax.numpy().dtype)  # level 0: every real item
        # ... the rest touches ~k candidates per query: numpy, whose calls cost less
        blocks = np.flatnonzero(bmax.numpy() >= lo[:, None])              # row * nb + blk
        cand = sc.numpy().reshape(-1, b)[blocks]                           # (P, b)
        rows_b = blocks // nb
        pos = np.flatnonzero(cand >= lo[rows_b][:, None])
        pb = pos // b
        blk = blocks[pb]
        row = blk // nb
        idx = (blk - row * nb) * b + (pos - pb * b)
        dist = bits - ((cand.reshape(-1)[pos].astype(np.int64) - self.p0) >> self.shift)
        # candidates come in (row, idx) order; a stable sort on (row, dist) gives
        # (row, dist, idx); every row has >= k candidates: keep its first k
        skey = row * B1 + dist
        order = np.argsort(skey.astype(np.uint16) if c * B1 < 65536 else skey, kind="stable")
        start = np.zeros(c, dtype=np.int64)
        np.cumsum(np.bincount(row, minlength=c)[:-1], out=start[1:])
        take = order[(start[:, None] + np.arange(k)).reshape(-1)]
        return (torch.from_numpy(dist[take].reshape(c, k)),
                torch.from_numpy(idx[take].reshape(c, k)))

    def radius(self, q: torch.Tensor, radius: int, chunk_size=None):
        nq, n, bits = q.shape[0], self.n, self.bits
        chunk = self._chunk(chunk_size, knn=False)
        q = q.to(self.device, torch.float32)
        out = []
        for s in range(0, nq, chunk):
            qc = q[s:s + chunk]
            c = qc.shape[0]
            dist = ((bits - qc @ self.db.T) / 2).round_().long()
            row, idx = (dist <= radius).nonzero(as_tuple=True)
            d = dist[row, idx]
            key = (row * (bits + 1) + d) * n + idx
            order = torch.sort(key).indices
            row, idx, d = row[order].cpu(), idx[order].cpu(), d[order].cpu()
            counts = torch.bincount(row, minlength=c).tolist()
            for i_, d_ in zip(torch.split(idx, counts), torch.split(d, counts)):
                out.append((i_.numpy().astype(np.int64), d_.numpy().astype(np.int32)))
        return out


# ----------------------------------------------------------------------- FAISS backend
class _FaissDB:
    """``faiss.IndexBinaryFlat`` over packed codes, with ties re-ordered by index."""

    def __init__(self, db: torch.Tensor):
        faiss = _import_faiss()
        self.bits = db.shape[1]
        self.n = db.shape[0]
        self.index = faiss.IndexBinaryFlat(8 * math.ceil(self.bits / 8))
        self.index.add(pack_codes(db))

    def knn(self, q: torch.Tensor, k: int):
        n = self.n
        qp = pack_codes(q)
        kk = min(n, 2 * k)
        D, I = self.index.search(qp, kk)
        D = D.astype(np.int64)
        I = I.astype(np.int64)
        key = np.sort(D * n + I, axis=1)[:, :k]
        # complete when the k-th distance is below the last candidate's: all items tied
        # with the k-th are then among the candidates
        incomplete = np.flatnonzero(D.max(axis=1) <= key[:, -1] // n) if kk < n else []
        if len(incomplete):
            hits = self._within(qp[incomplete], key[incomplete, -1] // n)
            for qi, (d2, i2) in zip(incomplete, hits):
                key[qi] = np.sort(d2 * n + i2)[:k]
        return (key // n).astype(np.int32), (key % n).astype(np.int64)

    def _within(self, qp: np.ndarray, max_dist: np.ndarray) -> list:
        """(dist, idx) int64 arrays of every item with dist <= max_dist[i], per query i."""
        out = [None] * len(qp)
        for r in np.unique(max_dist):
            sel = np.flatnonzero(max_dist == r)
            lims, D, I = self.index.range_search(qp[sel], int(r) + 1)  # strict: d < radius
            for j, qi in enumerate(sel):
                out[qi] = (D[lims[j]:lims[j + 1]].astype(np.int64),
                           I[lims[j]:lims[j + 1]].astype(np.int64))
        return out

    def radius(self, q: torch.Tensor, radius: int):
        n = self.n
        lims, D, I = self.index.range_search(pack_codes(q), radius + 1)  # strict: d < r + 1
        out = []
        for j in range(len(lims) - 1):
            d, i = D[lims[j]:lims[j + 1]].astype(np.int64), I[lims[j]:lims[j + 1]]
            key = np.sort(d * n + i)
            out.append(((key % n).astype(np.int64), (key // n).astype(np.int32)))
        return out


# --------------------------------------------------------------------------- public API
class HammingIndex:
    """Exact Hamming index over ±1 codes (``faiss.IndexBinaryFlat`` or torch).

    Parameters
    ----------
    bits : int
        Code length.
    backend : {"auto", "faiss", "torch"}, keyword-only
        "auto" uses FAISS when it can be imported, else torch. Both give identical results.
    device : str or torch.device, optional
        For the torch backend; default CUDA when available, else CPU.

    Examples
    --------
    >>> index = HammingIndex(64)
    >>> index.add(db_codes)                       # (n, 64) in {-1, +1}
    >>> dist, idx = index.search(query_codes, 10)
    >>> hits = index.range_search(query_codes, 2)  # [(idx, dist) per query], dist <= 2
    """

    def __init__(self, bits: int, *, backend: str = "auto", device=None):
        self.bits = _check_int(bits, "bits", 1)
        self.backend = _resolve_backend(backend)
        self.device = device
        self._parts: list[torch.Tensor] = []
        self._db = None

    @property
    def ntotal(self) -> int:
        return sum(p.shape[0] for p in self._parts)

    def __len__(self) -> int:
        return self.ntotal

    def __repr__(self) -> str:
        return f"HammingIndex(bits={self.bits}, backend={self.backend!r}, ntotal={self.ntotal})"

    def add(self, codes) -> None:
        """Append ±1 codes (n, bits); their ids continue from :attr:`ntotal`."""
        t = check_codes(codes, "codes", allow_empty=True)
        if t.shape[1] != self.bits:
            raise ValueError(f"index holds {self.bits}-bit codes, got {t.shape[1]} bits")
        self._parts.append(t.cpu())
        self._db = None

    def reset(self) -> None:
        """Remove every code."""
        self._parts = []
        self._db = None

    def _prepared(self):
        if self.ntotal == 0:
            raise ValueError("the index is empty: add codes first")
        if self._db is None:
            db = torch.cat(self._parts) if len(self._parts) > 1 else self._parts[0]
            self._db = _FaissDB(db) if self.backend == "faiss" else _TorchDB(db, self.device)
        return self._db

    def _queries(self, query_codes) -> torch.Tensor:
        q = check_codes(query_codes, "query_codes", allow_empty=True)
        if q.shape[1] != self.bits:
            raise ValueError(f"query_codes have {q.shape[1]} bits but the index holds "
                             f"{self.bits}-bit codes")
        return q

    def search(self, query_codes, k: int, *, chunk_size=None):
        """k nearest codes of each query, ordered by (distance, index).

        Returns
        -------
        dist : np.ndarray, int32, (nq, k)
        idx : np.ndarray, int64, (nq, k)
        """
        db = self._prepared()
        q = self._queries(query_codes)
        k = _check_int(k, "k", 1)
        if k > db.n:
            raise ValueError(f"k={k} exceeds the number of database codes ({db.n})")
        if isinstance(db, _FaissDB):
            return db.knn(q, k)
        return db.knn(q, k, chunk_size)

    def range_search(self, query_codes, radius: int, *, chunk_size=None):
        """Every code within Hamming distance ``radius`` (inclusive) of each query.

        Returns
        -------
        list of (idx, dist) per query
            ``idx`` int64 and ``dist`` int32 arrays, ordered by (distance, index).
        """
        db = self._prepared()
        q = self._queries(query_codes)
        radius = _check_int(radius, "radius", 0)
        if isinstance(db, _FaissDB):
            return db.radius(q, radius)
        return db.radius(q, radius, chunk_size)


def _index_for(query_codes, db_codes, backend, device) -> HammingIndex:
    db = check_codes(db_codes, "db_codes", allow_empty=True)
    if db.shape[0] == 0:
        raise ValueError("db_codes is empty")
    index = HammingIndex(db.shape[1], backend=backend, device=device)
    index.add(db)
    return index


def knn_search(query_codes, db_codes, k: int, *, backend: str = "auto", chunk_size=None,
               device=None):
    """Exact k nearest neighbours in Hamming distance, ties broken by database index.

    Parameters
    ----------
    query_codes : array-like, (nq, bits), {-1, +1}
    db_codes : array-like, (n, bits), {-1, +1}
    k : int
        1 <= k <= n.
    backend : {"auto", "faiss", "torch"}
        "auto": FAISS when importable, else torch; the results are identical.
    chunk_size : int, optional
        Queries per chunk for the torch backend.
    device : optional
        Device for the torch backend (default CUDA when available, else CPU).

    Returns
    -------
    dist : np.ndarray, int32, (nq, k)
    idx : np.ndarray, int64, (nq, k)
        Sorted by (distance, index) within each row.
    """
    return _index_for(query_codes, db_codes, backend, device).search(
        query_codes, k, chunk_size=chunk_size)


def radius_search(query_codes, db_codes, radius: int, *, backend: str = "auto",
                  chunk_size=None, device=None):
    """All database codes with Hamming distance ``<= radius`` from each query.

    Returns
    -------
    list of (idx, dist), one per query
        ``idx`` int64 and ``dist`` int32 arrays sorted by (distance, index).
    """
    return _index_for(query_codes, db_codes, backend, device).range_search(
        query_codes, radius, chunk_size=chunk_size)
