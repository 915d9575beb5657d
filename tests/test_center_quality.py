"""Codebook constructions and coding-theory bounds, checked against brute force.

Oracles: Hamming-ball volumes and the bounds by enumerating all 2^K codes (K <= 10); the
best achievable minimum distance by exhaustive search over all C-word codes (tiny K, C);
the Gilbert-Varshamov guarantee by the greedy lexicographic code it is proved with.
"""
import itertools

import numpy as np
import pytest

from hashnb.centers import (balanced_random_centers, bernoulli_centers, center_kinds,
                            center_report, csq_centers, gilbert_varshamov_distance,
                            hadamard_centers, hamming_ball_volume, hamming_bound_distance,
                            make_centers, max_distance_centers, plotkin_distance)


def _all_codes(k):
    return np.array(list(itertools.product([-1.0, 1.0], repeat=k)), dtype=np.float32)


def _dist(a, b):
    return int((np.asarray(a) != np.asarray(b)).sum())


def _bf_volume(k, r):
    weights = np.array([bin(j).count("1") for j in range(2 ** k)])
    return int((weights <= r).sum())


def _bf_largest(k, ok):
    """Largest d in [1, K] with ok(d) true (the bounds' definitions), by scanning."""
    return max(d for d in range(1, k + 1) if ok(d))


def _exact_best_min_distance(c, k):
    """Max over all C-word codes of K bits of the minimum distance (first word fixed to 0,
    which loses nothing: translating a code by XOR keeps all its distances)."""
    codes = _all_codes(k)
    d = np.rint((k - codes @ codes.T) / 2).astype(int)
    zero = len(codes) - 1  # the all +1 row plays the role of 0
    others = [i for i in range(len(codes)) if i != zero]
    combos = np.array(list(itertools.combinations(others, c - 1)))
    combos = np.concatenate([np.full((len(combos), 1), zero), combos], axis=1)
    mins = np.full(len(combos), k + 1)
    for i, j in itertools.combinations(range(c), 2):
        mins = np.minimum(mins, d[combos[:, i], combos[:, j]])
    return int(mins.max())


def _lexicode_size(k, d):
    """Size of the greedy lexicographic code with minimum distance d (the GV construction)."""
    chosen = []
    for j in range(2 ** k):
        if all(bin(j ^ c).count("1") >= d for c in chosen):
            chosen.append(j)
    return len(chosen)


# --------------------------------------------------------------------------- bounds
@pytest.mark.parametrize("k", range(1, 11))
def test_ball_volume_matches_enumeration(k):
    for r in range(-1, k + 2):
        assert hamming_ball_volume(k, r) == _bf_volume(k, r)


@pytest.mark.parametrize("k", [3, 5, 8, 10])
def test_bounds_match_their_definitions_by_enumeration(k):
    for c in sorted({2, 3, 4, 5, 7, 10, 16, 2 ** (k - 1), 2 ** k}):
        if c > 2 ** k:
            continue
        gv = _bf_largest(k, lambda d: c * _bf_volume(k, d - 1) <= 2 ** k)
        hb = _bf_largest(k, lambda d: c * _bf_volume(k, (d - 1) // 2) <= 2 ** k)
        assert gilbert_varshamov_distance(c, k) == gv
        assert hamming_bound_distance(c, k) == hb
        assert gv <= hb


@pytest.mark.parametrize("k", [3, 4, 5, 6, 7, 8])
def test_gv_distance_is_reached_by_the_greedy_lexicode(k):
    for c in (2, 3, 5, 8, 12):
        if c > 2 ** k:
            continue
        d = gilbert_varshamov_distance(c, k)
        assert _lexicode_size(k, d) >= c


@pytest.mark.parametrize("k,c", [(3, 3), (4, 3), (4, 5), (5, 3), (5, 4), (5, 5), (6, 3),
                                 (6, 4), (4, 8), (3, 5)])
def test_true_optimum_lies_between_the_bounds(k, c):
    best = _exact_best_min_distance(c, k)
    assert gilbert_varshamov_distance(c, k) <= best
    assert best <= hamming_bound_distance(c, k)
    assert best <= plotkin_distance(c, k)


def test_plotkin_bound_values_and_mean_bound():
    assert plotkin_distance(2, 16) == 16
    assert plotkin_distance(10, 16) == 8          # 16 * 25 / 45 = 8.9
    assert plotkin_distance(16, 16) == 8          # Hadamard rows reach it
    assert center_report(hadamard_centers(16, 16))["min"] == plotkin_distance(16, 16)
    # the averaging argument bounds the mean of any code, e.g. random ones
    for c, k in [(3, 8), (10, 16), (7, 9)]:
        rep = center_report(bernoulli_centers(c, k, seed=1))
        limit = k * (c // 2) * ((c + 1) // 2) / (c * (c - 1) / 2)
        assert rep["mean"] <= limit + 1e-9


def test_bounds_ordered_for_large_codes():
    for c in (2, 10, 21, 80, 100, 1000):
        for k in (8, 16, 32, 64, 128):
            if c > 2 ** k:
                continue
            gv = gilbert_varshamov_distance(c, k)
            assert 1 <= gv <= min(hamming_bound_distance(c, k), plotkin_distance(c, k)) <= k


def test_impossible_sizes_are_clear_errors():
    for f in (gilbert_varshamov_distance, hamming_bound_distance, plotkin_distance):
        with pytest.raises(ValueError, match="distinct codes"):
            f(17, 4)
    with pytest.raises(ValueError, match="distinct codes"):
        max_distance_centers(9, 3)
    with pytest.raises(ValueError, match="distinct codes"):
        bernoulli_centers(9, 3)


# --------------------------------------------------------------------------- constructions
@pytest.mark.parametrize("c,k", [(4, 4), (10, 8), (10, 16), (21, 12), (100, 16), (30, 10)])
def test_max_distance_reaches_gv_with_all_candidates(c, k):
    centers = max_distance_centers(c, k, seed=0)
    assert centers.shape == (c, k) and centers.dtype == np.float32
    assert set(np.unique(centers)) <= {-1.0, 1.0}
    rep = center_report(centers)
    assert rep["min"] >= rep["gv_bound"] == gilbert_varshamov_distance(c, k)
    assert rep["min"] <= min(rep["hamming_bound"], rep["plotkin_bound"])


@pytest.mark.parametrize("c,k", [(10, 32), (21, 32), (100, 64), (10, 64)])
def test_max_distance_with_random_candidates_reaches_gv(c, k):
    rep = center_report(max_distance_centers(c, k, seed=0))
    assert rep["min"] >= rep["gv_bound"]


def test_max_distance_is_seeded_and_beats_iid_codes():
    a = max_distance_centers(20, 16, seed=1)
    np.testing.assert_array_equal(a, max_distance_centers(20, 16, seed=1))
    assert not np.array_equal(a, max_distance_centers(20, 16, seed=2))
    b = max_distance_centers(20, 32, seed=1)
    np.testing.assert_array_equal(b, max_distance_centers(20, 32, seed=1))
    assert not np.array_equal(b, max_distance_centers(20, 32, seed=2))
    for c, k in [(100, 16), (10, 16), (100, 64)]:
        md = center_report(max_distance_centers(c, k, seed=0))["min"]
        iid = center_report(bernoulli_centers(c, k, seed=0))["min"]
        assert md > iid


def test_max_distance_candidate_pool_errors():
    with pytest.raises(ValueError, match="n_candidates"):
        max_distance_centers(10, 32, n_candidates=5)


def test_bernoulli_centers_iid_seeded_distinct():
    a = bernoulli_centers(50, 24, seed=3)
    np.testing.assert_array_equal(a, bernoulli_centers(50, 24, seed=3))
    assert not np.array_equal(a, bernoulli_centers(50, 24, seed=4))
    assert a.dtype == np.float32 and set(np.unique(a)) == {-1.0, 1.0}
    assert len(np.unique((a == 1).sum(1))) > 1          # not balanced like CSQ's codes
    big = bernoulli_centers(2000, 64, seed=0)
    assert abs(big.mean()) < 0.01                        # fair coins
    assert abs(center_report(big)["mean"] - 32) < 0.1    # expected distance K/2
    small = bernoulli_centers(16, 4, seed=0)             # all 16 codes must be distinct
    assert len({r.tobytes() for r in small}) == 16


# --------------------------------------------------------------------------- report
def test_report_matches_brute_force_pairwise_distances():
    for centers in (bernoulli_centers(7, 9, seed=5), max_distance_centers(12, 10, seed=0),
                    hadamard_centers(20, 16)):
        c = len(centers)
        d = [_dist(centers[i], centers[j]) for i in range(c) for j in range(c) if i != j]
        rep = center_report(centers)
        assert rep["classes"] == c and rep["bits"] == centers.shape[1]
        assert rep["min"] == min(d) and rep["max"] == max(d)
        assert rep["mean"] == pytest.approx(np.mean(d))
        k = centers.shape[1]
        assert rep["gv_bound"] == gilbert_varshamov_distance(c, k)
        assert rep["hamming_bound"] == hamming_bound_distance(c, k)
        assert rep["plotkin_bound"] == plotkin_distance(c, k)


def test_report_single_center_and_oversized_codebooks():
    rep = center_report(np.ones((1, 8), dtype=np.float32))
    assert rep["min"] is None and rep["mean"] is None and rep["gv_bound"] == 8
    rep = center_report(np.ones((5, 2), dtype=np.float32))  # 5 > 2^2 rows: duplicates
    assert rep["min"] == 0 and rep["gv_bound"] is None and rep["hamming_bound"] is None


# --------------------------------------------------------------------------- dispatcher
def test_make_centers_dispatches():
    assert center_kinds() == ["hadamard", "random", "bernoulli", "max-distance", "csq"]
    np.testing.assert_array_equal(make_centers("hadamard", 10, 16), hadamard_centers(10, 16))
    np.testing.assert_array_equal(make_centers("csq", 10, 12, seed=2), csq_centers(10, 12, seed=2))
    np.testing.assert_array_equal(make_centers("random", 10, 16, seed=2),
                                  balanced_random_centers(10, 16, seed=2))
    np.testing.assert_array_equal(make_centers("bernoulli", 10, 16, seed=2),
                                  bernoulli_centers(10, 16, seed=2))
    np.testing.assert_array_equal(make_centers("Max_Distance", 10, 16, seed=2),
                                  max_distance_centers(10, 16, seed=2))
    np.testing.assert_array_equal(make_centers("max-distance", 10, 32, seed=2, n_candidates=500),
                                  max_distance_centers(10, 32, seed=2, n_candidates=500))
    for kind in center_kinds():
        c = make_centers(kind, 10, 16, seed=0)
        assert c.shape == (10, 16) and set(np.unique(c)) <= {-1.0, 1.0}


def test_make_centers_errors():
    with pytest.raises(ValueError, match="unknown center kind 'orthogonal'"):
        make_centers("orthogonal", 10, 16)
    with pytest.raises(ValueError, match="choose one of hadamard"):
        make_centers("nope", 10, 16)
    with pytest.raises(ValueError, match="2K = 32"):
        make_centers("hadamard", 33, 16)
    with pytest.raises(ValueError, match="power-of-2"):
        make_centers("hadamard", 10, 12)
    with pytest.raises(ValueError, match="distinct codes"):
        make_centers("bernoulli", 40, 5)
    with pytest.raises(ValueError, match="distinct codes"):
        make_centers("csq", 40, 5)
