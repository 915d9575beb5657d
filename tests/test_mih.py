"""Multi-index hashing (hashnb.mih): exactness against flat scans, FAISS and a slow loop."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from hashnb.bench import synthetic_codes
from hashnb.mih import MultiIndexHash, default_substrings, substring_radii
from hashnb.search import knn_search, pack_codes, radius_search

faiss = pytest.importorskip("faiss")


def _random(n, bits, seed):
    rng = np.random.default_rng(seed)
    return rng.choice([-1.0, 1.0], size=(n, bits)).astype(np.float32)


def _clustered(n, bits, seed, centers=None):
    # few centers, few flips: most codes share their substrings -> crowded buckets
    codes, _, centers = synthetic_codes(n, bits, classes=4, flip=0.05, seed=seed,
                                        centers=centers)
    return codes, centers


def _data(kind, bits, n=800, nq=25, seed=0):
    if kind == "random":
        return _random(n, bits, seed), _random(nq, bits, seed + 1)
    db, c = _clustered(n, bits, seed)
    q, _ = _clustered(nq, bits, seed + 1, centers=c)
    return db, q


def _slow_radius(q, db, r):
    """Oracle: a Python loop over queries, stable sort by distance (ties by index)."""
    out = []
    for x in q:
        d = ((x != db).sum(1)).astype(np.int64)
        idx = np.flatnonzero(d <= r)
        idx = idx[np.argsort(d[idx], kind="stable")]
        out.append((idx, d[idx]))
    return out


def _same(a, b):
    assert len(a) == len(b)
    for (ia, da), (ib, db_) in zip(a, b):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(da, db_)


def _faiss_range(q, db, r):
    """FAISS IndexBinaryFlat.range_search (strict d < radius) as sorted (idx, dist) lists."""
    bits = db.shape[1]
    index = faiss.IndexBinaryFlat(8 * math.ceil(bits / 8))
    index.add(pack_codes(db))
    lims, D, I = index.range_search(pack_codes(q), r + 1)
    out = []
    for j in range(len(q)):
        d, i = D[lims[j]:lims[j + 1]].astype(np.int64), I[lims[j]:lims[j + 1]]
        o = np.lexsort((i, d))
        out.append((i[o].astype(np.int64), d[o]))
    return out


@pytest.mark.parametrize("kind", ["random", "clustered"])
@pytest.mark.parametrize("bits,m", [(16, 1), (24, 3), (32, 2), (64, 5), (13, 2),
                                    (64, None)])
def test_radius_equals_flat_and_faiss(kind, bits, m):
    db, q = _data(kind, bits)
    mih = MultiIndexHash(db, m)
    for r in sorted({0, 1, 3, bits // 4}):
        got = mih.radius_search(q, r, chunk_size=16)
        _same(got, radius_search(q, db, r, backend="torch"))
        _same(got, _faiss_range(q, db, r))
    # the pigeonhole must hold even where the result is large
    _same(mih.radius_search(q[:5], bits // 2), _slow_radius(q[:5], db, bits // 2))


@pytest.mark.parametrize("kind", ["random", "clustered"])
@pytest.mark.parametrize("bits,m,k", [(16, 2, 1), (32, 3, 50), (64, 4, 5), (20, 3, 50),
                                      (64, 1, 5)])
def test_knn_equals_flat_with_tie_order(kind, bits, m, k):
    db, q = _data(kind, bits)
    mih = MultiIndexHash(db, m)
    d, i = mih.knn_search(q, k)
    d2, i2 = knn_search(q, db, k, backend="torch")
    np.testing.assert_array_equal(d, d2)
    np.testing.assert_array_equal(i, i2)       # ties broken by index, like hashnb.search
    assert d.dtype == np.int32 and i.dtype == np.int64
    # FAISS orders ties arbitrarily: the distance lists must agree
    index = faiss.IndexBinaryFlat(8 * math.ceil(bits / 8))
    index.add(pack_codes(db))
    D, _ = index.search(pack_codes(q), k)
    np.testing.assert_array_equal(np.sort(D, 1), d)


def test_knn_with_duplicates_and_whole_database():
    db = _random(30, 16, 3)
    db = np.concatenate([db, db, db])          # every code three times: 3-way ties
    q = db[:6]
    mih = MultiIndexHash(db, 2)
    d, i = mih.knn_search(q, len(db))
    d2, i2 = knn_search(q, db, len(db), backend="torch")
    np.testing.assert_array_equal(d, d2)
    np.testing.assert_array_equal(i, i2)
    np.testing.assert_array_equal(i[:, :3], np.arange(6)[:, None] + [0, 30, 60])


def test_packed_input_equals_pm1_input():
    db, q = _data("clustered", 24)
    a = MultiIndexHash(db, 3)
    b = MultiIndexHash(pack_codes(db), 3, bits=24)
    _same(a.radius_search(q, 4), b.radius_search(pack_codes(q), 4))
    np.testing.assert_array_equal(a.knn_search(q, 5)[1], b.knn_search(pack_codes(q), 5)[1])
    # query chunks are independent
    np.testing.assert_array_equal(a.knn_search(q, 5)[1], a.knn_search(q, 5, chunk_size=3)[1])
    _same(a.radius_search(q, 4), a.radius_search(q, 4, chunk_size=7))


def test_substring_radii_pigeonhole():
    # brute force over all distance splits: any split with total <= r has a substring
    # within its radius (Norouzi et al., Proposition 1); and the radii are tight
    m, ln = 3, 4
    for r in range(0, 10):
        radii = substring_radii(r, m)
        for split in np.ndindex(*(ln + 1,) * m):
            if sum(split) <= r:
                assert any(s <= ri for s, ri in zip(split, radii)), (r, split)
        # tight: there is a split of total r + 1 that misses every radius
        miss = [ri + 1 for ri in radii]
        assert sum(miss) == r + 1 and all(s > ri for s, ri in zip(miss, radii))


def test_default_m_and_occupancy():
    assert default_substrings(64, 2**16) == 4
    assert default_substrings(32, 10**6) == 2
    assert default_substrings(16, 10**7) == 1
    assert default_substrings(128, 1) == 2           # keys must fit 64 bits
    assert default_substrings(128, 4) == 64          # 2-bit substrings for 4 codes
    db = _random(4096, 24, 0)
    mih = MultiIndexHash(db)                           # 24 / 12 -> m = 2 of 12 bits
    assert mih.m == 2 and [ln for _, ln in mih.bounds] == [12, 12]
    occ = mih.occupancy()
    for o, t in zip(occ, mih.tables):
        sizes = t.sizes()
        assert sizes.sum() == len(db) and o["buckets"] == len(sizes)
        assert o["mean_seen"] == pytest.approx((sizes.astype(float) ** 2).sum() / len(db))
        assert o["mean_seen"] == pytest.approx(o["uniform"], rel=0.1)   # random: balanced
    # clustered codes crowd a few buckets: far above the uniform expectation
    cl, _ = _clustered(4096, 24, 0)
    occ_c = MultiIndexHash(cl, 2).occupancy()
    assert all(o["mean_seen"] > 20 * o["uniform"] for o in occ_c)
    assert mih.nbytes == mih.packed.nbytes + sum(t.nbytes for t in mih.tables)


def test_stats_count_candidates():
    db, q = _data("random", 32)
    mih = MultiIndexHash(db, 4)
    hits = mih.radius_search(q, 3)
    st = mih.last_stats
    per_q = st["per_query_candidates"]
    assert st["results"] == sum(len(h[0]) for h in hits)
    assert (per_q >= [len(h[0]) for h in hits]).all()      # results are verified candidates
    assert per_q.sum() == st["candidates"] and st["candidates"] < len(q) * len(db)
    mih.knn_search(q, 5)
    assert (mih.last_stats["radius"] >= 0).all() and mih.last_stats["results"] == 5 * len(q)


def test_scan_fallback_stays_exact():
    db, q = _data("random", 64, n=300)
    mih = MultiIndexHash(db, 1)                        # one 64-bit substring
    _same(mih.radius_search(q, 20), radius_search(q, db, 20, backend="torch"))
    assert mih.last_stats["scanned"] == len(q)


@pytest.mark.parametrize("call,match", [
    (lambda db: MultiIndexHash(db, 0), "m"),
    (lambda db: MultiIndexHash(db, 33), "m"),
    (lambda db: MultiIndexHash(db, 2.0), "m"),
    (lambda db: MultiIndexHash(db * 0.5), "-1 and \\+1"),
    (lambda db: MultiIndexHash(db[:0]), "empty"),
    (lambda db: MultiIndexHash(db[0]), "2-D"),
    (lambda db: MultiIndexHash(_random(5, 128, 0), 1), "m >= 2"),
    (lambda db: MultiIndexHash(pack_codes(db), 2, bits=20), "bytes"),
    (lambda db: MultiIndexHash(np.full((3, 4), 255, np.uint8), 2, bits=30), "padding"),
    (lambda db: MultiIndexHash(db, 2).radius_search(db[:, :16], 1), "bits"),
    (lambda db: MultiIndexHash(db, 2).radius_search(db, -1), "r must"),
    (lambda db: MultiIndexHash(db, 2).knn_search(db, 0), "k must"),
    (lambda db: MultiIndexHash(db, 2).knn_search(db, len(db) + 1), "exceeds"),
])
def test_bad_input(call, match):
    db = _random(50, 32, 0)
    with pytest.raises(ValueError, match=match):
        call(db)


def test_bench_search_tiny(tmp_path, capsys):
    from hashnb.bench import main

    out = tmp_path / "s.json"
    assert main(["search", "--sizes", "300", "1000", "--bits", "16", "20", "--queries", "10",
                 "--k", "5", "--repeats", "1", "--indexes", "flat", "hashnb", "mih", "hnsw",
                 "ivf", "multihash", "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "queries/s" in text and "mih" in text
    res = json.loads(out.read_text())
    rows = res["results"]
    assert {(r["n"], r["bits"]) for r in rows} == {(300, 16), (1000, 16), (300, 20),
                                                     (1000, 20)}
    assert {r["index"] for r in rows} == {"flat", "hashnb", "mih", "hnsw", "ivf", "multihash"}
    for r in rows:
        assert r["qps"] > 0 and r["bytes_per_code"] > 0
        if r["index"] in ("flat", "mih", "hashnb"):
            assert r["recall"] == 1.0                 # exact indexes
        else:
            assert 0.0 <= r["recall"] <= 1.0
    flat = [r for r in rows if r["index"] == "flat"]
    for r in flat:     # serialized IndexBinaryFlat: the packed codes + a small header
        assert 0 <= r["bytes"] - r["n"] * math.ceil(r["bits"] / 8) < 200
    assert "provenance" in res
