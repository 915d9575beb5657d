"""Pictures of hash codes: 2-D embeddings, Hamming-distance histograms, training curves,
mAP against code length.

2-D maps of binary codes use UMAP (McInnes et al., arXiv:1802.03426) with the Hamming metric,
t-SNE (van der Maaten & Hinton, JMLR 2008) or PCA. umap-learn is imported lazily; without
it :func:`embed_2d` falls back to t-SNE with a warning. UMAP switches from exact kNN to
NNDescent above 4,096 points, which costs ~25 s of numba JIT per process on 2 CPU cores
(measured on this project's 2-core machine), so embeddings are capped at ``max_points`` (4,000)
by a seeded, label-stratified subsample whose row indices are returned.

Every plotting function draws into ``ax`` (a new figure when ``None``) and returns the Axes;
nothing calls ``plt.show``. seaborn is not needed.
"""
from __future__ import annotations

import math
import warnings
from typing import Iterable, Mapping, Sequence

import numpy as np

from hashnb.utils import as_numpy, binarize, to_multihot

__all__ = [
    "subsample_indices", "embed_2d", "first_label", "plot_embedding", "pair_distance_counts",
    "plot_distance_histogram", "plot_history", "plot_map_vs_bits",
    "results_by_method", "plot_benchmark",
]


# --------------------------------------------------------------------------- helpers
def _new_ax(ax=None, figsize=(6, 4.5)):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize)
    return ax


def _as_multihot(labels, n: int | None = None) -> np.ndarray:
    y = as_numpy(labels)
    if y.ndim == 1:
        y = to_multihot(y.astype(np.int64))
    elif y.ndim != 2:
        raise ValueError(f"labels must be (n,) class ids or (n, C) multi-hot, got shape {y.shape}")
    if n is not None and len(y) != n:
        raise ValueError(f"labels have {len(y)} rows but there are {n} points")
    return y.astype(np.float32, copy=False)


def first_label(labels) -> np.ndarray:
    """Class id used for colouring: the id itself, or the first 1 of a multi-hot row.

    Returns int64 (n,); rows without any label get -1.
    """
    y = as_numpy(labels)
    if y.ndim == 1:
        return y.astype(np.int64)
    if y.ndim != 2:
        raise ValueError(f"labels must be (n,) class ids or (n, C) multi-hot, got shape {y.shape}")
    pos = y > 0
    out = pos.argmax(axis=1).astype(np.int64)
    out[~pos.any(axis=1)] = -1
    return out


def _as_codes(codes) -> np.ndarray:
    c = as_numpy(codes)
    if c.ndim != 2:
        raise ValueError(f"codes must be (n, bits), got shape {c.shape}")
    return c


def subsample_indices(n: int, max_points: int, *, labels=None, seed: int = 0) -> np.ndarray:
    """Seeded subsample of ``min(n, max_points)`` row indices, sorted ascending (int64).

    With ``labels`` ((n,) ids or (n, C) multi-hot) the sample is stratified by the first
    label: each class keeps its share of ``max_points`` (largest-remainder rounding), so
    rare classes are not lost. ``n <= max_points`` returns ``arange(n)``.
    """
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    if n <= max_points:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    if labels is None:
        return np.sort(rng.choice(n, size=max_points, replace=False)).astype(np.int64)
    cls = first_label(labels)
    if len(cls) != n:
        raise ValueError(f"labels have {len(cls)} rows, expected {n}")
    classes, counts = np.unique(cls, return_counts=True)
    quota = max_points * counts / n
    take = np.floor(quota).astype(np.int64)
    rest = max_points - int(take.sum())
    if rest > 0:  # largest remainders first; ties by class order (stable sort)
        order = np.argsort(-(quota - take), kind="stable")[:rest]
        take[order] += 1
    picks = [rng.choice(np.flatnonzero(cls == c), size=int(k), replace=False)
             for c, k in zip(classes, take) if k > 0]
    return np.sort(np.concatenate(picks)).astype(np.int64)


# --------------------------------------------------------------------------- embeddings
def _embed_pca(x: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    x = x.astype(np.float64)
    if x.shape[1] == 1:
        return np.column_stack([x[:, 0] - x[:, 0].mean(), np.zeros(len(x))])
    return PCA(n_components=2, svd_solver="full", random_state=seed).fit_transform(x)


def _embed_tsne(x: np.ndarray, seed: int, metric: str) -> np.ndarray:
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, max(1.0, (len(x) - 1) / 3.0)))
    init = "pca" if metric != "precomputed" else "random"
    return TSNE(n_components=2, metric=metric, perplexity=perplexity, init=init,
                random_state=seed).fit_transform(x.astype(np.float32))


def _embed_umap(x: np.ndarray, seed: int, metric: str, umap) -> np.ndarray:
    n_neighbors = int(max(2, min(15, len(x) - 1)))
    with warnings.catch_warnings():
        # "gradient function is not yet implemented for hamming" and
        # "n_jobs value 1 overridden to 1 by setting random_state": expected, harmless
        warnings.filterwarnings("ignore", message=".*gradient function is not yet implemented.*")
        warnings.filterwarnings("ignore", message=".*n_jobs value.*overridden.*")
        reducer = umap.UMAP(n_components=2, metric=metric, n_neighbors=n_neighbors,
                            random_state=seed)
        return reducer.fit_transform(x.astype(np.float32))


def embed_2d(codes, *, method: str = "umap", max_points: int = 4000, seed: int = 0,
             metric: str = "hamming", labels=None):
    """2-D embedding of codes (or features) for plotting.

    .. warning::
       When ``n > max_points`` only a **subsample** is embedded (seeded; stratified by the
       first label when ``labels`` is given). The returned ``index`` says which rows:
       plot ``labels[index]`` against ``xy``. UMAP above 4,096 points switches to NNDescent,
       whose numba JIT costs ~25 s per process, hence the default cap of 4,000.

    Parameters
    ----------
    codes : array or tensor, (n, d)
        ±1 codes (or any real features).
    method : {"umap", "tsne", "pca"}
        "umap" needs umap-learn; without it t-SNE is used and a ``UserWarning`` says so.
        "pca" is deterministic and instant (``metric`` is ignored).
    max_points : int
        Cap on the number of embedded points.
    seed : int
        Seeds the subsample and the embedding (UMAP ``random_state``, t-SNE ``random_state``).
    metric : str
        Distance for UMAP/t-SNE; "hamming" suits binary codes.
    labels : optional, (n,) ids or (n, C) multi-hot
        Only used to stratify the subsample.

    Returns
    -------
    xy : np.ndarray float32 (m, 2), m = min(n, max_points)
    index : np.ndarray int64 (m,)
        Sorted row indices into ``codes`` of the embedded points.
    """
    x = _as_codes(codes)
    n = len(x)
    if n < 2:
        raise ValueError(f"need at least 2 points to embed, got {n}")
    if method not in ("umap", "tsne", "pca"):
        raise ValueError(f"unknown method {method!r}; use 'umap', 'tsne' or 'pca'")
    index = subsample_indices(n, max_points, labels=labels, seed=seed)
    xs = x[index]
    if method == "umap":
        try:
            import umap  # noqa: F401  (lazy: ~2-14 s import with numba)
        except ImportError:
            warnings.warn("umap-learn is not installed (pip install umap-learn); "
                          "embed_2d falls back to t-SNE", UserWarning, stacklevel=2)
            method = "tsne"
        else:
            xy = _embed_umap(xs, seed, metric, umap)
    if method == "tsne":
        xy = _embed_tsne(xs, seed, metric)
    elif method == "pca":
        xy = _embed_pca(xs, seed)
    return np.asarray(xy, dtype=np.float32), index


# --------------------------------------------------------------------------- plots
def _class_colors(k: int):
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10" if k <= 10 else "tab20")
    m = 10 if k <= 10 else 20
    return [cmap(i % m) for i in range(k)]


def plot_embedding(xy, labels, *, classes: Sequence[str] | None = None, centers_xy=None,
                   ax=None, title: str | None = None, s: float = 6.0, alpha: float = 0.7):
    """Scatter of a 2-D embedding coloured by (first) label, with a legend of class names.

    Parameters
    ----------
    xy : (n, 2) array
        From :func:`embed_2d` (pass ``labels[index]`` alongside).
    labels : (n,) ids or (n, C) multi-hot
        Colour = first label; points with no label are grey ("no label").
    classes : list of str, optional
        Class names for the legend (default: the ids).
    centers_xy : (C, 2) array, optional
        Hash centers in the same 2-D space, drawn as large stars in the class colour.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    xy = as_numpy(xy)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"xy must be (n, 2), got shape {xy.shape}")
    cls = first_label(labels)
    if len(cls) != len(xy):
        raise ValueError(f"labels have {len(cls)} rows but xy has {len(xy)}")
    y2 = as_numpy(labels)
    n_classes = y2.shape[1] if y2.ndim == 2 else int(cls.max()) + 1 if len(cls) else 0
    if classes is not None:
        if len(cls) and cls.max() >= len(classes):
            raise ValueError(f"label id {int(cls.max())} has no name: classes has only "
                             f"{len(classes)} entries")
        n_classes = max(n_classes, len(classes))
    if centers_xy is not None:
        centers_xy = as_numpy(centers_xy)
        if centers_xy.ndim != 2 or centers_xy.shape[1] != 2:
            raise ValueError(f"centers_xy must be (C, 2), got shape {centers_xy.shape}")
        n_classes = max(n_classes, len(centers_xy))
    colors = _class_colors(max(n_classes, 1))
    name = (lambda c: str(classes[c])) if classes is not None else (lambda c: str(c))
    ax = _new_ax(ax, figsize=(6, 6))
    if (cls < 0).any():
        m = cls < 0
        ax.scatter(xy[m, 0], xy[m, 1], s=s, c="0.7", alpha=alpha, label="no label",
                   linewidths=0)
    for c in np.unique(cls[cls >= 0]):
        m = cls == c
        ax.scatter(xy[m, 0], xy[m, 1], s=s, color=colors[c], alpha=alpha, label=name(c),
                   linewidths=0)
    if centers_xy is not None:
        for c, (cx, cy) in enumerate(centers_xy):
            ax.scatter([cx], [cy], marker="*", s=400, color=colors[c], edgecolors="black",
                       linewidths=1.2, zorder=5)
        ax.scatter([], [], marker="*", s=60, color="white", edgecolors="black",
                   label="hash centers")
    ax.legend(loc="best", fontsize="small", markerscale=2 if s < 20 else 1, frameon=True)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return ax


def pair_distance_counts(codes, labels, *, max_pairs: int | None = None, seed: int = 0,
                         chunk: int = 65536):
    """Histogram counts of Hamming distances over similar and dissimilar pairs.

    Pairs are unordered ``i < j`` (all of them when ``n(n-1)/2 <= max_pairs`` or
    ``max_pairs is None``); otherwise ``max_pairs`` pairs ``i != j`` drawn uniformly with a
    seeded generator (with replacement). Similar = the two items share a label.

    Parameters
    ----------
    codes : (n, bits) ±1 codes (relaxed values are binarized, 0 -> +1)
    labels : (n,) ids or (n, C) multi-hot

    Returns
    -------
    similar, dissimilar : np.ndarray int64 (bits + 1,)
        ``similar[d]`` = number of similar pairs at Hamming distance ``d``.
    """
    b = binarize(_as_codes(codes)) > 0  # bool (n, bits)
    n, bits = b.shape
    y = _as_multihot(labels, n) > 0
    total = n * (n - 1) // 2
    sim = np.zeros(bits + 1, dtype=np.int64)
    dis = np.zeros(bits + 1, dtype=np.int64)
    if n < 2:
        return sim, dis
    if max_pairs is None or total <= max_pairs:
        iu, ju = np.triu_indices(n, k=1)
    else:
        rng = np.random.default_rng(seed)
        iu = rng.integers(0, n, size=int(max_pairs))
        ju = (iu + rng.integers(1, n, size=int(max_pairs))) % n  # uniform over j != i
    for s in range(0, len(iu), chunk):
        i, j = iu[s:s + chunk], ju[s:s + chunk]
        d = (b[i] != b[j]).sum(axis=1)
        rel = (y[i] & y[j]).any(axis=1)
        sim += np.bincount(d[rel], minlength=bits + 1)
        dis += np.bincount(d[~rel], minlength=bits + 1)
    return sim, dis


def plot_distance_histogram(codes, labels, *, ax=None, max_pairs: int = 200_000, seed: int = 0,
                            title: str | None = None):
    """Normalised histograms of Hamming distances for similar vs dissimilar pairs.

    Integer bins 0..bits; each histogram sums to 1. Good codes put similar pairs near 0
    and dissimilar pairs near bits/2 or beyond. Pairs are sampled (see
    :func:`pair_distance_counts`); the legend gives the pair counts and mean distances.

    Returns
    -------
    matplotlib.axes.Axes
    """
    sim, dis = pair_distance_counts(codes, labels, max_pairs=max_pairs, seed=seed)
    bits = len(sim) - 1
    d = np.arange(bits + 1)
    ax = _new_ax(ax)
    for counts, name, color in ((sim, "similar", "tab:blue"), (dis, "dissimilar", "tab:red")):
        tot = int(counts.sum())
        if tot == 0:
            continue
        p = counts / tot
        mean = float((d * p).sum())
        ax.bar(d, p, width=1.0, align="center", alpha=0.5, color=color, edgecolor=color,
               label=f"{name} ({tot:,} pairs, mean {mean:.1f})")
    ax.set_xlim(-0.5, bits + 0.5)
    step = max(1, int(math.ceil((bits + 1) / 17)))
    ax.set_xticks(d[::step])
    ax.set_xlabel("Hamming distance")
    ax.set_ylabel("fraction of pairs")
    ax.legend(fontsize="small")
    ax.set_title(title if title is not None else f"{bits}-bit codes")
    return ax


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) \
        and np.isfinite(v)


def plot_history(history: Sequence[Mapping], *, keys: Iterable[str] | None = None, ax=None):
    """Training curves from a per-epoch history.

    Parameters
    ----------
    history : list of dict
        One dict per epoch, e.g. ``{"epoch": 3, "loss": 0.41, "val_map": 0.62}``; keys
        missing in some epochs (validation every k epochs) are skipped there. Without
        "epoch" the position (1-based) is used.
    keys : iterable of str, optional
        Metrics to plot; default all numeric keys but "epoch". Keys containing "loss" go on
        the left axis, the others (mAP, precision ...) on a twin right axis when both kinds
        are present.

    Returns
    -------
    matplotlib.axes.Axes
        The left axis (the twin, if any, is ``ax.right_ax``).
    """
    history = list(history)
    if keys is None:
        seen: list[str] = []
        for h in history:
            for k, v in h.items():
                if k != "epoch" and k not in seen and _is_number(v):
                    seen.append(k)
        keys = seen
    keys = list(keys)
    if not keys:
        raise ValueError("history has no numeric metrics to plot; pass keys=[...]")
    ax = _new_ax(ax)
    loss_keys = [k for k in keys if "loss" in k]
    other = [k for k in keys if "loss" not in k]
    right = ax.twinx() if loss_keys and other else None
    if right is not None:
        ax.right_ax = right
    lines = []
    colors = _class_colors(len(keys))
    for i, k in enumerate(keys):
        pts = [(h.get("epoch", pos + 1), h[k]) for pos, h in enumerate(history)
               if k in h and _is_number(h[k])]
        if not pts:
            warnings.warn(f"plot_history: no numeric values for {k!r}", stacklevel=2)
            continue
        e, v = zip(*pts)
        target = right if (right is not None and k in other) else ax
        lines += target.plot(e, v, marker="o" if len(e) < 30 else None, ms=3, label=k,
                             color=colors[i])
    ax.set_xlabel("epoch")
    if right is not None:
        ax.set_ylabel("loss")
        right.set_ylabel(", ".join(other))
    else:
        ax.set_ylabel(", ".join(keys) if len(keys) <= 2 else "value")
    if lines:
        ax.legend(lines, [ln.get_label() for ln in lines], fontsize="small", loc="best")
    return ax


def plot_map_vs_bits(results: Mapping[str, Mapping], *, ax=None, ylabel: str = "mAP",
                     title: str | None = None):
    """mAP against code length per method, mean ± std over seeds as error bars.

    Parameters
    ----------
    results : dict
        ``{method: {bits: map or [maps over seeds]}}``; ``bits`` may be int or str (JSON).
        The std uses ``ddof=1`` when there are several seeds, and is 0 for one.

    Returns
    -------
    matplotlib.axes.Axes
    """
    if not results:
        raise ValueError("results is empty: expected {method: {bits: map or [maps]}}")
    ax = _new_ax(ax)
    all_bits: set[int] = set()
    for method, per_bits in results.items():
        bits = sorted(int(b) for b in per_bits)
        by_int = {int(b): v for b, v in per_bits.items()}
        means, stds = [], []
        for b in bits:
            v = np.atleast_1d(np.asarray(by_int[b], dtype=np.float64))
            means.append(float(v.mean()))
            stds.append(float(v.std(ddof=1)) if len(v) > 1 else 0.0)
        all_bits.update(bits)
        ax.errorbar(bits, means, yerr=stds, marker="o", capsize=3, label=str(method))
    ticks = sorted(all_bits)
    if ticks and min(ticks) > 0:
        ax.set_xscale("log", base=2)
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("bits")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    return ax


def results_by_method(results, metric: str = "map") -> dict:
    """Benchmark JSON records -> ``{method: {bits: [metric over seeds]}}``."""
    out: dict = {}
    for r in results:
        out.setdefault(r["method"], {}).setdefault(int(r["bits"]), []).append(
            float(r["metrics"][metric]))
    return out


def plot_benchmark(results, *, kind: str = "map_vs_bits", metric: str = "map", ax=None):
    """Figures of the benchmark records written by :func:`hashnb.matrix.run_matrix`.

    ``kind="map_vs_bits"``: ``metric`` against code length per method (mean ± std over
    seeds). ``kind="time_vs_map"``: mean training wall time (the loop's own seconds) against
    mean ``metric``, one marker per (method, bits), marker size growing with bits.

    Returns the matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    if not results:
        raise ValueError("no benchmark records to plot")
    if kind == "map_vs_bits":
        ax = plot_map_vs_bits(results_by_method(results, metric), ax=ax, ylabel=metric,
                              title=f"{metric} vs code length (mean ± std over seeds)")
        return ax.figure
    if kind != "time_vs_map":
        raise ValueError("kind must be 'map_vs_bits' or 'time_vs_map'")
    ax = _new_ax(ax)
    cells: dict = {}
    for r in results:
        w = r.get("wall_seconds", {})
        t = w.get("train_loop") or w.get("train") or 0.0
        cells.setdefault((r["method"], int(r["bits"])), []).append((t, r["metrics"][metric]))
    methods = sorted({m for m, _ in cells})
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, m in enumerate(methods):
        pts = sorted((b, np.mean([t for t, _ in v]), np.mean([y for _, y in v]))
                     for (mm, b), v in cells.items() if mm == m)
        bs, ts, ys = zip(*pts)
        ax.plot(ts, ys, "-", color=colors[i % len(colors)], alpha=0.4)
        ax.scatter(ts, ys, s=[12 + 4 * b for b in bs], color=colors[i % len(colors)], label=m)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("training wall time per run, s (mean over seeds)")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs training time (marker size ~ bits)")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return ax.figure
