"""Tests for hashnb.metrics: oracles (scikit-learn, slow reference loops), tie handling,
the HashNet normalisation and regressions for DeepHash-pytorch's evaluation bugs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from hashnb import metrics as M


# ------------------------------------------------------------------------------- helpers
@pytest.fixture(params=["numba", "torch"])
def counts_path(request, monkeypatch):
    """Run a test through both implementations of the per-distance counts."""
    if request.param == "numba":
        if M.numba is None:
            pytest.skip("numba not installed")
        monkeypatch.setenv("HASHNB_NUMBA", "1")
    else:
        monkeypatch.setenv("HASHNB_NUMBA", "0")
    return request.param


def codes(rng, n, bits):
    return rng.choice([-1.0, 1.0], size=(n, bits)).astype(np.float32)


def onehot(ids, C):
    return np.eye(C, dtype=np.float32)[ids]


def multihot(rng, n, C, p=0.3):
    return (rng.random((n, C)) < p).astype(np.float32)


def hamming(q, db):
    return ((q.shape[1] - q @ db.T) / 2).round().astype(np.int64)


def slow_ap_index(dist_row, rel_row, R):
    """Classic AP@R over a (distance, database index) ranking, HashNet normalisation."""
    order = sorted(range(len(dist_row)), key=lambda j: (dist_row[j], j))[:R]
    hits, total = 0, 0.0
    for pos, j in enumerate(order, start=1):
        if rel_row[j]:
            hits += 1
            total += hits / pos
    return total / hits if hits else 0.0


def slow_ap_average(dist_row, rel_row, R):
    """Tie-aware AP@R written directly from its definition, group by group."""
    groups = {}
    for d, r in zip(dist_row, rel_row):
        n_d, r_d = groups.get(int(d), (0, 0))
        groups[int(d)] = (n_d + 1, r_d + int(bool(r)))
    seen, seen_rel, num, den = 0, 0.0, 0.0, 0.0
    for d in sorted(groups):
        n_d, r_d = groups[d]
        if seen >= R:
            break
        f = min(1.0, (R - seen) / n_d)           # fraction of the group inside the top R
        eff = f * r_d
        seen += f * n_d
        seen_rel += eff
        num += eff * (seen_rel / seen)
        den += eff
    return num / den if den > 0 else 0.0


def slow_precision_at_k(dist_row, rel_row, k):
    return slow_precision_rel_in_top(dist_row, rel_row, k) / k


def slow_precision_rel_in_top(dist_row, rel_row, k):
    seen, rel = 0, 0.0
    for d in sorted(set(dist_row.tolist())):
        members = [j for j in range(len(dist_row)) if dist_row[j] == d]
        f = min(1.0, max(0, k - seen) / len(members))
        rel += f * sum(bool(rel_row[j]) for j in members)
        seen += len(members)
    return rel


# ------------------------------------------------------------------------- oracle tests
@pytest.mark.parametrize("bits", [4, 6, 8, 16])
@pytest.mark.parametrize("labels", ["single", "multi"])
def test_average_ties_equals_sklearn_at_R_all(counts_path, bits, labels):
    rng = np.random.default_rng(bits)
    nq, n = 25, 300
    q, db = codes(rng, nq, bits), codes(rng, n, bits)
    if labels == "single":
        ql, dbl = onehot(rng.integers(0, 4, nq), 4), onehot(rng.integers(0, 4, n), 4)
    else:
        ql, dbl = multihot(rng, nq, 5), multihot(rng, n, 5)
    ap = M.mean_average_precision(q, db, ql, dbl, return_per_query=True).numpy()
    dist, rel = hamming(q, db), ql @ dbl.T > 0
    for i in range(nq):
        expected = average_precision_score(rel[i], -dist[i]) if rel[i].any() else 0.0
        assert ap[i] == pytest.approx(expected, abs=1e-12)
    assert M.mean_average_precision(q, db, ql, dbl) == pytest.approx(ap.mean(), abs=1e-15)


def test_heavy_ties_4_bits_many_items(counts_path):
    rng = np.random.default_rng(1)
    q, db = codes(rng, 10, 4), codes(rng, 2000, 4)        # 5 distinct distances
    ql, dbl = onehot(rng.integers(0, 3, 10), 3), onehot(rng.integers(0, 3, 2000), 3)
    ap = M.mean_average_precision(q, db, ql, dbl, return_per_query=True).numpy()
    dist, rel = hamming(q, db), ql @ dbl.T > 0
    expected = [average_precision_score(rel[i], -dist[i]) for i in range(10)]
    np.testing.assert_allclose(ap, expected, atol=1e-12)


@pytest.mark.parametrize("bits", [6, 70])
@pytest.mark.parametrize("R", [None, 1, 7, 50, 120])
def test_index_ties_equals_slow_loop(R, bits, counts_path):
    # both paths: the numba one-pass kernel (no sort) and the torch stable sort
    rng = np.random.default_rng(2)
    q, db = codes(rng, 12, bits), codes(rng, 120, bits)
    ql, dbl = multihot(rng, 12, 4), multihot(rng, 120, 4)
    ap = M.mean_average_precision(q, db, ql, dbl, R=R, ties="index", return_per_query=True)
    dist, rel = hamming(q, db), ql @ dbl.T > 0
    expected = [slow_ap_index(dist[i], rel[i], R or 120) for i in range(12)]
    np.testing.assert_allclose(ap.numpy(), expected, atol=1e-12)


@pytest.mark.parametrize("R", [1, 5, 33, 100, 199])
def test_average_ties_at_R_below_n_equals_slow_formula(counts_path, R):
    rng = np.random.default_rng(3)
    q, db = codes(rng, 15, 8), codes(rng, 200, 8)
    ql, dbl = onehot(rng.integers(0, 3, 15), 3), onehot(rng.integers(0, 3, 200), 3)
    ap = M.mean_average_precision(q, db, ql, dbl, R=R, return_per_query=True).numpy()
    dist, rel = hamming(q, db), ql @ dbl.T > 0
    expected = [slow_ap_average(dist[i], rel[i], R) for i in range(15)]
    np.testing.assert_allclose(ap, expected, atol=1e-12)


def _tie_free(rng, bits=12):
    """One query (all +1) and bits+1 items at distances 0..bits, in shuffled order."""
    q = np.ones((1, bits), dtype=np.float32)
    db = np.ones((bits + 1, bits), dtype=np.float32)
    for i in range(bits + 1):
        db[i, :i] = -1
    perm = rng.permutation(bits + 1)
    return q, db[perm]


@pytest.mark.parametrize("R", [1, 3, 8, None])
def test_tie_free_average_equals_index_and_slow_loop(counts_path, R):
    rng = np.random.default_rng(4)
    q, db = _tie_free(rng)
    dbl = onehot(rng.integers(0, 2, len(db)), 2)
    ql = onehot([0], 2)
    a = M.mean_average_precision(q, db, ql, dbl, R=R)
    b = M.mean_average_precision(q, db, ql, dbl, R=R, ties="index")
    dist, rel = hamming(q, db), ql @ dbl.T > 0
    assert a == pytest.approx(b, abs=1e-12)
    assert a == pytest.approx(slow_ap_index(dist[0], rel[0], R or len(db)), abs=1e-12)


# ----------------------------------------------------------------------- tie conventions
def test_average_ties_invariant_to_database_order(counts_path):
    rng = np.random.default_rng(5)
    q, db = codes(rng, 20, 8), codes(rng, 400, 8)
    ql, dbl = onehot(rng.integers(0, 5, 20), 5), onehot(rng.integers(0, 5, 400), 5)
    perm = rng.permutation(400)
    for R in (None, 50):
        a = M.mean_average_precision(q, db, ql, dbl, R=R, return_per_query=True)
        b = M.mean_average_precision(q, db[perm], ql, dbl[perm], R=R, return_per_query=True)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_index_ties_depend_on_database_order():
    # two items tied at distance 0, one relevant: relevant first -> AP 1, last -> AP 1/2
    q = np.ones((1, 4), dtype=np.float32)
    db = np.ones((2, 4), dtype=np.float32)
    ql = onehot([0], 2)
    rel_first, rel_last = onehot([0, 1], 2), onehot([1, 0], 2)
    assert M.mean_average_precision(q, db, ql, rel_first, ties="index") == pytest.approx(1.0)
    assert M.mean_average_precision(q, db, ql, rel_last, ties="index") == pytest.approx(0.5)
    # the tie-aware value is the same for both orders: precision 1/2 at the group's end
    assert M.mean_average_precision(q, db, ql, rel_first) == pytest.approx(0.5)
    assert M.mean_average_precision(q, db, ql, rel_last) == pytest.approx(0.5)


def test_peers_tie_sensitivity_reproduced(counts_path):
    """peers.md §3: at 8 bits the order of tied items alone moves mAP a lot. With a
    class-sorted database (DeepHash-pytorch's order) index tie-breaking favours queries
    of the first class and penalises those of the last; the tie-aware value does not move."""
    rng = np.random.default_rng(0)
    bits, C = 8, 10
    centers = rng.choice([-1.0, 1.0], size=(C, bits))

    def sample(y):
        flip = rng.random((len(y), bits)) < 0.25
        return np.where(flip, -centers[y], centers[y]).astype(np.float32)

    ydb = np.sort(rng.integers(0, C, 1500))              # database ordered by class
    db, dbl = sample(ydb), onehot(ydb, C)
    rev = np.arange(len(ydb))[::-1].copy()               # ... and in reverse class order
    q0 = sample(np.zeros(40, dtype=int))                 # queries of class 0
    ql = onehot(np.zeros(40, dtype=int), C)
    avg = M.mean_average_precision(q0, db, ql, dbl)
    first = M.mean_average_precision(q0, db, ql, dbl, ties="index")      # relevant first
    last = M.mean_average_precision(q0, db[rev], ql, dbl[rev], ties="index")  # ... last
    assert M.mean_average_precision(q0, db[rev], ql, dbl[rev]) == pytest.approx(avg, abs=1e-12)
    assert first > avg + 0.05 and last < avg - 0.02
    # mixed queries on the class-sorted database: index ties still differ from tie-aware
    yq = rng.integers(0, C, 60)
    q, qlm = sample(yq), onehot(yq, C)
    assert abs(M.mean_average_precision(q, db, qlm, dbl, ties="index")
               - M.mean_average_precision(q, db, qlm, dbl)) > 0.005


# --------------------------------------------------------------- HashNet normalisation
@pytest.mark.parametrize("ties", ["average", "index"])
def test_R_all_keeps_the_last_database_item(counts_path, ties):
    """DeepHash-pytorch's topk=-1 slices gnd[0:-1] and drops the last item; here the last
    item is the only relevant one (and the nearest), so that bug would give 0."""
    q = np.ones((1, 8), dtype=np.float32)
    db = -np.ones((5, 8), dtype=np.float32)
    db[:4, :3] = 1                                       # distance 5 for items 0..3
    db[4] = 1                                            # distance 0 for the last item
    ql = onehot([0], 2)
    dbl = onehot([1, 1, 1, 1, 0], 2)
    assert M.mean_average_precision(q, db, ql, dbl, ties=ties) == pytest.approx(1.0)
    assert M.mean_average_precision(q, db, ql, dbl, R=5, ties=ties) == pytest.approx(1.0)
    # R beyond the database is clipped to it
    assert M.mean_average_precision(q, db, ql, dbl, R=10**6, ties=ties) == pytest.approx(1.0)


def test_normalised_by_relevant_inside_top_R(counts_path):
    # ranking: rel, non, non, rel; at R=2 only one relevant item is inside: AP@2 = 1
    q = np.ones((1, 4), dtype=np.float32)
    db = np.ones((4, 4), dtype=np.float32)
    for i in range(4):
        db[i, :i] = -1
    ql, dbl = onehot([0], 2), onehot([0, 1, 1, 0], 2)
    assert M.mean_average_precision(q, db, ql, dbl, R=2) == pytest.approx(1.0)
    assert M.mean_average_precision(q, db, ql, dbl) == pytest.approx((1 + 2 / 4) / 2)


def test_query_without_relevant_item_scores_zero(counts_path):
    rng = np.random.default_rng(6)
    q, db = codes(rng, 3, 8), codes(rng, 50, 8)
    ql = onehot([0, 1, 2], 4)
    dbl = onehot(rng.integers(0, 2, 50), 4)              # nobody has class 2
    ap = M.mean_average_precision(q, db, ql, dbl, return_per_query=True)
    assert ap[2] == 0.0 and ap[0] > 0 and ap[1] > 0
    assert M.mean_average_precision(q, db, ql, dbl) == pytest.approx(float(ap.sum()) / 3)
    # relevant items exist but none inside the top R
    ap_index = M.mean_average_precision(q, db, ql, dbl, ties="index", return_per_query=True)
    assert ap_index[2] == 0.0


def test_multilabel_relevance_is_any_shared_label(counts_path):
    q = np.ones((1, 4), dtype=np.float32)
    db = np.ones((3, 4), dtype=np.float32)
    db[1, :1] = -1
    db[2, :2] = -1                                       # distances 0, 1, 2
    ql = np.array([[1, 1, 0]], dtype=np.float32)
    dbl = np.array([[0, 0, 1], [0, 1, 1], [1, 0, 0]], dtype=np.float32)
    # relevance 0, 1, 1 -> AP = (1/2 + 2/3) / 2
    assert M.mean_average_precision(q, db, ql, dbl) == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_chunk_size_does_not_change_results(monkeypatch):
    monkeypatch.setenv("HASHNB_NUMBA", "0")                # the chunked torch path
    rng = np.random.default_rng(7)
    q, db = codes(rng, 23, 10), codes(rng, 150, 10)
    ql, dbl = multihot(rng, 23, 4), multihot(rng, 150, 4)
    for ties, R in (("average", None), ("average", 40), ("index", None), ("index", 40)):
        ref = M.mean_average_precision(q, db, ql, dbl, R=R, ties=ties, return_per_query=True)
        for cs in (1, 4, 23, 1000):
            got = M.mean_average_precision(q, db, ql, dbl, R=R, ties=ties, chunk_size=cs,
                                           return_per_query=True)
            torch.testing.assert_close(got, ref, rtol=0, atol=0)


@pytest.mark.skipif(M.numba is None, reason="numba not installed")
@pytest.mark.parametrize("bits,C", [(16, 10), (64, 64), (70, 3), (12, 70)])
def test_numba_and_torch_counts_agree(bits, C):
    rng = np.random.default_rng(bits + C)
    q, db = codes(rng, 9, bits), codes(rng, 103, bits)
    ql, dbl = multihot(rng, 9, C, 0.1), multihot(rng, 103, C, 0.1)
    tq, tdb, tql, tdbl = (torch.as_tensor(a) for a in (q, db, ql, dbl))
    n1, r1 = M._count_tables_numba(tq, tdb, tql, tdbl)
    n2, r2 = M._count_tables_torch(tq, tdb, tql, tdbl, 4)
    assert torch.equal(n1, n2) and torch.equal(r1, r2)
    assert torch.equal(n1.sum(1), torch.full((9,), 103.0, dtype=torch.float64))


# ------------------------------------------------------------------- other metrics
@pytest.mark.parametrize("k", [1, 10, 37, 200])
def test_precision_at_k(counts_path, k):
    rng = np.random.default_rng(8)
    q, db = codes(rng, 10, 6), codes(rng, 200, 6)
    ql, dbl = onehot(rng.integers(0, 3, 10), 3), onehot(rng.integers(0, 3, 200), 3)
    dist, rel = hamming(q, db), ql @ dbl.T > 0
    got = M.precision_at_k(q, db, ql, dbl, k, return_per_query=True).numpy()
    np.testing.assert_allclose(got, [slow_precision_at_k(dist[i], rel[i], k)
                                     for i in range(10)], atol=1e-12)
    got_index = M.precision_at_k(q, db, ql, dbl, k, ties="index", return_per_query=True)
    expected = [sum(rel[i][j] for j in sorted(range(200), key=lambda j: (dist[i][j], j))[:k])
                / k for i in range(10)]
    np.testing.assert_allclose(got_index.numpy(), expected, atol=1e-12)


def test_precision_at_k_expected_over_random_tie_orders(counts_path):
    # the expected precision equals the mean over every order of the tied items
    q = np.ones((1, 4), dtype=np.float32)
    db = np.ones((4, 4), dtype=np.float32)
    db[3, :2] = -1                                       # 3 items tied at 0, one at 2
    ql, dbl = onehot([0], 2), onehot([0, 1, 1, 0], 2)
    assert M.precision_at_k(q, db, ql, dbl, 2) == pytest.approx((2 * 1 / 3) / 2)
    assert M.precision_at_k(q, db, ql, dbl, 10) == pytest.approx(2 / 4)   # k clipped to n


def test_precision_within_radius_and_pr_curve(counts_path):
    rng = np.random.default_rng(9)
    bits = 8
    q, db = codes(rng, 30, bits), codes(rng, 120, bits)
    ql, dbl = onehot(rng.integers(0, 3, 30), 3), onehot(rng.integers(0, 3, 120), 3)
    dist, rel = hamming(q, db), ql @ dbl.T > 0
    curve = M.precision_recall_curve(q, db, ql, dbl)
    assert curve["radius"].tolist() == list(range(bits + 1))
    for r in range(bits + 1):
        inside = dist <= r
        got = inside.sum(1)
        hit = (inside & rel).sum(1)
        prec = np.where(got > 0, hit / np.maximum(got, 1), 0.0)
        rec = np.where(rel.sum(1) > 0, hit / np.maximum(rel.sum(1), 1), 0.0)
        assert curve["precision"][r] == pytest.approx(prec.mean(), abs=1e-12)
        assert curve["recall"][r] == pytest.approx(rec.mean(), abs=1e-12)
        assert curve["retrieved"][r] == pytest.approx(got.mean(), abs=1e-12)
        assert M.precision_within_radius(q, db, ql, dbl, radius=r) == \
            pytest.approx(prec.mean(), abs=1e-12)
        if (got > 0).any():
            skip = M.precision_within_radius(q, db, ql, dbl, radius=r, empty="skip")
            assert skip == pytest.approx(prec[got > 0].mean(), abs=1e-12)
    assert curve["recall"][-1] == pytest.approx(1.0)


def test_radius_query_retrieving_nothing_scores_zero(counts_path):
    q = np.ones((2, 8), dtype=np.float32)
    q[1] = -1
    db = np.ones((3, 8), dtype=np.float32)               # all at distance 0 from query 0
    ql, dbl = onehot([0, 0], 2), onehot([0, 0, 1], 2)
    per = M.precision_within_radius(q, db, ql, dbl, radius=2, return_per_query=True)
    assert per[0] == pytest.approx(2 / 3) and per[1] == 0.0
    assert M.precision_within_radius(q, db, ql, dbl, radius=2) == pytest.approx(1 / 3)
    assert M.precision_within_radius(q, db, ql, dbl, radius=2, empty="skip") == \
        pytest.approx(2 / 3)


def test_evaluate_matches_the_individual_metrics(counts_path):
    rng = np.random.default_rng(10)
    q, db = codes(rng, 20, 12), codes(rng, 1500, 12)
    ql, dbl = onehot(rng.integers(0, 4, 20), 4), onehot(rng.integers(0, 4, 1500), 4)
    out = M.evaluate(q, db, ql, dbl)
    assert set(out) == {"map", "map@1000", "p@1000", "p@r2"}
    assert out["map"] == pytest.approx(M.mean_average_precision(q, db, ql, dbl), abs=1e-12)
    assert out["map@1000"] == pytest.approx(
        M.mean_average_precision(q, db, ql, dbl, R=1000), abs=1e-12)
    assert out["p@1000"] == pytest.approx(M.precision_at_k(q, db, ql, dbl, 1000), abs=1e-12)
    assert out["p@r2"] == pytest.approx(M.precision_within_radius(q, db, ql, dbl), abs=1e-12)
    assert M.evaluate(q, db, ql, dbl, R=100)["map"] == pytest.approx(
        M.mean_average_precision(q, db, ql, dbl, R=100), abs=1e-12)


def test_hamming_distance_and_tensor_inputs(counts_path):
    rng = np.random.default_rng(11)
    q, db = codes(rng, 5, 16), codes(rng, 40, 16)
    d = M.hamming_distance(q, db)
    assert d.dtype == torch.int64 and d.shape == (5, 40)
    np.testing.assert_array_equal(d.numpy(), (q[:, None, :] != db[None]).sum(-1))
    ql, dbl = onehot(rng.integers(0, 2, 5), 2), onehot(rng.integers(0, 2, 40), 2)
    a = M.mean_average_precision(q, db, ql, dbl)
    b = M.mean_average_precision(*(torch.as_tensor(x) for x in (q, db, ql, dbl)))
    assert a == b
    per = M.mean_average_precision(q, db, ql, dbl, return_per_query=True)
    assert per.dtype == torch.float64 and per.shape == (5,)
    assert M.map_at_r is M.mean_average_precision


# ------------------------------------------------------------------------ validation
def test_input_validation_errors():
    rng = np.random.default_rng(12)
    q, db = codes(rng, 3, 8), codes(rng, 10, 8)
    ql, dbl = onehot([0, 1, 0], 2), onehot(rng.integers(0, 2, 10), 2)
    mAP = M.mean_average_precision
    with pytest.raises(ValueError, match="bits"):
        mAP(q, codes(rng, 10, 6), ql, dbl)
    with pytest.raises(ValueError, match="-1 and \\+1"):
        mAP(np.zeros((3, 8)), db, ql, dbl)
    with pytest.raises(ValueError, match="-1 and \\+1"):
        mAP(q, db * 0.5, ql, dbl)
    with pytest.raises(ValueError, match="2-D"):
        mAP(q, db, np.array([0, 1, 0]), dbl)
    with pytest.raises(ValueError, match="2-D"):
        mAP(q[0], db, ql, dbl)
    with pytest.raises(ValueError, match="rows"):
        mAP(q, db, ql[:2], dbl)
    with pytest.raises(ValueError, match="classes"):
        mAP(q, db, onehot([0, 1, 2], 3), dbl)
    with pytest.raises(ValueError, match="non-negative"):
        mAP(q, db, -ql, dbl)
    for R in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match="R must be"):
            mAP(q, db, ql, dbl, R=R)
    with pytest.raises(ValueError, match="ties"):
        mAP(q, db, ql, dbl, ties="random")
    with pytest.raises(ValueError, match="chunk_size"):
        mAP(q, db, ql, dbl, chunk_size=0)
    with pytest.raises(ValueError, match="k must be"):
        M.precision_at_k(q, db, ql, dbl, 0)
    with pytest.raises(ValueError, match="radius"):
        M.precision_within_radius(q, db, ql, dbl, radius=-1)
    with pytest.raises(ValueError, match="empty"):
        M.precision_recall_curve(q, db, ql, dbl, empty="nan")
