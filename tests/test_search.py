"""Tests for hashnb.search: packing, exact k-NN and radius search against brute force, and
identical results from the FAISS and torch backends (ties broken by database index)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hashnb import search as S

BACKENDS = ["torch"] + (["faiss"] if S.faiss_available() else [])


def codes(rng, n, bits):
    return rng.choice([-1.0, 1.0], size=(n, bits)).astype(np.float32)


def clustered(rng, n, bits, C=5, p=0.15):
    centers = rng.choice([-1.0, 1.0], size=(C, bits))
    y = rng.integers(0, C, n)
    flip = rng.random((n, bits)) < p
    return np.where(flip, -centers[y], centers[y]).astype(np.float32)


def brute_knn(q, db, k):
    dist = ((q.shape[1] - q.astype(np.float64) @ db.T) / 2).round().astype(np.int64)
    order = np.lexsort((np.broadcast_to(np.arange(len(db)), dist.shape), dist), axis=1)[:, :k]
    return np.take_along_axis(dist, order, 1), order


def brute_radius(q, db, r):
    dist = ((q.shape[1] - q.astype(np.float64) @ db.T) / 2).round().astype(np.int64)
    out = []
    for row in dist:
        idx = np.flatnonzero(row <= r)
        idx = idx[np.lexsort((idx, row[idx]))]
        out.append((idx, row[idx]))
    return out


# ---------------------------------------------------------------------------- packing
@pytest.mark.parametrize("bits", [1, 4, 8, 12, 16, 64, 65])
def test_pack_unpack_round_trip(bits):
    rng = np.random.default_rng(bits)
    c = codes(rng, 17, bits)
    p = S.pack_codes(c)
    assert p.dtype == np.uint8 and p.shape == (17, -(-bits // 8))
    np.testing.assert_array_equal(p, np.packbits(c > 0, axis=1))
    np.testing.assert_array_equal(S.unpack_codes(p, bits), c)
    assert S.unpack_codes(p, bits).dtype == np.float32
    if bits % 8:                                         # padding bits are zero
        pad = np.unpackbits(p, axis=1)[:, bits:]
        assert not pad.any()
    torch_p = S.pack_codes(torch.as_tensor(c))
    np.testing.assert_array_equal(torch_p, p)


def test_pack_layout_plus_one_is_bit_one():
    c = np.array([[1, -1, -1, -1, -1, -1, -1, 1, 1, 1]], dtype=np.float32)
    np.testing.assert_array_equal(S.pack_codes(c), [[0b10000001, 0b11000000]])


# -------------------------------------------------------------------------------- k-NN
@pytest.mark.parametrize("bits", [4, 8, 12, 16, 64])
@pytest.mark.parametrize("backend", BACKENDS)
def test_knn_equals_brute_force_with_ties(bits, backend):
    rng = np.random.default_rng(bits)
    db = clustered(rng, 900, bits)                       # many ties at every bit length
    q = np.concatenate([clustered(rng, 20, bits), db[:5]])   # exact duplicates too
    for k in (1, 10, 65, 900):
        d, i = S.knn_search(q, db, k, backend=backend)
        bd, bi = brute_knn(q, db, k)
        assert d.dtype == np.int32 and i.dtype == np.int64 and d.shape == (25, k)
        np.testing.assert_array_equal(d, bd)
        np.testing.assert_array_equal(i, bi)


@pytest.mark.parametrize("n", [1, 7, 63, 64, 65, 130, 6500])
def test_knn_database_sizes_and_chunks(n):
    rng = np.random.default_rng(n)
    bits = 8
    db, q = codes(rng, n, bits), codes(rng, 13, bits)
    for k in sorted({1, min(n, 5), min(n, 100), n}):
        bd, bi = brute_knn(q, db, k)
        for backend in BACKENDS:
            for cs in (None, 1, 4):
                d, i = S.knn_search(q, db, k, backend=backend, chunk_size=cs)
                np.testing.assert_array_equal(d, bd)
                np.testing.assert_array_equal(i, bi)


def test_torch_paths_agree(monkeypatch):
    """The bf16 path, the float32 path (CPUs without bf16) and the topk path (CUDA)."""
    rng = np.random.default_rng(0)
    for bits in (8, 64, 130):
        db, q = clustered(rng, 700, bits), clustered(rng, 15, bits)
        bd, bi = brute_knn(q, db, 40)
        variants = {}
        for bf16 in (True, False):
            monkeypatch.setattr(S, "_native_bf16", lambda bf16=bf16: bf16)
            variants[f"bf16={bf16}"] = S._TorchDB(torch.as_tensor(db))
        topk = S._TorchDB(torch.as_tensor(db))
        topk.blocked = False
        variants["topk"] = topk
        for name, tdb in variants.items():
            d, i = tdb.knn(torch.as_tensor(q), 40)
            np.testing.assert_array_equal(d, bd, err_msg=name)
            np.testing.assert_array_equal(i, bi, err_msg=name)
        assert variants["bf16=True"].dtype == (torch.bfloat16 if bits <= 127 else torch.float32)


# ------------------------------------------------------------------------------ radius
@pytest.mark.parametrize("bits", [4, 12, 64])
@pytest.mark.parametrize("backend", BACKENDS)
def test_radius_search_equals_brute_force(bits, backend):
    rng = np.random.default_rng(bits + 1)
    db = clustered(rng, 500, bits)
    q = np.concatenate([clustered(rng, 10, bits), db[:3]])
    for r in (0, 1, 2, bits // 3, bits):
        got = S.radius_search(q, db, r, backend=backend, chunk_size=4)
        want = brute_radius(q, db, r)
        assert len(got) == len(q)
        for (gi, gd), (wi, wd) in zip(got, want):
            assert gi.dtype == np.int64 and gd.dtype == np.int32
            np.testing.assert_array_equal(gi, wi)
            np.testing.assert_array_equal(gd, wd)


def test_radius_is_inclusive():
    db = np.ones((3, 8), dtype=np.float32)
    db[1, :2] = -1
    db[2, :3] = -1                                       # distances 0, 2, 3
    for backend in BACKENDS:
        (idx, dist), = S.radius_search(db[:1], db, 2, backend=backend)
        assert idx.tolist() == [0, 1] and dist.tolist() == [0, 2]


# ------------------------------------------------------------------------- the index
@pytest.mark.parametrize("backend", BACKENDS)
def test_hamming_index(backend):
    rng = np.random.default_rng(3)
    a, b = codes(rng, 40, 16), codes(rng, 25, 16)
    index = S.HammingIndex(16, backend=backend)
    index.add(a)
    index.add(torch.as_tensor(b))                        # ids continue after the first batch
    assert len(index) == index.ntotal == 65
    db = np.concatenate([a, b])
    q = codes(rng, 6, 16)
    d, i = index.search(q, 9)
    bd, bi = brute_knn(q, db, 9)
    np.testing.assert_array_equal(d, bd)
    np.testing.assert_array_equal(i, bi)
    hits = index.range_search(q, 5)
    for (gi, gd), (wi, wd) in zip(hits, brute_radius(q, db, 5)):
        np.testing.assert_array_equal(gi, wi)
        np.testing.assert_array_equal(gd, wd)
    assert "ntotal=65" in repr(index)
    index.reset()
    with pytest.raises(ValueError, match="empty"):
        index.search(q, 1)


def test_auto_backend(monkeypatch):
    assert S.HammingIndex(8).backend == ("faiss" if S.faiss_available() else "torch")
    monkeypatch.setattr(S, "faiss_available", lambda: False)
    assert S.HammingIndex(8).backend == "torch"


def test_bad_inputs():
    rng = np.random.default_rng(4)
    db, q = codes(rng, 10, 8), codes(rng, 3, 8)
    with pytest.raises(ValueError, match="-1 and \\+1"):
        S.knn_search(q, np.zeros((10, 8)), 1)
    with pytest.raises(ValueError, match="-1 and \\+1"):
        S.pack_codes(db * 0.5)
    with pytest.raises(ValueError, match="2-D"):
        S.knn_search(q[0], db, 1)
    with pytest.raises(ValueError, match="bits"):
        S.knn_search(codes(rng, 3, 6), db, 1)
    for k in (0, -1, 1.5):
        with pytest.raises(ValueError, match="k must be"):
            S.knn_search(q, db, k)
    with pytest.raises(ValueError, match="exceeds"):
        S.knn_search(q, db, 11)
    with pytest.raises(ValueError, match="radius"):
        S.radius_search(q, db, -1)
    with pytest.raises(ValueError, match="backend"):
        S.knn_search(q, db, 1, backend="annoy")
    with pytest.raises(ValueError, match="bytes"):
        S.unpack_codes(S.pack_codes(db), 16)
    with pytest.raises(ValueError, match="uint8"):
        S.unpack_codes(S.pack_codes(db).astype(np.int64), 8)
    index = S.HammingIndex(8, backend="torch")
    with pytest.raises(ValueError, match="8-bit"):
        index.add(codes(rng, 4, 6))
    with pytest.raises(ValueError, match="chunk_size"):
        S.knn_search(q, db, 1, backend="torch", chunk_size=0)
