"""Multi-index hashing: exact Hamming radius and k-NN search that probes substrings.

Source: Norouzi, Punjani, Fleet, *Fast Search in Hamming Space with Multi-Index Hashing*,
CVPR 2012, cite key ``norouzi2012mih`` (journal version: *Fast Exact Search in Hamming
Space with Multi-Index Hashing*, IEEE TPAMI 2014, arXiv:1307.2982).

The idea
--------
Cut every K-bit code into ``m`` disjoint substrings (contiguous bits; the first ``K mod m``
substrings get one bit more) and build one hash table per substring: bucket key = the
substring's bits read as an integer, bucket content = the database ids holding that key.
If ``||h - g|| <= r`` and ``r = m * r' + a`` (``0 <= a < m``), then by the pigeonhole
principle some substring ``i <= a`` differs in at most ``r'`` bits, or some substring
``i > a`` differs in at most ``r' - 1`` bits (Norouzi et al., Proposition 1); both cases
are the one formula ``radius_i = floor((r - i) / m)`` (negative: substring ``i`` is not
probed). So probing, in table ``i``, every key within ``radius_i`` of the query's
substring finds every code within ``r`` -- plus false candidates, which are removed by
computing the full Hamming distance. The result is exact.

k-NN grows ``r`` from 0: going from ``r - 1`` to ``r`` raises exactly one substring's
radius (substring ``r mod m`` to ``r // m``), so each step probes only the keys at that
new distance in one table, verifies the new candidates, and stops as soon as ``k`` verified
codes lie within ``r`` (all codes within ``r`` are then known, so the (distance, index)
top k is exact, ties included).

Where probing would cost more bucket lookups per query than there are codes (a long
substring at a large radius), both searches verify every code instead: still exact, and
counted in ``last_stats["scanned"]``.

Number of substrings: Norouzi et al. recommend substrings of about ``log2(n)`` bits, i.e.
``m ~ K / log2(n)`` (default here: ``round(K / log2(n))``, at least 1 and at least
``ceil(K / 64)`` so that keys fit 64 bits).

Implementation: pure NumPy, readable first. Each table is a CSR layout: ids sorted by key
and bucket offsets, directly addressed by key for short substrings (one read per probe),
over the sorted distinct keys (``np.searchsorted``) for long ones. Candidates are verified
by XOR + ``np.bitwise_count`` on the packed codes (FAISS ``uint8`` layout,
:func:`hashnb.search.pack_codes`); a code reached through several tables is kept only in
the first table whose radius reaches it (its substring distances are computed anyway), so
no set of seen ids is needed. These data-structure choices, the scan fallback and the
query chunking are ours, not the paper's (its C++ uses sparse direct-address tables). Results follow :mod:`hashnb.search`'s contract: ordered
by (distance, database index), radius inclusive (``dist <= r``), so they equal
``hashnb.search.radius_search`` / ``knn_search`` array for array. Any K works (not only
multiples of 8).
"""
from __future__ import annotations

import math
from functools import lru_cache
from itertools import combinations

import numpy as np

from hashnb.search import pack_codes
from hashnb.utils import check_bits

__all__ = ["MultiIndexHash", "default_substrings", "substring_radii"]

_MAX_SUBSTRING_BITS = 64
_MAX_PROBES = 1 << 22       # masks per (substring, radius): beyond this MIH is hopeless


# ----------------------------------------------------------------------------- helpers
def default_substrings(bits: int, n: int) -> int:
    """Norouzi et al.'s rule: ``m = round(K / log2(n))``, clipped to ``[ceil(K/64), K]``."""
    if n < 2:
        return max(1, math.ceil(bits / _MAX_SUBSTRING_BITS))
    m = round(bits / math.log2(n))
    return int(min(bits, max(m, 1, math.ceil(bits / _MAX_SUBSTRING_BITS))))


def substring_radii(r: int, m: int) -> list[int]:
    """Search radius per substring for an exact radius-``r`` search: ``floor((r - i) / m)``.

    A negative radius means the substring need not be probed.
    """
    return [(r - i) // m for i in range(m)]


@lru_cache(maxsize=256)
def _masks_exact(s: int, j: int) -> np.ndarray:
    """All ``s``-bit masks (uint64) with exactly ``j`` bits set, in lexicographic order."""
    if j < 0 or j > s:
        return np.zeros(0, dtype=np.uint64)
    count = math.comb(s, j)
    if count > _MAX_PROBES:
        raise ValueError(f"probing radius {j} in a {s}-bit substring needs {count:,} "
                         "lookups per query; use more substrings (larger m) or a flat scan")
    if j == 0:
        return np.zeros(1, dtype=np.uint64)
    pos = np.array(list(combinations(range(s), j)), dtype=np.uint64)    # (count, j)
    out = np.bitwise_or.reduce(np.left_shift(np.uint64(1), pos), axis=1)
    out.setflags(write=False)
    return out


def _n_masks(s: int, r: int) -> int:
    """Keys within Hamming distance ``r`` of a ``s``-bit key (0 for ``r < 0``)."""
    return sum(math.comb(s, j) for j in range(min(r, s) + 1)) if r >= 0 else 0


def _masks_upto(s: int, r: int) -> np.ndarray:
    if r < 0:
        return np.zeros(0, dtype=np.uint64)
    return np.concatenate([_masks_exact(s, j) for j in range(min(r, s) + 1)])


def _to_packed(codes, bits):
    """(packed uint8 (n, ceil(K/8)), K) from ±1 codes or from packed codes + ``bits``."""
    if isinstance(codes, np.ndarray) and codes.dtype == np.uint8:
        if codes.ndim != 2:
            raise ValueError(f"packed codes must be 2-D (n, bytes), got shape {codes.shape}")
        if bits is None:
            bits = 8 * codes.shape[1]
        bits = check_bits(bits)
        if codes.shape[1] != math.ceil(bits / 8):
            raise ValueError(f"{bits} bits need {math.ceil(bits / 8)} bytes per code, the "
                             f"packed codes have {codes.shape[1]}")
        if bits % 8 and codes.size and (codes[:, -1] & ((1 << (8 - bits % 8)) - 1)).any():
            raise ValueError("padding bits of packed codes must be 0 (np.packbits layout)")
        return np.ascontiguousarray(codes), int(bits)
    packed = pack_codes(codes)          # checks 2-D, {-1, +1}
    given = np.asarray(codes).shape[1] if not hasattr(codes, "shape") else codes.shape[1]
    if bits is not None and bits != given:
        raise ValueError(f"bits={bits} but the codes have {given} bits")
    return packed, int(given)


def _words(packed: np.ndarray) -> np.ndarray:
    """Packed bytes -> uint64 words (zero padded), for XOR + popcount."""
    n, nb = packed.shape
    w = -(-nb // 8)
    if nb == 8 * w:
        return np.ascontiguousarray(packed).view(np.uint64)
    out = np.zeros((n, 8 * w), dtype=np.uint8)
    out[:, :nb] = packed
    return out.view(np.uint64)


def _substring_keys(packed: np.ndarray, start: int, length: int) -> np.ndarray:
    """Bits ``[start, start + length)`` of each packed code read as a uint64 (MSB first)."""
    key = np.zeros(packed.shape[0], dtype=np.uint64)
    for b in range(start, start + length):
        bit = (packed[:, b // 8] >> np.uint8(7 - b % 8)) & np.uint8(1)
        key = (key << np.uint64(1)) | bit.astype(np.uint64)
    return key


class _Table:
    """One substring's hash table in CSR form: ids sorted by key, plus bucket offsets.

    Short substrings (``2^length <= max(16 n, 2^16)``: Norouzi et al.'s rule gives about
    ``n`` keys) use direct addressing: ``offsets`` has one entry per possible key (at most
    64 bytes per code), a lookup is one read.
    Longer ones keep only the distinct keys, sorted, and look up by binary search.
    """

    def __init__(self, keys: np.ndarray, length: int):
        n = len(keys)
        order = np.argsort(keys, kind="stable")
        self.ids = order.astype(np.int32 if n < 2**31 else np.int64)
        sk = keys[order]
        self.direct = 2.0 ** length <= max(16 * n, 2**16)
        off_t = np.int32 if n < 2**31 else np.int64
        if self.direct:
            self.keys = None
            counts = np.bincount(sk.astype(np.int64), minlength=2**length)
            self.offsets = np.zeros(2**length + 1, dtype=off_t)
            np.cumsum(counts, out=self.offsets[1:])
            self._sizes = counts[counts > 0]
        else:
            first = np.ones(n, dtype=bool)
            first[1:] = sk[1:] != sk[:-1]
            self.keys = sk[first]                                  # (u,) uint64, sorted
            self.offsets = np.append(np.flatnonzero(first), n).astype(off_t)   # (u + 1,)
            self._sizes = np.diff(self.offsets)

    @property
    def nbytes(self) -> int:
        return self.ids.nbytes + self.offsets.nbytes + (0 if self.direct else self.keys.nbytes)

    def sizes(self) -> np.ndarray:
        """Sizes of the non-empty buckets."""
        return self._sizes

    def lookup(self, probe_keys: np.ndarray):
        """(start, stop) of the ids of every probed bucket that is not empty."""
        if self.direct:
            pos = probe_keys.astype(np.int64)
            start, stop = self.offsets[pos], self.offsets[pos + 1]
            found = stop > start
        else:
            pos = np.minimum(np.searchsorted(self.keys, probe_keys), len(self.keys) - 1)
            found = self.keys[pos] == probe_keys
            start, stop = self.offsets[pos], self.offsets[pos + 1]
        return found, start, stop


# -------------------------------------------------------------------------- the index
class MultiIndexHash:
    """Exact Hamming search by multi-index hashing (Norouzi et al., 2012).

    Parameters
    ----------
    codes : array-like (n, K) in {-1, +1}, or np.ndarray uint8 (n, ceil(K / 8))
        Database codes, ±1 (as everywhere in hashnb) or already packed
        (:func:`hashnb.search.pack_codes` layout; then pass ``bits``).
    m : int, optional
        Number of substrings, ``1 <= m <= K``, each at most 64 bits. Default:
        :func:`default_substrings` (``round(K / log2(n))``, Norouzi et al.'s advice).
    bits : int, optional, keyword-only
        Code length K for packed input (default ``8 * bytes``).

    Attributes
    ----------
    bounds : list of (start, length)
        Bit range of each substring.
    last_stats : dict
        Work done by the latest search: ``probes`` (bucket lookups), ``candidates``
        (distinct codes whose full distance was computed), ``results``, per-query arrays
        under ``per_query_candidates``; and ``radius`` reached per query for k-NN.

    Examples
    --------
    >>> mih = MultiIndexHash(db_codes)               # (n, 64) ±1
    >>> hits = mih.radius_search(query_codes, 3)      # [(idx, dist)], dist <= 3
    >>> dist, idx = mih.knn_search(query_codes, 10)   # exact, ordered by (dist, idx)
    """

    def __init__(self, codes, m: int | None = None, *, bits: int | None = None):
        packed, K = _to_packed(codes, bits)
        n = packed.shape[0]
        if n == 0:
            raise ValueError("codes is empty: the index needs at least one code")
        if m is None:
            m = default_substrings(K, n)
        if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or not 1 <= m <= K:
            raise ValueError(f"m (number of substrings) must be an integer in [1, {K}], "
                             f"got {m!r}")
        if math.ceil(K / m) > _MAX_SUBSTRING_BITS:
            raise ValueError(f"{K} bits in m={m} substrings gives substrings longer than "
                             f"{_MAX_SUBSTRING_BITS} bits; use m >= {math.ceil(K / 64)}")
        self.bits, self.n, self.m = K, n, int(m)
        base, extra = divmod(K, self.m)
        lengths = [base + (i < extra) for i in range(self.m)]
        starts = np.cumsum([0] + lengths[:-1]).tolist()
        self.bounds = list(zip(starts, lengths))
        self.packed = packed
        self._w = _words(packed)
        self._sub_masks = []                 # per substring: its bits in the uint64 words
        for start, ln in self.bounds:
            bitsel = np.zeros((1, 8 * self._w.shape[1] * 8), dtype=bool)
            bitsel[0, start:start + ln] = True
            self._sub_masks.append(_words(np.packbits(bitsel, axis=1))[0])
        self.tables = [_Table(_substring_keys(packed, s, ln), ln) for s, ln in self.bounds]
        self.last_stats: dict = {}

    def __repr__(self) -> str:
        lens = sorted({ln for _, ln in self.bounds})
        return (f"MultiIndexHash(n={self.n:,}, bits={self.bits}, m={self.m}, "
                f"substring bits={lens})")

    def __len__(self) -> int:
        return self.n

    # ----------------------------------------------------------------------- stats
    @property
    def nbytes(self) -> int:
        """Bytes held: packed codes + every table's ids, keys and offsets."""
        return self.packed.nbytes + sum(t.nbytes for t in self.tables)

    def occupancy(self) -> list[dict]:
        """Per substring: bucket statistics of its hash table.

        ``buckets`` (non-empty), ``possible`` (2^length), ``max`` (largest bucket),
        ``mean_seen``: the mean bucket size seen by a database code (sum size^2 / n) --
        the candidates one exact-match probe returns on average for a query distributed
        like the database; ``uniform``: what ``mean_seen`` would be if the n codes were
        spread uniformly over the 2^length keys (1 + (n - 1) / 2^length).
        """
        out = []
        for (start, ln), t in zip(self.bounds, self.tables):
            sz = t.sizes().astype(np.float64)
            out.append({"start": start, "length": ln, "buckets": int(len(sz)),
                        "possible": float(2.0 ** ln), "max": int(sz.max()),
                        "mean_seen": float((sz ** 2).sum() / self.n),
                        "uniform": 1.0 + (self.n - 1) / 2.0 ** ln})
        return out

    # ----------------------------------------------------------------------- inputs
    def _queries(self, query_codes, bits=None):
        packed_in = isinstance(query_codes, np.ndarray) and query_codes.dtype == np.uint8
        q, K = _to_packed(query_codes, self.bits if bits is None and packed_in else bits)
        if K != self.bits:
            raise ValueError(f"queries have {K} bits but the index holds {self.bits}-bit codes")
        keys = [_substring_keys(q, s, ln) for s, ln in self.bounds]
        return q, _words(q), keys

    @staticmethod
    def _check_int(v, name, low):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
        return int(v)

    # ------------------------------------------------------------------------ core
    def _probe(self, table: int, qkeys: np.ndarray, rows: np.ndarray, masks: np.ndarray):
        """(row, id) pairs of the codes in the buckets ``qkeys[row] ^ mask``, all masks.

        Returns the pairs and the number of lookups made.
        """
        if len(masks) == 0 or len(rows) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), 0
        t = self.tables[table]
        probe = (qkeys[rows][:, None] ^ masks[None, :]).reshape(-1)       # (R * M,)
        found, start, stop = t.lookup(probe)
        prow = np.repeat(rows, len(masks))[found]
        start = start[found].astype(np.int64)
        counts = stop[found] - start
        # expand each found bucket into its ids: position within the flat id list
        total = int(counts.sum())
        first = np.repeat(start - np.cumsum(counts) + counts, counts)
        flat = first + np.arange(total)
        return np.repeat(prow, counts), t.ids[flat].astype(np.int64), len(probe)

    def _verify(self, qw: np.ndarray, rows: np.ndarray, ids: np.ndarray):
        """Full distances (n_cand,) and per-substring distances (n_cand, m) of candidates."""
        x = qw[rows] ^ self._w[ids]                                       # (n_cand, W)
        full = np.bitwise_count(x).sum(axis=1, dtype=np.int64)
        sub = np.stack([np.bitwise_count(x & mk).sum(axis=1, dtype=np.int64)
                        for mk in self._sub_masks], axis=1)
        return full, sub

    @staticmethod
    def _first_table(sub: np.ndarray, radii, table: int) -> np.ndarray:
        """True where no table before ``table`` reaches the candidate within its radius.

        A candidate lies in table j's probed buckets iff its substring distance there is
        <= radii[j]; keeping it only in the first such table removes duplicates exactly,
        without a set of seen ids.
        """
        keep = np.ones(len(sub), dtype=bool)
        for j in range(table):
            keep &= sub[:, j] > radii[j]
        return keep

    # --------------------------------------------------------------------- searches
    def radius_search(self, query_codes, r: int, *, bits: int | None = None,
                      chunk_size: int = 256):
        """Every database code within Hamming distance ``r`` (inclusive) of each query.

        Parameters
        ----------
        query_codes : (nq, K) ±1, or packed uint8 (nq, ceil(K/8))
        r : int >= 0

        Returns
        -------
        list of (idx, dist), one per query: ``idx`` int64, ``dist`` int32, ordered by
        (distance, index) -- the same arrays as :func:`hashnb.search.radius_search`.
        """
        r = self._check_int(r, "r", 0)
        chunk_size = self._check_int(chunk_size, "chunk_size", 1)
        q, qw, qkeys = self._queries(query_codes, bits)
        nq = len(q)
        radii = substring_radii(r, self.m)
        lookups = sum(_n_masks(ln, ri) for (_, ln), ri in zip(self.bounds, radii))
        # more lookups per query than codes: scanning every code is cheaper (and exact)
        scan = lookups > self.n
        masks = [] if scan else [_masks_upto(ln, ri) for (_, ln), ri in
                                 zip(self.bounds, radii)]
        out, probes = [], 0
        cand_per_q = np.zeros(nq, dtype=np.int64)
        for s in range(0, nq, chunk_size):
            rows = np.arange(s, min(nq, s + chunk_size))
            parts = []                                   # (row, id, dist) per table
            if scan:
                crow = np.repeat(rows, self.n)
                cid = np.tile(np.arange(self.n), len(rows))
                parts.append((crow, cid, self._verify(qw, crow, cid)[0]))
            else:
                for i in range(self.m):
                    pr, pi, p = self._probe(i, qkeys[i], rows, masks[i])
                    probes += p
                    d, sub = self._verify(qw, pr, pi)
                    new = self._first_table(sub, radii, i)        # drop duplicates
                    parts.append((pr[new], pi[new], d[new]))
            crow, cid, d = (np.concatenate(a) for a in zip(*parts))
            cand_per_q += np.bincount(crow, minlength=nq)
            keep = d <= r
            crow, cid, d = crow[keep], cid[keep], d[keep]
            order = np.lexsort((cid, d, crow))
            crow, cid, d = crow[order], cid[order], d[order]
            cuts = np.cumsum(np.bincount(crow - s, minlength=len(rows)))[:-1]
            for i_, d_ in zip(np.split(cid, cuts), np.split(d, cuts)):
                out.append((i_.astype(np.int64), d_.astype(np.int32)))
        self.last_stats = {"search": "radius", "r": r, "radii": radii, "queries": nq,
                           "scanned": nq if scan else 0,
                           "probes": probes, "candidates": int(cand_per_q.sum()),
                           "results": int(sum(len(o[0]) for o in out)),
                           "per_query_candidates": cand_per_q}
        return out

    def knn_search(self, query_codes, k: int, *, bits: int | None = None,
                   chunk_size: int = 128):
        """Exact k nearest codes by growing the radius (see the module docstring).

        Returns
        -------
        dist : np.ndarray int32 (nq, k); idx : np.ndarray int64 (nq, k)
            Ordered by (distance, index), equal to :func:`hashnb.search.knn_search`.
        """
        k = self._check_int(k, "k", 1)
        chunk_size = self._check_int(chunk_size, "chunk_size", 1)
        if k > self.n:
            raise ValueError(f"k={k} exceeds the number of database codes ({self.n})")
        q, qw, qkeys = self._queries(query_codes, bits)
        nq = len(q)
        out_d = np.zeros((nq, k), dtype=np.int32)
        out_i = np.zeros((nq, k), dtype=np.int64)
        st = {"radius": np.full(nq, -1, dtype=np.int64),
              "per_query_candidates": np.zeros(nq, dtype=np.int64), "probes": 0, "scanned": 0}
        for s in range(0, nq, chunk_size):
            self._knn_chunk(qw, qkeys, np.arange(s, min(nq, s + chunk_size)), k,
                            out_d, out_i, st)
        self.last_stats = {"search": "knn", "k": k, "queries": nq, "probes": st["probes"],
                           "candidates": int(st["per_query_candidates"].sum()),
                           "results": nq * k, **st}
        return out_d, out_i

    def _knn_chunk(self, qw, qkeys, rows, k, out_d, out_i, st):
        n, K, m = self.n, self.bits, self.m
        hist = np.zeros((len(rows), K + 1), dtype=np.int64)   # verified codes per distance
        pool = []                                            # (row, id, dist) per step
        scanned = np.zeros(len(rows), dtype=bool)
        active = rows
        r = 0
        while len(active):
            i, ri = r % m, r // m            # the one substring whose radius grows
            ln = self.bounds[i][1]
            if ri <= ln and math.comb(ln, ri) > n:
                # this step costs more lookups than a scan: verify every code, finish
                for qi in active:
                    d = self._verify(qw, np.full(n, qi), np.arange(n))[0]
                    sel = np.lexsort((np.arange(n), d))[:k]
                    out_d[qi], out_i[qi] = d[sel], sel
                    st["radius"][qi] = K
                scanned[active - rows[0]] = True
                st["scanned"] += len(active)
                break
            if ri <= ln:
                pr, pi, p = self._probe(i, qkeys[i], active, _masks_exact(ln, ri))
                st["probes"] += p
                d, sub = self._verify(qw, pr, pi)
                # tables were probed up to their radius for r - 1 before this step
                before = substring_radii(r - 1, m)
                keep = np.ones(len(pr), dtype=bool)
                for j in range(m):
                    if j != i:
                        keep &= sub[:, j] > before[j]
                pr, pi, d = pr[keep], pi[keep], d[keep]
                pool.append((pr, pi, d))
                np.add.at(hist, (pr - rows[0], d), 1)
            # every code within r is verified now: done where >= k of them
            done = hist[active - rows[0], :r + 1].sum(axis=1) >= k
            if r >= K:
                done[:] = True
            st["radius"][active[done]] = r
            active = active[~done]
            r += 1
        st["per_query_candidates"][rows[scanned]] = n
        if not pool:
            return
        pr, pi, d = (np.concatenate(a) for a in zip(*pool))
        keep = ~scanned[pr - rows[0]]
        pr, pi, d = pr[keep], pi[keep], d[keep]
        st["per_query_candidates"][rows] += np.bincount(pr - rows[0], minlength=len(rows))
        keep = d <= st["radius"][pr]
        pr, pi, d = pr[keep], pi[keep], d[keep]
        order = np.lexsort((pi, d, pr))
        pr, pi, d = pr[order], pi[order], d[order]
        starts = np.searchsorted(pr, rows)
        counts = np.bincount(pr - rows[0], minlength=len(rows))
        for qi, a, c in zip(rows, starts, counts):
            if not scanned[qi - rows[0]]:
                out_d[qi], out_i[qi] = d[a:a + k], pi[a:a + k]
