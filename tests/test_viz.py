"""Tests for hashnb.viz (Agg backend; UMAP only in a small slow test)."""
from __future__ import annotations

import builtins
import importlib.util
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from hashnb import viz  # noqa: E402
from hashnb.utils import to_multihot  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _codes(n=60, bits=16, classes=3, seed=0, flip=0.15):
    """±1 codes clustered around one random center per class; labels as ids."""
    rng = np.random.default_rng(seed)
    centers = rng.choice([-1.0, 1.0], size=(classes, bits))
    y = rng.integers(0, classes, size=n)
    c = centers[y] * np.where(rng.random((n, bits)) < flip, -1.0, 1.0)
    return c.astype(np.float32), y


# ------------------------------------------------------------------ subsampling / embeddings
def test_subsample_indices_small_is_identity():
    assert np.array_equal(viz.subsample_indices(10, 20), np.arange(10))


def test_subsample_indices_seeded_sorted_unique():
    a = viz.subsample_indices(1000, 100, seed=3)
    b = viz.subsample_indices(1000, 100, seed=3)
    c = viz.subsample_indices(1000, 100, seed=4)
    assert a.dtype == np.int64 and len(a) == 100 and len(np.unique(a)) == 100
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.all(np.diff(a) > 0) and a.min() >= 0 and a.max() < 1000


def test_subsample_indices_stratified_keeps_proportions():
    y = np.repeat([0, 1, 2], [700, 250, 50])
    idx = viz.subsample_indices(1000, 100, labels=y, seed=0)
    assert len(idx) == 100
    assert np.bincount(y[idx], minlength=3).tolist() == [70, 25, 5]
    # multi-hot labels stratify by the first label, and rounding still sums to max_points
    idx2 = viz.subsample_indices(1000, 33, labels=to_multihot(y, 3), seed=0)
    counts = np.bincount(y[idx2], minlength=3)
    assert counts.sum() == 33 and counts[2] >= 1


def test_embed_pca_shapes_and_determinism():
    codes, y = _codes(n=300, bits=32)
    xy, idx = viz.embed_2d(codes, method="pca", max_points=100, seed=1, labels=y)
    xy2, idx2 = viz.embed_2d(torch.from_numpy(codes), method="pca", max_points=100, seed=1,
                             labels=y)
    assert xy.shape == (100, 2) and xy.dtype == np.float32
    assert idx.shape == (100,) and len(np.unique(idx)) == 100
    assert np.array_equal(idx, idx2) and np.array_equal(xy, xy2)
    # the embedding is of the returned rows: PCA of codes[idx] gives the same picture
    xy3, idx3 = viz.embed_2d(codes[idx], method="pca", max_points=1000)
    assert np.array_equal(idx3, np.arange(100)) and np.allclose(xy3, xy, atol=1e-5)


def test_embed_pca_separates_clusters():
    codes, y = _codes(n=200, bits=32, classes=2, flip=0.05)
    xy, idx = viz.embed_2d(codes, method="pca")
    assert np.array_equal(idx, np.arange(200))
    first = xy[:, 0]
    # the first principal axis splits the two classes
    m0, m1 = first[y == 0].mean(), first[y == 1].mean()
    assert abs(m0 - m1) > 3 * max(first[y == 0].std(), first[y == 1].std())


def test_embed_tsne_small():
    codes, y = _codes(n=80, bits=16)
    xy, idx = viz.embed_2d(codes, method="tsne", max_points=50, seed=0)
    assert xy.shape == (50, 2) and len(idx) == 50 and np.isfinite(xy).all()


def test_embed_bad_method_and_too_few_points():
    codes, _ = _codes(n=10)
    with pytest.raises(ValueError, match="unknown method"):
        viz.embed_2d(codes, method="mds")
    with pytest.raises(ValueError, match="at least 2"):
        viz.embed_2d(codes[:1], method="pca")


def test_embed_umap_missing_falls_back_to_tsne(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *a, **k):
        if name == "umap" or name.startswith("umap."):
            raise ImportError("No module named 'umap'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    codes, _ = _codes(n=40)
    with pytest.warns(UserWarning, match="t-SNE"):
        xy, idx = viz.embed_2d(codes, method="umap", seed=0)
    assert xy.shape == (40, 2)
    ref, _ = viz.embed_2d(codes, method="tsne", seed=0)
    assert np.allclose(xy, ref)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("umap") is None, reason="umap-learn not installed")
def test_embed_umap_small():
    codes, y = _codes(n=500, bits=16, classes=4, flip=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the known harmless ones are filtered
        xy, idx = viz.embed_2d(codes, method="umap", max_points=300, seed=0, labels=y)
    assert xy.shape == (300, 2) and len(idx) == 300 and np.isfinite(xy).all()
    # same-class points lie closer together than different-class ones
    yy = y[idx]
    d = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    same = yy[:, None] == yy[None]
    assert d[same].mean() < 0.5 * d[~same].mean()


# ------------------------------------------------------------------ pair distance counts
def _brute_force_counts(codes, labels):
    n, bits = codes.shape
    y = labels if labels.ndim == 2 else to_multihot(labels)
    sim = np.zeros(bits + 1, dtype=np.int64)
    dis = np.zeros(bits + 1, dtype=np.int64)
    for i in range(n):
        for j in range(i + 1, n):
            d = int(sum(codes[i, k] != codes[j, k] for k in range(bits)))
            if float(y[i] @ y[j]) > 0:
                sim[d] += 1
            else:
                dis[d] += 1
    return sim, dis


def test_pair_distance_counts_hand_example():
    codes = np.array([[1, 1, 1, 1], [1, 1, 1, -1], [-1, -1, -1, -1]], dtype=np.float32)
    labels = np.array([0, 0, 1])
    sim, dis = viz.pair_distance_counts(codes, labels)
    # pairs: (0,1) similar d=1; (0,2) dissimilar d=4; (1,2) dissimilar d=3
    assert sim.tolist() == [0, 1, 0, 0, 0]
    assert dis.tolist() == [0, 0, 0, 1, 1]


@pytest.mark.parametrize("multihot", [False, True])
def test_pair_distance_counts_match_brute_force(multihot):
    rng = np.random.default_rng(5)
    codes = rng.choice([-1.0, 1.0], size=(25, 7)).astype(np.float32)
    if multihot:
        labels = (rng.random((25, 4)) < 0.35).astype(np.float32)  # some rows have no label
    else:
        labels = rng.integers(0, 3, size=25)
    sim, dis = viz.pair_distance_counts(codes, labels)
    bsim, bdis = _brute_force_counts(codes, labels)
    assert np.array_equal(sim, bsim) and np.array_equal(dis, bdis)
    assert sim.sum() + dis.sum() == 25 * 24 // 2
    # max_pairs above the number of pairs still means "all pairs"
    sim2, dis2 = viz.pair_distance_counts(codes, labels, max_pairs=10_000)
    assert np.array_equal(sim2, bsim) and np.array_equal(dis2, bdis)


def test_pair_distance_counts_sampled():
    codes, y = _codes(n=400, bits=16, flip=0.1)
    sim, dis = viz.pair_distance_counts(codes, y, max_pairs=5000, seed=0)
    sim2, dis2 = viz.pair_distance_counts(codes, y, max_pairs=5000, seed=0)
    assert sim.sum() + dis.sum() == 5000
    assert np.array_equal(sim, sim2) and np.array_equal(dis, dis2)
    # sampled distribution is close to the exact one
    esim, edis = viz.pair_distance_counts(codes, y)
    d = np.arange(17)
    assert abs((d * sim).sum() / sim.sum() - (d * esim).sum() / esim.sum()) < 0.3
    assert abs((d * dis).sum() / dis.sum() - (d * edis).sum() / edis.sum()) < 0.3


def test_pair_distance_counts_binarizes_relaxed_codes():
    relaxed = np.array([[0.3, -0.2, 0.0], [0.9, 0.1, -0.7]], dtype=np.float32)
    sim, dis = viz.pair_distance_counts(relaxed, np.array([0, 0]))
    assert sim.tolist() == [0, 0, 1, 0] and dis.sum() == 0  # 0 -> +1: differs in bits 1, 2


# ------------------------------------------------------------------ plots
def test_plot_distance_histogram_normalised_bins():
    codes, y = _codes(n=50, bits=8)
    ax = viz.plot_distance_histogram(codes, y)
    assert isinstance(ax, matplotlib.axes.Axes)
    sim, dis = viz.pair_distance_counts(codes, y)
    heights = [p.get_height() for p in ax.patches]
    assert len(heights) == 2 * 9
    assert np.isclose(sum(heights[:9]), 1.0) and np.isclose(sum(heights[9:]), 1.0)
    assert np.allclose(heights[:9], sim / sim.sum())
    assert [p.get_x() + p.get_width() / 2 for p in ax.patches[:9]] == list(range(9))
    assert "similar" in ax.get_legend().get_texts()[0].get_text()


def test_plot_embedding_legend_and_centers():
    rng = np.random.default_rng(0)
    xy = rng.normal(size=(30, 2))
    labels = to_multihot(np.arange(30) % 3, 3)
    centers = rng.normal(size=(3, 2))
    fig, ax0 = plt.subplots()
    ax = viz.plot_embedding(xy, labels, classes=["cat", "dog", "ship"], centers_xy=centers,
                            ax=ax0, title="codes")
    assert ax is ax0 and ax.get_title() == "codes"
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts[:3] == ["cat", "dog", "ship"] and "hash centers" in texts
    stars = [c for c in ax.collections if c.get_offsets().shape[0] == 1
             and c.get_sizes()[0] >= 400]
    assert len(stars) == 3
    with pytest.raises(ValueError):
        viz.plot_embedding(xy, labels[:10])
    with pytest.raises(ValueError, match="no name"):
        viz.plot_embedding(xy, labels, classes=["cat", "dog"])


def test_plot_embedding_ids_and_unlabelled_rows():
    xy = np.zeros((4, 2))
    labels = np.array([[0, 1], [0, 0], [1, 1], [0, 1]], dtype=np.float32)
    assert viz.first_label(labels).tolist() == [1, -1, 0, 1]
    ax = viz.plot_embedding(xy, labels)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["no label", "0", "1"]
    ax2 = viz.plot_embedding(xy, np.array([2, 0, 1, 2]))
    assert len(ax2.collections) == 3


def test_plot_history():
    hist = [{"epoch": e, "loss": 1.0 / e, **({"val_map": 0.1 * e} if e % 2 == 0 else {})}
            for e in range(1, 7)]
    ax = viz.plot_history(hist)
    assert isinstance(ax, matplotlib.axes.Axes)
    left = {ln.get_label(): ln for ln in ax.get_lines()}
    right = {ln.get_label(): ln for ln in ax.right_ax.get_lines()}
    assert list(left["loss"].get_xdata()) == [1, 2, 3, 4, 5, 6]
    assert list(right["val_map"].get_xdata()) == [2, 4, 6]
    assert np.allclose(right["val_map"].get_ydata(), [0.2, 0.4, 0.6])
    ax2 = viz.plot_history(hist, keys=["loss"])
    assert [ln.get_label() for ln in ax2.get_lines()] == ["loss"]
    with pytest.raises(ValueError, match="no numeric"):
        viz.plot_history([{"epoch": 1}])


def test_plot_map_vs_bits_mean_std():
    results = {"csq": {16: [0.5, 0.6, 0.7], "32": [0.7, 0.7, 0.7], 8: 0.4},
               "dpsh": {16: 0.55, 64: 0.62}}
    ax = viz.plot_map_vs_bits(results)
    lines = {c.get_label(): c.lines[0] for c in ax.containers}
    assert list(lines["csq"].get_xdata()) == [8, 16, 32]
    assert np.allclose(lines["csq"].get_ydata(), [0.4, 0.6, 0.7])
    assert list(lines["dpsh"].get_xdata()) == [16, 64]
    # error bar of csq at 16 bits spans mean ± sample std (0.1)
    segs = ax.containers[0].lines[2][0].get_segments()
    seg16 = [s for s in segs if np.isclose(s[0][0], 16)][0]
    assert np.allclose(sorted([seg16[0][1], seg16[1][1]]), [0.5, 0.7])
    assert [int(t) for t in ax.get_xticks()] == [8, 16, 32, 64]
    with pytest.raises(ValueError):
        viz.plot_map_vs_bits({})


def test_no_plt_show(monkeypatch):
    monkeypatch.setattr(plt, "show", lambda *a, **k: pytest.fail("plt.show called"))
    codes, y = _codes(n=30, bits=8)
    viz.plot_distance_histogram(codes, y)
    xy, idx = viz.embed_2d(codes, method="pca")
    viz.plot_embedding(xy, y[idx])
    viz.plot_history([{"epoch": 1, "loss": 1.0}])
    viz.plot_map_vs_bits({"a": {8: 0.1}})
