"""Explorers: how a method's codes change with the code length K, and committed results.

Two faces of the same pictures (DESIGN.md, "Book conventions"):

* **Static** -- :func:`static_tabs` pre-renders one figure per code length and embeds them
  as base64 PNG ``<img>`` tags in *pure HTML + CSS* tabs (the "radio-button tabs"
  technique: hidden ``<input type="radio">`` + ``<label>`` + ``:checked ~`` sibling
  selectors). No JavaScript and no kernel are needed, so the tabs switch in Jupyter Book's
  static HTML (myst-nb passes ``text/html`` outputs through unchanged), offline, and in
  JupyterLab / Colab. ipywidgets in a static page would need widget JavaScript from a CDN
  and could never run a Python callback there (``reference/toolchain.md`` section 2).
* **Live** -- :class:`BitLengthExplorer` shows the static tabs and, in a running kernel with
  ipywidgets, a control that trains (or loads from the run cache) any other code length and
  redraws the same panels. The callback logic lives in plain methods (:meth:`_render`) so it
  is unit-tested without a frontend; errors (e.g. an unsupported code length) are shown in
  the output area, never raised into the widget machinery.

Each figure has the panels chosen by ``panels``: a 2-D embedding of the database codes
coloured by class (``"umap"`` as the book uses -- UMAP, McInnes et al. arXiv:1802.03426,
Hamming metric, at most ``max_points`` = 2,000 points to stay below UMAP's 4,096-point
NNDescent switch and its ~25 s JIT; ``"tsne"`` or the instant, deterministic ``"pca"``, which
the tests use), ``"hist"`` (Hamming distances of similar vs dissimilar pairs) and
``"centers"`` (the hash centers of CSQ-like methods as a heatmap). A callable
``panel(ax, run)`` is a custom panel. The suptitle carries the tie-aware mAP@all of the
query set against the database (:meth:`hashnb.train.Run.evaluate`).

The same two faces serve the explorers of committed results, which need no training:

* :class:`LeaderboardExplorer` (chapter 8, :func:`leaderboard_explorer`): the benchmark
  table (mean ± std over seeds) and the metric-vs-bits plot for a metric (mAP@all,
  mAP@1000, P@1000, P@r≤2), a protocol (one folder of ``hashnb.bench run`` JSON each,
  :func:`committed_protocols`) and a set of code lengths.
* :class:`SearchExplorer` (chapter 9, :func:`search_explorer`): queries/s, recall, memory
  and build time per search index for a code length and a database size, from a
  ``hashnb.bench search`` JSON; live, it also builds and times every index on a small
  random database.

Their static face is :func:`option_tabs` (the same CSS-only tabs, labelled by any option,
nestable: one group per control); their live face redraws on every control change by
replacing an ``ipywidgets.Output``'s ``outputs`` (no kernel output context needed, so the
callbacks are unit-tested as plain methods). Every live explorer carries the CSS classes
``hnb-explorer`` (its box), ``hnb-explorer-out`` (its outputs), ``hnb-redraw`` (controls
that redraw at once) and ``hnb-action`` (buttons), which the JupyterLab check in
``tests/test_browser.py`` drives.
"""
from __future__ import annotations

import base64
import html
import io
import os
import time
import traceback
import uuid
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from hashnb.bench import bench_search
from hashnb.centers import pairwise_hamming
from hashnb.matrix import load_results, results_dir, summarize
from hashnb.train import method_from_dataset, run_method
from hashnb.viz import (embed_2d, plot_distance_histogram, plot_embedding, plot_history,
                        plot_map_vs_bits, results_by_method, subsample_indices)

__all__ = ["bit_figures", "render_bits", "static_tabs", "option_tabs", "StaticTabs",
           "BitLengthExplorer", "CANDIDATE_BITS", "METRICS", "LeaderboardExplorer",
           "leaderboard_explorer", "committed_protocols", "SearchExplorer", "search_explorer",
           "LivePlot"]

#: Code lengths the live control offers (filtered by ``min_bits``/``max_bits`` and by what
#: the method can build for the dataset).
CANDIDATE_BITS = (4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128)

_EMBEDDINGS = {"umap": "UMAP", "tsne": "t-SNE", "pca": "PCA"}
_PANELS = tuple(_EMBEDDINGS) + ("hist", "centers")


# --------------------------------------------------------------------------- helpers
def _check_panels(panels) -> tuple:
    if isinstance(panels, str) or callable(panels):
        panels = (panels,)
    panels = tuple(panels)
    if not panels:
        raise ValueError(f"panels is empty; choose from {_PANELS} or pass callables "
                         "panel(ax, run)")
    for p in panels:
        if not callable(p) and p not in _PANELS:
            raise ValueError(f"unknown panel {p!r}; choose from {_PANELS} or pass a callable "
                             "panel(ax, run)")
    return panels


def _check_bits_value(b) -> int:
    if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1:
        raise ValueError(f"code lengths must be positive integers, got {b!r}")
    return int(b)


def _run_kwargs(run_kwargs: Mapping | None) -> dict:
    kw = dict(run_kwargs or {})
    clash = sorted(set(kw) & {"bits", "seed"})
    if clash:
        raise ValueError(f"run_kwargs must not contain {clash}: pass bits=... and seed=... "
                         "to the explorer itself")
    return kw


def _method_centers(method):
    """(C, K) float numpy hash centers of ``method`` or None (CSQ, OrthoHash, ...)."""
    c = getattr(method, "centers", None)
    if c is None or callable(c):
        return None
    c = np.asarray(c.detach().cpu().numpy() if hasattr(c, "detach") else c, dtype=np.float32)
    return c if c.ndim == 2 else None


def _describe(dataset, split, seed: int) -> str:
    proto = getattr(split, "protocol", None)
    data = getattr(dataset, "name", "data")
    return f"{data}, protocol {proto!r}, seed {seed}" if proto else f"{data}, seed {seed}"


# --------------------------------------------------------------------------- figures
def _draw_embedding(ax, run, kind: str, *, max_points: int, seed: int, show_centers: bool):
    codes = run.codes("database").cpu().numpy()
    labels = np.asarray(run.dataset.labels[np.asarray(run.split.database)])
    idx = subsample_indices(len(codes), max_points, labels=labels, seed=seed)
    x, y = codes[idx], labels[idx]
    centers = _method_centers(run.method) if show_centers else None
    if centers is not None and centers.shape[1] == x.shape[1]:
        # embed codes and centers together so the stars sit in the same 2-D space
        xy, _ = embed_2d(np.concatenate([x, centers]), method=kind, seed=seed,
                         max_points=len(x) + len(centers))
        xy, cxy = xy[: len(x)], xy[len(x):]
    else:
        xy, _ = embed_2d(x, method=kind, seed=seed, max_points=len(x))
        cxy = None
    plot_embedding(xy, y, classes=getattr(run.dataset, "classes", None), centers_xy=cxy, ax=ax,
                   title=f"{_EMBEDDINGS[kind]} of database codes ({len(x):,} points)")


def _draw_hist(ax, run, *, seed: int):
    codes = run.codes("database").cpu().numpy()
    labels = np.asarray(run.dataset.labels[np.asarray(run.split.database)])
    plot_distance_histogram(codes, labels, ax=ax, seed=seed,
                            title="Hamming distances of database pairs")


def _draw_centers(ax, run):
    centers = _method_centers(run.method)
    name = str(run.config.get("method", "this method")).upper()
    if centers is None:
        ax.text(0.5, 0.5, f"{name} has no hash centers", ha="center", va="center",
                transform=ax.transAxes, color="0.4")
        ax.set_axis_off()
        return

    d = pairwise_hamming(centers)
    off = d[~np.eye(len(d), dtype=bool)]
    ax.imshow(centers, cmap="coolwarm", vmin=-1, vmax=1, aspect="auto", interpolation="nearest")
    ax.set_xlabel("bit")
    ax.set_ylabel("class")
    classes = getattr(run.dataset, "classes", None)
    if classes is not None and len(classes) == len(centers) and len(centers) <= 20:
        ax.set_yticks(range(len(centers)), labels=[str(c) for c in classes], fontsize=7)
    mind = f", min distance {int(off.min())}" if off.size else ""
    ax.set_title(f"hash centers (+1 red, -1 blue{mind})")


def render_bits(run, *, panels: Sequence = ("umap", "hist"), max_points: int = 2000,
                seed: int = 0, show_centers: bool = True, title: str | None = None,
                panel_size: tuple = (4.6, 4.2)) -> dict:
    """Draw the explorer's panels for one trained :class:`~hashnb.train.Run`.

    Parameters
    ----------
    run : hashnb.train.Run
    panels : sequence of {"umap", "tsne", "pca", "hist", "centers"} or callables
        ``panel(ax, run)``. The book uses ``("umap", "hist")``; ``"pca"`` is instant.
    max_points : int
        Cap on embedded database codes (seeded, label-stratified subsample).
    show_centers : bool
        Overlay the method's hash centers (when it has ``.centers``) on embeddings.
    title : str, optional
        Suptitle prefix; default ``"<METHOD>, <K> bits"``.

    Returns
    -------
    dict
        ``{"figure": matplotlib.figure.Figure, "map": float, "metrics": dict}`` where
        ``map`` is the tie-aware mAP@all of query vs database (``run.evaluate()["map"]``).
        The figure is not registered with pyplot (nothing is shown by accident).
    """
    from matplotlib.figure import Figure

    panels = _check_panels(panels)
    metrics = run.evaluate()
    m = float(metrics["map"])
    bits = int(run.codes("database").shape[1])
    name = str(run.config.get("method", "method")).upper()
    fig = Figure(figsize=(panel_size[0] * len(panels), panel_size[1]))
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, p in zip(axes, panels):
        if callable(p):
            p(ax, run)
        elif p in _EMBEDDINGS:
            _draw_embedding(ax, run, p, max_points=max_points, seed=seed,
                            show_centers=show_centers)
        elif p == "hist":
            _draw_hist(ax, run, seed=seed)
        else:
            _draw_centers(ax, run)
    head = title or f"{name}, {bits} bits"
    fig.suptitle(f"{head}: mAP@all = {m:.3f}\n(tie-aware, query vs database; "
                 f"{_describe(run.dataset, run.split, run.config.get('seed', seed))})",
                 fontsize=11)
    fig.tight_layout()
    return {"figure": fig, "map": m, "metrics": metrics}


def bit_figures(name: str, dataset, split, *, bits: Iterable[int] = (8, 16, 32, 64),
                seed: int = 0, run_kwargs: Mapping | None = None,
                panels: Sequence = ("umap", "hist"), max_points: int = 2000,
                show_centers: bool = True) -> dict[int, dict]:
    """Train (or load) ``name`` at each code length and draw one figure per length.

    Each length goes through :func:`hashnb.train.run_method` (load if present, else train;
    cached under ``cache_dir("runs")``) with ``run_kwargs`` (e.g. ``{"epochs": 60,
    "val_every": 3, "progress": False}``), then :func:`render_bits`.

    Parameters
    ----------
    name : registered method name ("lsh", "itq", "csq", ...).
    dataset, split : from :func:`hashnb.data.load_dataset` and :func:`hashnb.data.make_split`.
    bits : code lengths, drawn in ascending order.
    panels : see :func:`render_bits`. The book uses UMAP (``"umap"``, ~10 s of numba JIT once
        per kernel); tests use ``("pca", "hist")``.
    max_points : at most this many database codes are embedded (2,000 keeps UMAP on exact kNN).

    Returns
    -------
    dict
        ``{bits: {"figure": Figure, "map": float, "metrics": dict, "run": Run}}``; ``map`` is
        the tie-aware mAP@all, equal to ``run.evaluate()["map"]``.
    """
    panels = _check_panels(panels)
    kw = _run_kwargs(run_kwargs)
    lengths = sorted({_check_bits_value(b) for b in bits})
    if not lengths:
        raise ValueError("bits is empty; give at least one code length, e.g. bits=(16, 32)")
    out = {}
    for b in lengths:
        run = run_method(name, dataset, split, bits=b, seed=seed, **kw)
        res = render_bits(run, panels=panels, max_points=max_points, seed=seed,
                          show_centers=show_centers)
        out[b] = {**res, "run": run}
    return out


# --------------------------------------------------------------------------- static tabs
def _figure_bytes(fig, fmt: str, dpi: int) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight", facecolor="white")
    return buf.getvalue()


_MIME = {"png": "image/png", "svg": "image/svg+xml"}


try:  # IPython is a dependency of every notebook front end; keep import-time failures clear
    from IPython.display import HTML as _HTML
except ImportError:  # pragma: no cover
    _HTML = object


class StaticTabs(_HTML):
    """``IPython.display.HTML`` of pre-rendered tabs with a readable ``text/plain`` form.

    ``.html`` is the markup, ``.text`` the plain-text fallback (mAP per code length),
    ``.dom_id`` the unique id of the outer ``<div>``, ``.bits`` the code lengths (for
    :func:`static_tabs`) and ``.keys`` the tab labels in order (for :func:`option_tabs`;
    equal to ``.bits`` for :func:`static_tabs`).
    """

    def __init__(self, html_text: str, text: str, dom_id: str, bits: list, keys=None):
        super().__init__(html_text)
        self.html = html_text
        self.text = text
        self.dom_id = dom_id
        self.bits = bits
        self.keys = list(bits if keys is None else keys)

    def __repr__(self) -> str:
        return self.text

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(self.text)


def _css(uid: str, keys: list[str]) -> str:
    """CSS scoped to ``#uid`` (written with a placeholder to keep braces readable)."""
    rules = """
    @ {margin:.5em 0 1em}
    @>.hnb-title {font-weight:600;margin:0 0 .35em}
    @>input {position:absolute;opacity:0;width:1px;height:1px;margin:0;pointer-events:none}
    @>label {display:inline-block;padding:.25em .8em;margin:0 .2em .3em 0;border:1px solid #b8c2cc;border-radius:.4em;cursor:pointer;background:#f5f7fa;color:#222;font-size:.9em;user-select:none}
    @>label:hover {background:#e6ecf2}
    @>input:checked+label {background:var(--pst-color-primary,#2b6cb0);border-color:var(--pst-color-primary,#2b6cb0);color:#fff}
    @>input:focus-visible+label {outline:2px solid #f0a500;outline-offset:1px}
    @>.hnb-panel {display:none;border-top:1px solid #d0d7de;padding-top:.4em}
    @>.hnb-panel img {max-width:100%;height:auto;background:#fff}
    @>.hnb-panel p {margin:.2em 0;font-size:.85em;color:#555}
    """
    # the radio inputs are visually hidden but focusable: arrow keys switch tabs, no JS
    lines = [ln.strip() for ln in rules.strip().splitlines()]
    lines += [f"@>@-{k}:checked~.hnb-panel-{k} {{display:block}}" for k in keys]
    return "\n".join(ln.replace("@", f"#{uid}") for ln in lines)


def static_tabs(figures: Mapping, *, title: str | None = None, fmt: str = "png",
                dpi: int = 90, selected: int | None = None) -> StaticTabs:
    """Pre-rendered tabs, one per code length, that switch without JavaScript or a kernel.

    Pure HTML + CSS: a hidden ``<input type="radio">`` and a ``<label>`` per length, and
    panels shown by ``#id>#id-K:checked~.hnb-panel-K`` sibling selectors. All ids and CSS
    selectors are prefixed with a fresh random id, so several explorers on one page never
    interact. Figures are embedded as base64 ``<img>`` with alt text (no files to copy).
    Where a sanitizer strips ``<style>`` (an *untrusted* notebook in JupyterLab) all panels
    are simply shown one below the other.

    Parameters
    ----------
    figures : dict
        ``{bits: Figure}`` or the output of :func:`bit_figures`
        (``{bits: {"figure": Figure, "map": float, ...}}``).
    title : str, optional
        Shown above the tabs and used in alt texts.
    fmt : {"png", "svg"}
        Image format; PNG keeps pages small for scatter plots.
    dpi : int
        Rendering resolution (90 gives ~60-120 KB per two-panel figure).
    selected : int, optional
        Code length whose tab is open at first; default the smallest.

    Returns
    -------
    StaticTabs
        An ``IPython.display.HTML`` (``text/html``) whose ``text/plain`` form lists the mAP
        per code length. Display it, or make it the last expression of a cell.
    """
    if fmt not in _MIME:
        raise ValueError(f"fmt must be one of {sorted(_MIME)}, got {fmt!r}")
    if not isinstance(figures, Mapping) or not figures:
        raise ValueError("figures must be a non-empty dict {bits: Figure} or the output of "
                         "bit_figures(...)")
    items = []
    for b, v in figures.items():
        b = _check_bits_value(b)
        fig, m = (v.get("figure"), v.get("map")) if isinstance(v, Mapping) else (v, None)
        if fig is None or not hasattr(fig, "savefig"):
            raise ValueError(f"figures[{b}] is not a matplotlib Figure (nor a dict with one "
                             "under 'figure')")
        items.append((b, fig, None if m is None else float(m)))
    items.sort(key=lambda t: t[0])
    keys = [b for b, _, _ in items]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate code lengths in figures: {keys}")
    if selected is None:
        selected = keys[0]
    if selected not in keys:
        raise ValueError(f"selected={selected!r} is not one of the code lengths {keys}")

    uid = f"hnb-bits-{uuid.uuid4().hex[:12]}"
    esc = html.escape
    head = f"{title}: " if title else ""
    tabs, panels, lines = [], [], []
    for b, fig, m in items:
        data = base64.b64encode(_figure_bytes(fig, fmt, dpi)).decode("ascii")
        score = f"tie-aware mAP@all = {m:.3f}" if m is not None else "mAP not given"
        alt = f"{head}{b}-bit codes, {score}"
        check = " checked" if b == selected else ""
        tabs.append(f'<input type="radio" name="{uid}" id="{uid}-{b}" value="{b}"{check}>'
                    f'<label for="{uid}-{b}" title="{esc(alt)}">{b} bits</label>')
        panels.append(f'<div class="hnb-panel hnb-panel-{b}" role="tabpanel" '
                      f'aria-label="{b} bits"><img src="data:{_MIME[fmt]};base64,{data}" '
                      f'alt="{esc(alt)}"><p>{b} bits: {esc(score)}</p></div>')
        lines.append(f"  {b:>4} bits: " + (f"mAP@all {m:.3f}" if m is not None else "figure"))
    title_html = f'<div class="hnb-title">{esc(title)}</div>' if title else ""
    markup = (f'<div class="hnb-tabs hnb-bit-tabs" id="{uid}" role="group" '
              f'aria-label="{esc(title or "code lengths")}"><style>{_css(uid, [str(k) for k in keys])}'
              f"</style>{title_html}{''.join(tabs)}{''.join(panels)}</div>")
    text = "\n".join([f"{title or 'Bit-length explorer'} (pre-rendered; tie-aware, query vs "
                      "database)"] + lines)
    return StaticTabs(markup, text, uid, keys)


# --------------------------------------------------------------------------- live explorer
def _import_ipywidgets():
    try:
        import ipywidgets
    except ImportError:
        return None
    return ipywidgets


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    ip = get_ipython()
    return ip is not None and getattr(ip, "kernel", None) is not None


class BitLengthExplorer:
    """Static per-bit tabs plus, in a live kernel, a control for any other code length.

    Parameters
    ----------
    name, dataset, split : as for :func:`hashnb.train.run_method`.
    bits : code lengths pre-rendered as static tabs (these are in the built book).
    seed : run seed (also seeds subsampling and the embedding).
    run_kwargs : extra arguments of ``run_method`` (epochs, lr, method_kwargs, progress, ...);
        the same values hit the same cached runs as the chapter's own cells.
    min_bits, max_bits : range of :data:`CANDIDATE_BITS` offered by the live control; lengths
        the method cannot build for this dataset (e.g. ITQ above the input dimension, CSQ at
        4 bits for 10 classes) are left out.
    panels, max_points, show_centers : see :func:`render_bits`. The book uses UMAP; tests use
        ``panels=("pca", "hist")``.
    title : shown above the tabs; default ``"<METHOD> on <dataset>"``.

    Examples
    --------
    >>> ex = BitLengthExplorer("csq", ds, split, run_kwargs={"epochs": 60, "progress": False})
    >>> ex.show()          # tabs for 8/16/32/64 bits; in Jupyter/Colab also a live control
    >>> ex._render(12)     # what the "train / load" button does, without a frontend
    """

    def __init__(self, name: str, dataset, split, *, bits: Iterable[int] = (8, 16, 32, 64),
                 seed: int = 0, run_kwargs: Mapping | None = None, min_bits: int = 4,
                 max_bits: int = 64, panels: Sequence = ("umap", "hist"),
                 max_points: int = 2000, show_centers: bool = True, title: str | None = None):
        self.name = name
        self.dataset = dataset
        self.split = split
        self.bits = sorted({_check_bits_value(b) for b in bits})
        if not self.bits:
            raise ValueError("bits is empty; give the code lengths to pre-render, e.g. (16, 32)")
        self.seed = seed
        self.run_kwargs = _run_kwargs(run_kwargs)
        min_bits, max_bits = _check_bits_value(min_bits), _check_bits_value(max_bits)
        if min_bits > max_bits:
            raise ValueError(f"min_bits ({min_bits}) must be <= max_bits ({max_bits})")
        self.min_bits, self.max_bits = min_bits, max_bits
        self.panels = _check_panels(panels)
        self.max_points = max_points
        self.show_centers = show_centers
        self.title = title or f"{name.upper()} on {getattr(dataset, 'name', 'data')}"
        self.results: dict[int, dict] = {}  # bits -> {"figure", "map", "metrics", "run"}
        self.widget = None
        self._choices: list[int] | None = None

    # -- plain logic (unit-tested) -------------------------------------------------------
    def supports(self, bits: int) -> str | None:
        """None when the method can be built with ``bits`` for this dataset, else why not."""
        try:
            b = _check_bits_value(bits)
            method_from_dataset(self.name, self.dataset, bits=b,
                                **dict(self.run_kwargs.get("method_kwargs") or {}))
        except ValueError as err:
            return str(err)
        return None

    def choices(self) -> list[int]:
        """Code lengths the live control offers: candidates in range that the method builds."""
        if self._choices is None:
            cand = sorted({b for b in CANDIDATE_BITS if self.min_bits <= b <= self.max_bits}
                          | set(self.bits))
            self._choices = [b for b in cand if self.supports(b) is None]
        return list(self._choices)

    def figures(self) -> dict[int, dict]:
        """The pre-rendered lengths (``bits``), computed once: ``{bits: {...}}``."""
        todo = [b for b in self.bits if b not in self.results]
        if todo:
            self.results.update(bit_figures(self.name, self.dataset, self.split, bits=todo,
                                            seed=self.seed, run_kwargs=self.run_kwargs,
                                            panels=self.panels, max_points=self.max_points,
                                            show_centers=self.show_centers))
        return {b: self.results[b] for b in self.bits}

    def static(self) -> StaticTabs:
        """:func:`static_tabs` of the pre-rendered lengths."""
        return static_tabs(self.figures(), title=self.title)

    def _render(self, bits) -> dict:
        """Train or load ``bits`` and draw the panels; never raises for bad input or failures.

        Returns
        -------
        dict
            ``{"bits", "ok": bool, "figure": Figure | None, "map": float | None,
            "run": Run | None, "message": str}``. On failure ``ok`` is False and ``message``
            says why (e.g. ``run_method``'s ``ValueError`` for an unsupported length).
        """
        label = f"{self.name.upper()} at {bits!r} bits"
        try:
            b = _check_bits_value(bits)
            label = f"{self.name.upper()} at {b} bits"
            if b not in self.results:
                run = run_method(self.name, self.dataset, self.split, bits=b, seed=self.seed,
                                 **self.run_kwargs)
                res = render_bits(run, panels=self.panels, max_points=self.max_points,
                                  seed=self.seed, show_centers=self.show_centers)
                self.results[b] = {**res, "run": run}
            r = self.results[b]
            return {"bits": b, "ok": True, "figure": r["figure"], "map": r["map"],
                    "run": r["run"], "message": f"{label}: tie-aware mAP@all = {r['map']:.3f} "
                                                f"({_describe(self.dataset, self.split, self.seed)})"}
        except ValueError as err:
            msg = f"{label} is not available: {err}"
        except Exception as err:  # noqa: BLE001 - shown to the user instead of the widget log
            tb = "".join(traceback.format_exception_only(type(err), err)).strip()
            msg = f"{label} failed: {tb}"
        return {"bits": bits, "ok": False, "figure": None, "map": None, "run": None,
                "message": msg}

    # -- widget wiring -------------------------------------------------------------------
    def _result_outputs(self, res: dict) -> list:
        """Display objects for a :meth:`_render` result (image + caption, or the error)."""
        from IPython.display import HTML, Image

        if not res["ok"]:
            return [HTML(f'<div class="hnb-error" style="color:#b00020;white-space:pre-wrap">'
                         f"{html.escape(res['message'])}</div>")]
        png = _figure_bytes(res["figure"], "png", 90)
        return [Image(data=png, format="png"), HTML(f"<p>{html.escape(res['message'])}</p>")]

    def _on_click(self, _button=None) -> None:
        """The "train / load" callback: everything it does is caught and shown in ``_out``."""
        from IPython.display import clear_output, display

        ctl = self._controls
        b = ctl["bits"].value
        ctl["button"].disabled = True
        ctl["status"].value = f"<i>training or loading {html.escape(str(b))} bits ...</i>"
        try:
            with self._out:
                clear_output(wait=True)
                res = self._render(b)  # progress bars of training appear here meanwhile
                clear_output(wait=True)
                for obj in self._result_outputs(res):
                    display(obj)
            ctl["status"].value = "" if res["ok"] else "<b>could not render</b> (see below)"
        except Exception as err:  # noqa: BLE001 - never raise into the widget machinery
            ctl["status"].value = (f'<span style="color:#b00020">{html.escape(type(err).__name__)}: '
                                   f"{html.escape(str(err))}</span>")
        finally:
            ctl["button"].disabled = False

    def build_widget(self, widgets=None):
        """The live control (ipywidgets ``VBox``): a code-length dropdown, a button, output."""
        W = widgets or _import_ipywidgets()
        if W is None:
            raise ImportError("ipywidgets is not installed; pip install ipywidgets")
        opts = [(f"{b} bits" + (" (tab above)" if b in self.bits else ""), b)
                for b in self.choices()]
        if not opts:
            raise ValueError(f"{self.name} supports none of the code lengths between "
                             f"{self.min_bits} and {self.max_bits} on this dataset")
        new = [b for _, b in opts if b not in self.bits]
        dd = W.Dropdown(options=opts, value=new[0] if new else opts[0][1],
                        description="code length", style={"description_width": "initial"})
        button = W.Button(description="train / load", icon="play", button_style="primary",
                          tooltip="run_method for this length (cached runs load instantly), "
                                  "then redraw the panels")
        status = W.HTML("")
        note = W.HTML("<small>Live control: needs a running Python kernel (Jupyter, Colab). "
                      "The tabs above are pre-rendered.</small>")
        self._out = W.Output()
        self._controls = {"bits": dd, "button": button, "status": status}
        button.on_click(self._on_click)
        # CSS classes the JupyterLab check (tests/test_browser.py) drives the explorer by
        dd.add_class("hnb-action-input")
        button.add_class("hnb-action")
        self._out.add_class("hnb-explorer-out")
        self.widget = W.VBox([note, W.HBox([dd, button]), status, self._out])
        self.widget.add_class("hnb-explorer")
        self.widget.add_class("hnb-explorer-bits")
        return self.widget

    def show(self, *, live: bool | None = None):
        """Display the static tabs and, when ``live``, the live control; returns the widget
        or None.

        ``live=None`` (default) shows the control when ipywidgets imports, a kernel is
        running and the environment variable ``HASHNB_LIVE_WIDGETS`` is not ``0``. Set
        ``HASHNB_LIVE_WIDGETS=0`` for static builds: the book's executing kernel is a live
        kernel too, and a control saved into static HTML can never run its callback.
        Without ipywidgets a note is printed and only the tabs are shown.
        """
        from IPython.display import display

        display(self.static())
        if live is None and os.environ.get("HASHNB_LIVE_WIDGETS", "1").strip().lower() in (
                "0", "false", "no", "off"):
            live = False
        if live is False:
            return None
        W = _import_ipywidgets()
        if W is None:
            print("ipywidgets is not installed: only the pre-rendered tabs are shown. "
                  "`pip install ipywidgets` for a live control that trains any code length.")
            return None
        if live is None and not _in_kernel():
            return None
        try:
            w = self.build_widget(W)
        except ValueError as err:
            print(f"no live control: {err}")
            return None
        display(w)
        return w

    def __repr__(self) -> str:
        return (f"BitLengthExplorer({self.name!r}, bits={self.bits}, seed={self.seed}, "
                f"panels={self.panels})")


# --------------------------------------------------------------------------- option tabs
def option_tabs(panels: Mapping[str, str], *, title: str | None = None,
                selected: str | None = None, text: str | None = None,
                group_label: str | None = None) -> StaticTabs:
    """Pre-rendered tabs over arbitrary options (metric, protocol, database size, ...).

    The same pure HTML + CSS technique as :func:`static_tabs` (hidden radio inputs, labels,
    ``:checked ~`` sibling selectors scoped to a fresh random id; no JavaScript, no kernel),
    but each panel is given as ready HTML and each tab is labelled by its key. Tab groups
    nest: a panel may itself hold an :func:`option_tabs` markup (``.html``), and every
    selector uses the child combinator, so the inner group never reacts to the outer one.

    Parameters
    ----------
    panels : dict
        ``{label: html}`` in display order; ``html`` is a string or an object with
        ``_repr_html_`` / ``.html`` (e.g. another :class:`StaticTabs`). Labels are escaped
        and shown on the tab; the panel's ``aria-label`` is the same text.
    title : str, optional
        Shown above the tabs.
    selected : str, optional
        The label whose tab is open first; default the first one.
    text : str, optional
        The ``text/plain`` form; default the title and the labels.
    group_label : str, optional
        ``aria-label`` of the tab group (what the options are, e.g. "metric").

    Returns
    -------
    StaticTabs
        With ``.keys`` the labels in order (``.bits`` is the same list).
    """
    if not isinstance(panels, Mapping) or not panels:
        raise ValueError("panels must be a non-empty dict {label: html}")
    labels = [str(k) for k in panels]
    if len(set(labels)) != len(labels):
        raise ValueError(f"duplicate tab labels: {labels}")
    if selected is None:
        selected = labels[0]
    if str(selected) not in labels:
        raise ValueError(f"selected={selected!r} is not one of the tab labels {labels}")
    uid = f"hnb-opt-{uuid.uuid4().hex[:12]}"
    esc = html.escape
    keys = [f"o{i}" for i in range(len(labels))]  # ids/CSS never depend on label text
    tabs, body = [], []
    for key, label, content in zip(keys, labels, panels.values()):
        if hasattr(content, "_repr_html_"):
            content = content._repr_html_()
        elif not isinstance(content, str):
            raise ValueError(f"panels[{label!r}] must be an HTML string, got "
                             f"{type(content).__name__}")
        check = " checked" if label == str(selected) else ""
        tabs.append(f'<input type="radio" name="{uid}" id="{uid}-{key}" value="{esc(label)}"'
                    f'{check}><label for="{uid}-{key}">{esc(label)}</label>')
        body.append(f'<div class="hnb-panel hnb-panel-{key}" role="tabpanel" '
                    f'aria-label="{esc(label)}">{content}</div>')
    title_html = f'<div class="hnb-title">{esc(title)}</div>' if title else ""
    markup = (f'<div class="hnb-tabs hnb-option-tabs" id="{uid}" role="group" '
              f'aria-label="{esc(group_label or title or "options")}">'
              f"<style>{_css(uid, keys)}</style>{title_html}{''.join(tabs)}{''.join(body)}</div>")
    if text is None:
        text = f"{title or 'Options'} (pre-rendered tabs): " + ", ".join(labels)
    return StaticTabs(markup, text, uid, labels, keys=labels)


# --------------------------------------------------------------------------- shared live plumbing
def _live_disabled() -> bool:
    return os.environ.get("HASHNB_LIVE_WIDGETS", "1").strip().lower() in ("0", "false", "no",
                                                                          "off")


def _show(static_obj, build_widget, live: bool | None, what: str):
    """Display ``static_obj`` and, when live (see :meth:`BitLengthExplorer.show`), the
    control made by ``build_widget(ipywidgets)``. Returns the widget or None."""
    from IPython.display import display

    display(static_obj)
    if live is None and _live_disabled():
        live = False
    if live is False:
        return None
    W = _import_ipywidgets()
    if W is None:
        print(f"ipywidgets is not installed: only the pre-rendered tabs are shown. "
              f"`pip install ipywidgets` for {what}.")
        return None
    if live is None and not _in_kernel():
        return None
    w = build_widget(W)
    display(w)
    return w


def _output_bundle(html_text: str, text: str) -> dict:
    """One ``display_data`` output for an ``ipywidgets.Output``'s ``outputs`` trait.

    Assigning ``out.outputs = (bundle,)`` replaces the area's content in one message (no
    flicker, no ``clear_output`` that needs the kernel's output context), and works the
    same in a unit test without a front end.
    """
    return {"output_type": "display_data", "metadata": {},
            "data": {"text/html": html_text, "text/plain": text}}


def _pos_int(v, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{what} must be a positive integer, got {v!r}")
    return int(v)


def _error_html(message: str) -> str:
    return (f'<div class="hnb-error" style="color:#b00020;white-space:pre-wrap">'
            f"{html.escape(message)}</div>")


def _img_html(fig, alt: str, dpi: int = 80) -> str:
    data = base64.b64encode(_figure_bytes(fig, "png", dpi)).decode("ascii")
    return (f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}" '
            f'style="max-width:100%;height:auto;background:#fff">')


def _view_html(kind: str, state: Mapping, table_html: str, img_html: str, caption: str,
               *, stacked: bool = False) -> str:
    """The rendered view of an explorer: a table and a figure, a caption.

    Side by side (wrapping on narrow pages), or ``stacked`` for wide tables: the table on
    top, its cells kept on one line and scrolled sideways when the page is narrow.
    ``data-*`` attributes name the state it shows (read by the browser checks and tests).
    """
    attrs = " ".join(f'data-{k}="{html.escape(str(v))}"' for k, v in state.items())
    if stacked:
        body = (f'<div style="overflow-x:auto;font-size:.85em;white-space:nowrap">{table_html}'
                f'</div><div style="max-width:40em">{img_html}</div>')
    else:
        body = (f'<div style="display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start">'
                f'<div style="flex:1 1 24em;overflow-x:auto;font-size:.85em">{table_html}</div>'
                f'<div style="flex:1 1 26em">{img_html}</div></div>')
    return (f'<div class="hnb-view hnb-view-{kind}" {attrs}>{body}'
            f'<p style="font-size:.85em;color:#555;margin:.3em 0">{html.escape(caption)}</p>'
            f"</div>")


def _df_html(df) -> str:
    return df.to_html(escape=True, border=0, classes="dataframe hnb-table", na_rep="–")


# --------------------------------------------------------------------------- leaderboard
#: Metrics of a benchmark record (``record["metrics"]``) and their display names.
METRICS = {"map": "mAP@all", "map@1000": "mAP@1000", "p@1000": "P@1000",
           "p@r2": "P@r≤2 (precision within Hamming radius 2)"}
_METRIC_SHORT = {"map": "mAP@all", "map@1000": "mAP@1000", "p@1000": "P@1000", "p@r2": "P@r≤2"}


def committed_protocols(root: str | os.PathLike | None = None) -> dict:
    """The committed benchmark folders of the book, by name.

    ``root/cpu`` (the cpu profile, tuned configurations: ``"cifar10 (tuned)"``),
    ``root/cpu-pool`` (ADSH/MAH on their own protocol, tuned: ``"cifar10-1, database pool
    (tuned)"``) and every folder under ``root/protocols`` that holds result JSON files, made
    with each method's default configuration before tuning (``"cifar10 (defaults)"``,
    ``"cifar10-1 (defaults)"``, ...). ``root`` defaults to ``results`` or ``book/results``,
    whichever exists (a notebook runs from ``book/``, tests from the repository root).

    Returns
    -------
    dict
        ``{name: Path}`` in that order.
    """
    root = results_dir() if root is None else Path(root)
    out: dict = {}
    for folder, name in ((root / "cpu", "cifar10 (tuned)"),
                         (root / "cpu-pool", "cifar10-1, database pool (tuned)")):
        if any(folder.glob("*.json")):
            out[name] = folder
    for folder in sorted((root / "protocols").glob("*")):
        if folder.is_dir() and any(folder.glob("*.json")):
            out[f"{folder.name} (defaults)"] = folder
    if not out:
        raise FileNotFoundError(f"no result JSON files under {root}/cpu, {root}/cpu-pool or "
                                f"{root}/protocols/*")
    return out


class LeaderboardExplorer:
    """The benchmark leaderboard, redrawn for a metric, a protocol and a set of code lengths.

    Reads the result JSON files written by ``python -m hashnb.bench run`` (one record per
    method, code length and seed; :func:`hashnb.matrix.load_results`). Every view is a
    table (mean ± std over seeds, the number of seeds in brackets,
    :func:`hashnb.matrix.summarize`) and the metric-vs-bits plot
    (:func:`hashnb.viz.plot_map_vs_bits`), both from the same records.

    * Static: :meth:`static` -- tabs per metric, inside each tabs per protocol, all code
      lengths (pure HTML + CSS, :func:`option_tabs`).
    * Live: :meth:`build_widget` -- a metric and a protocol dropdown and one checkbox per
      code length; any change redraws the view (:meth:`redraw`), in the kernel.

    Parameters
    ----------
    protocols : dict
        ``{name: folder | list of records}``, e.g. :func:`committed_protocols`.
    metrics : sequence of keys of :data:`METRICS` offered (default all four).
    title : shown above the static tabs.
    """

    def __init__(self, protocols: Mapping, *, metrics: Sequence[str] = tuple(METRICS),
                 title: str | None = None):
        if not isinstance(protocols, Mapping) or not protocols:
            raise ValueError("protocols must be a non-empty dict {name: folder or records}")
        self.records: dict[str, list] = {}
        self.sources: dict[str, str] = {}
        for name, src in protocols.items():
            if isinstance(src, (str, os.PathLike)):
                recs = load_results(src)
                self.sources[str(name)] = str(src)
            else:
                recs = list(src)
                self.sources[str(name)] = "records"
            if not recs:
                raise ValueError(f"protocol {name!r}: no result records in {src}")
            self.records[str(name)] = recs
        self.metrics = [m for m in metrics]
        bad = [m for m in self.metrics if m not in METRICS]
        if bad or not self.metrics:
            raise ValueError(f"unknown metrics {bad}; choose from {list(METRICS)}")
        for name, recs in self.records.items():
            missing = [m for m in self.metrics if any(m not in r["metrics"] for r in recs)]
            if missing:
                raise ValueError(f"protocol {name!r}: some records lack metrics {missing}")
        self.title = title or "Leaderboard explorer"
        self.widget = None
        self.last_html: str | None = None  # the view the live control shows now
        self._controls: dict = {}

    # -- plain logic (unit-tested) -------------------------------------------------------
    @property
    def protocols(self) -> list[str]:
        return list(self.records)

    def bits(self, protocol: str) -> list[int]:
        """Code lengths with at least one record under ``protocol``."""
        return sorted({int(r["bits"]) for r in self._records(protocol)})

    def _records(self, protocol: str) -> list:
        if protocol not in self.records:
            raise ValueError(f"unknown protocol {protocol!r}; choose from {self.protocols}")
        return self.records[protocol]

    def _check(self, metric, protocol, bits):
        if metric not in self.metrics:
            raise ValueError(f"unknown metric {metric!r}; choose from {self.metrics}")
        recs = self._records(protocol)
        avail = self.bits(protocol)
        bits = avail if bits is None else sorted({_check_bits_value(b) for b in bits})
        if not bits:
            raise ValueError("no code length selected; tick at least one")
        extra = [b for b in bits if b not in avail]
        if extra:
            raise ValueError(f"protocol {protocol!r} has no results at {extra} bits "
                             f"(it has {avail})")
        return [r for r in recs if int(r["bits"]) in bits], bits

    def means(self, metric: str = "map", protocol: str | None = None, bits=None):
        """Numeric table: rows methods, columns code lengths, cells the mean over seeds."""
        import pandas as pd

        protocol = self.protocols[0] if protocol is None else protocol
        recs, bits = self._check(metric, protocol, bits)
        df = pd.DataFrame([{"method": r["method"], "bits": int(r["bits"]),
                            "value": float(r["metrics"][metric])} for r in recs])
        t = df.pivot_table(index="method", columns="bits", values="value", aggfunc="mean")
        t = t.reindex(columns=bits)
        # rank on the lengths most methods have (MAH alone runs 4/6/12 bits): a method's
        # mean over those, methods without any of them last (then by their own mean)
        counts = t.notna().sum()
        common = [b for b in bits if counts[b] == counts.max()]
        key = pd.DataFrame({"common": t[common].mean(axis=1), "own": t.mean(axis=1)})
        order = key.sort_values(["common", "own"], ascending=False, na_position="last",
                                kind="stable").index
        return t.loc[order]

    def table(self, metric: str = "map", protocol: str | None = None, bits=None):
        """Display table: ``"mean ± std (seeds)"`` per method and code length, methods
        sorted by their mean over the selected lengths (best first)."""
        protocol = self.protocols[0] if protocol is None else protocol
        recs, bits = self._check(metric, protocol, bits)
        means = self.means(metric, protocol, bits)
        t = summarize(recs, metric)
        t = t.droplevel([lv for lv in ("dataset", "protocol") if lv in t.index.names])
        t = t.reindex(index=means.index, columns=bits).fillna("–")
        t.columns = [f"{b} bits" for b in bits]
        t.columns.name = _METRIC_SHORT[metric]
        return t

    def figure(self, metric: str = "map", protocol: str | None = None, bits=None):
        """The metric against code length per method (mean ± std over seeds)."""
        from matplotlib.figure import Figure

        protocol = self.protocols[0] if protocol is None else protocol
        recs, bits = self._check(metric, protocol, bits)
        fig = Figure(figsize=(6.4, 4.2))
        ax = fig.subplots()
        plot_map_vs_bits(results_by_method(recs, metric), ax=ax, ylabel=_METRIC_SHORT[metric],
                         title=f"{_METRIC_SHORT[metric]}, protocol {protocol}")
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        return fig

    def describe(self, protocol: str) -> str:
        recs = self._records(protocol)
        r0 = recs[0]
        sizes = r0.get("split_sizes", {})
        split = ", ".join(f"{v:,} {k}" for k, v in sizes.items())
        seeds = sorted({r["seed"] for r in recs})
        return (f"{r0.get('dataset', '?')} / protocol {r0.get('protocol', protocol)} "
                f"({split}); {len(recs)} results, seeds {', '.join(map(str, seeds))}; "
                f"source {self.sources[protocol]}")

    def view_html(self, metric: str = "map", protocol: str | None = None, bits=None) -> str:
        """The table and the plot side by side, with a caption (HTML)."""
        protocol = self.protocols[0] if protocol is None else protocol
        _, bits = self._check(metric, protocol, bits)
        table = self.table(metric, protocol, bits)
        fig = self.figure(metric, protocol, bits)
        name = METRICS[metric]
        caption = (f"{name}, tie-aware, query vs database, mean ± std over seeds (number of "
                   f"seeds); rows sorted by the mean over the code lengths shown that most "
                   f"methods have. "
                   f"{self.describe(protocol)}.")
        return _view_html("leaderboard", {"metric": metric, "protocol": protocol,
                                          "bits": ",".join(map(str, bits))},
                          _df_html(table), _img_html(fig, f"{name} vs code length, {protocol}"),
                          caption, stacked=True)

    def _render(self, metric, protocol, bits) -> dict:
        """What a control change does, without a frontend; never raises.

        Returns ``{"ok": bool, "html": str, "message": str}``.
        """
        if bits is not None and not list(bits):  # every box unticked: a hint, not an error
            msg = "No code length selected: tick at least one."
            return {"ok": False, "message": msg,
                    "html": f'<p class="hnb-note" style="color:#555"><i>{msg}</i></p>'}
        try:
            return {"ok": True, "html": self.view_html(metric, protocol, bits),
                    "message": f"{_METRIC_SHORT.get(metric, metric)}, {protocol}, "
                               f"{', '.join(map(str, sorted(bits)))} bits"}
        except ValueError as err:
            msg = str(err)
        except Exception as err:  # noqa: BLE001 - shown to the reader, not the widget log
            msg = "".join(traceback.format_exception_only(type(err), err)).strip()
        return {"ok": False, "html": _error_html(msg), "message": msg}

    def static(self) -> StaticTabs:
        """Tabs per metric, in each tabs per protocol (all code lengths of the protocol)."""
        outer = {}
        for m in self.metrics:
            inner = {p: self.view_html(m, p) for p in self.protocols}
            outer[_METRIC_SHORT[m]] = option_tabs(inner, group_label="protocol")
        lines = [f"{self.title} (pre-rendered): metrics {', '.join(self.metrics)}; "
                 f"protocols {', '.join(self.protocols)}"]
        for p in self.protocols:
            top = self.means("map", p).mean(axis=1)
            lines.append(f"  {p}: best mAP@all (mean over bits) {top.index[0]} {top.iloc[0]:.3f}")
        return option_tabs(outer, title=self.title, text="\n".join(lines), group_label="metric")

    # -- widget wiring -------------------------------------------------------------------
    def _bits_boxes(self, W, protocol):
        boxes = []
        for b in self.bits(protocol):
            cb = W.Checkbox(value=True, description=f"{b}", indent=False,
                            layout=W.Layout(width="auto", margin="0 .8em 0 0"))
            cb.add_class("hnb-redraw")
            cb.observe(self.redraw, names="value")
            boxes.append(cb)
        return boxes

    def state(self) -> tuple:
        """(metric, protocol, bits) that the live control shows."""
        c = self._controls
        bits = [int(cb.description) for cb in c["bits"].children if cb.value]
        return c["metric"].value, c["protocol"].value, bits

    def redraw(self, _change=None) -> None:
        """Redraw the view for the controls' current values (the ``observe`` callback)."""
        if self._controls.get("busy"):
            return
        metric, protocol, bits = self.state()
        res = self._render(metric, protocol, bits)
        self.last_html = res["html"]
        self._controls["out"].outputs = (_output_bundle(res["html"], res["message"]),)

    def _on_protocol(self, change) -> None:
        W = self._controls["W"]
        self._controls["busy"] = True  # one redraw for the whole change, not one per box
        try:
            self._controls["bits"].children = self._bits_boxes(W, change["new"])
        finally:
            self._controls["busy"] = False
        self.redraw()

    def build_widget(self, widgets=None):
        """The live control: metric and protocol dropdowns, code-length checkboxes, view."""
        W = widgets or _import_ipywidgets()
        if W is None:
            raise ImportError("ipywidgets is not installed; pip install ipywidgets")
        style = {"description_width": "initial"}
        metric = W.Dropdown(options=[(METRICS[m], m) for m in self.metrics],
                            value=self.metrics[0], description="metric", style=style)
        protocol = W.Dropdown(options=self.protocols, value=self.protocols[0],
                              description="protocol", style=style)
        for dd in (metric, protocol):
            dd.add_class("hnb-redraw")
        out = W.Output()
        out.add_class("hnb-explorer-out")
        self._controls = {"W": W, "metric": metric, "protocol": protocol, "out": out}
        self._controls["bits"] = W.HBox(self._bits_boxes(W, protocol.value))
        metric.observe(self.redraw, names="value")
        protocol.observe(self._on_protocol, names="value")
        note = W.HTML("<small>Live control: needs a running Python kernel (Jupyter, Colab); "
                      "every change redraws the table and the plot from the result files. "
                      "The tabs above are pre-rendered.</small>")
        self.widget = W.VBox([note, W.HBox([metric, protocol]),
                              W.HBox([W.HTML("code lengths:&nbsp;"), self._controls["bits"]]),
                              out])
        self.widget.add_class("hnb-explorer")
        self.widget.add_class("hnb-explorer-leaderboard")
        self.redraw()
        return self.widget

    def show(self, *, live: bool | None = None):
        """Display the static tabs and, in a live kernel, the control (see
        :meth:`BitLengthExplorer.show` for ``live`` and ``HASHNB_LIVE_WIDGETS``)."""
        return _show(self.static(), self.build_widget, live,
                     "a live control that redraws the leaderboard")

    def __repr__(self) -> str:
        return (f"LeaderboardExplorer(protocols={self.protocols}, metrics={self.metrics})")


def leaderboard_explorer(protocols: Mapping | None = None, *, root=None, **kwargs):
    """:class:`LeaderboardExplorer` over ``protocols`` (default :func:`committed_protocols`
    of ``root``)."""
    return LeaderboardExplorer(protocols if protocols is not None
                               else committed_protocols(root), **kwargs)


# --------------------------------------------------------------------------- search
_INDEX_INFO = {
    "flat": ("FAISS IndexBinaryFlat", "exact", "k"),
    "hashnb": ("hashnb torch scan", "exact", "tab:gray"),
    "mih": ("multi-index hashing (hashnb.mih)", "exact", "tab:red"),
    "multihash": ("FAISS IndexBinaryMultiHash", "approximate", "tab:orange"),
    "hnsw": ("FAISS IndexBinaryHNSW", "approximate", "tab:blue"),
    "ivf": ("FAISS IndexBinaryIVF", "approximate", "tab:green"),
}


def _search_frame(rows, indexes, max_n: Mapping, n: int):
    """Rows of ``hashnb.bench`` search results -> one display row per index."""
    import pandas as pd

    by = {r["index"]: r for r in rows}
    flat = by.get("flat")
    out = []
    for ix in indexes:
        name, kind, _ = _INDEX_INFO.get(ix, (ix, "", None))
        r = by.get(ix)
        if r is None:
            lim = max_n.get(ix)
            out.append({"index": ix, "what": f"{name} ({kind})",
                        "queries/s": None, "× flat": None, "recall@k": None, "MiB": None,
                        "bytes / code": None, "build s": None,
                        "note": f"not built at n = {n:,}" + (f" (up to {lim:,})" if lim else "")})
            continue
        out.append({"index": ix, "what": f"{name} ({kind})", "queries/s": r["qps"],
                    "× flat": r["qps"] / flat["qps"] if flat else None,
                    "recall@k": r["recall"], "MiB": r["bytes"] / 2**20,
                    "bytes / code": r["bytes_per_code"], "build s": r["build_s"], "note": ""})
    return pd.DataFrame(out).set_index("index")


def _format_search(df):
    fmt = {"queries/s": "{:,.0f}", "× flat": "{:.2f}", "recall@k": "{:.3f}", "MiB": "{:,.2f}",
           "bytes / code": "{:.1f}", "build s": "{:.3f}"}
    shown = df.copy().astype(object)
    for col, f in fmt.items():
        shown[col] = [("–" if v is None or v != v else f.format(v)) for v in df[col]]
    return shown


def _search_figure(df, title: str):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.2, 3.0))
    ax_q, ax_m = fig.subplots(1, 2, sharey=True)
    names = list(df.index)
    y = np.arange(len(names))
    colors = [_INDEX_INFO.get(i, ("", "", "C0"))[2] for i in names]
    for ax, col, label in [(ax_q, "queries/s", "queries/s (log)"), (ax_m, "MiB", "MiB (log)")]:
        vals = np.array([np.nan if v is None else float(v) for v in df[col]], dtype=float)
        ok = ~np.isnan(vals)
        ax.barh(y[ok], vals[ok], color=[c for c, o in zip(colors, ok) if o])
        for yi in y[~ok]:
            ax.text(0.02, yi, "not built at this n", va="center", fontsize=7, color="0.4",
                    transform=ax.get_yaxis_transform())
        if ok.any():
            ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.grid(axis="x", alpha=0.3)
    ax_q.set_yticks(y, names)
    ax_q.invert_yaxis()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


class SearchExplorer:
    """Queries/s and memory per search index, for a code length and a database size.

    Reads a committed ``python -m hashnb.bench search`` JSON (e.g.
    ``book/results/search/scale_random.json``: uniform random codes, k = 10, one thread).
    Every view is a table (queries/s, speed relative to the flat scan, tie-aware recall@k,
    memory, build time) and a bar chart of queries/s and memory, per index.

    * Static: :meth:`static` -- tabs per code length, inside each tabs per database size.
    * Live: :meth:`build_widget` -- code-length and database-size dropdowns (any change
      redraws the committed view, :meth:`redraw`) and a "search live" button that builds
      every index on a *small* random database here (:func:`hashnb.bench.bench_search`,
      size from ``live_sizes``) and shows its own timings beside the committed ones.

    Parameters
    ----------
    scale : dict or path
        The JSON (``{"config", "results", "provenance"}``) or its path.
    live_sizes : database sizes offered for the live search (kept small: every index is
        built each time; HNSW only up to ``live_max_n["hnsw"]``).
    live_queries : queries per live search.
    """

    def __init__(self, scale, *, live_sizes: Sequence[int] = (2_000, 10_000, 50_000),
                 live_queries: int = 50, live_max_n: Mapping | None = None,
                 title: str | None = None):
        import json

        if isinstance(scale, (str, os.PathLike)):
            self.source = str(scale)
            scale = json.loads(Path(scale).read_text())
        else:
            self.source = "results"
        if not isinstance(scale, Mapping) or not scale.get("results"):
            raise ValueError("scale must be a `hashnb.bench search` result (a dict with "
                             "'results') or the path of its JSON")
        self.scale = scale
        self.rows = list(scale["results"])
        self.config = dict(scale.get("config", {}))
        self.k = int(self.config.get("k", self.rows[0].get("k", 10)))
        seen = []
        for r in self.rows:
            if r["index"] not in seen:
                seen.append(r["index"])
        self.indexes = [i for i in self.config.get("indexes", seen) if i in seen] or seen
        self.max_n = dict(self.config.get("max_n", {}))
        self.live_sizes = sorted({_pos_int(n, "a live database size") for n in live_sizes})
        if not self.live_sizes:
            raise ValueError("live_sizes is empty")
        self.live_queries = _pos_int(live_queries, "live_queries")
        self.live_max_n = {"hnsw": 10_000, **dict(live_max_n or {})}
        self.title = title or "Search explorer"
        self.widget = None
        self.last_html: str | None = None       # committed view the live control shows
        self.last_live: dict | None = None      # last live search result
        self._controls: dict = {}

    # -- plain logic (unit-tested) -------------------------------------------------------
    @property
    def bits(self) -> list[int]:
        return sorted({int(r["bits"]) for r in self.rows})

    def sizes(self, bits: int | None = None) -> list[int]:
        return sorted({int(r["n"]) for r in self.rows
                       if bits is None or int(r["bits"]) == int(bits)})

    def default_n(self, bits: int) -> int:
        """The largest database size at which every index was built (else the largest)."""
        sizes = self.sizes(bits)
        full = [n for n in sizes
                if {r["index"] for r in self.rows if int(r["bits"]) == int(bits)
                    and int(r["n"]) == n} >= set(self.indexes)]
        return (full or sizes)[-1]

    def _rows(self, bits, n) -> list:
        b, n = _check_bits_value(bits), _pos_int(n, "the database size n")
        if b not in self.bits:
            raise ValueError(f"no committed results at {b} bits (there are {self.bits})")
        if n not in self.sizes(b):
            raise ValueError(f"no committed results at n = {n:,} for {b} bits "
                             f"(there are {self.sizes(b)})")
        return [r for r in self.rows if int(r["bits"]) == b and int(r["n"]) == n]

    def table(self, bits: int, n: int):
        """Numeric table, one row per index (None where it was not built at this size)."""
        return _search_frame(self._rows(bits, n), self.indexes, self.max_n, int(n))

    def figure(self, bits: int, n: int):
        return _search_figure(self.table(bits, n),
                              f"committed: {bits}-bit codes, n = {int(n):,}, k = {self.k}")

    def _caption(self, n: int) -> str:
        prov = self.scale.get("provenance", {})
        where = (f"measured {prov.get('time_utc', '?')} on {prov.get('cpu', '?')} "
                 f"({prov.get('cpu_count', '?')} cores), commit {str(prov.get('commit', '?'))[:10]}"
                 if prov else "")
        q = self.config.get("queries", "?")
        return (f"{self.config.get('data', '')} codes, {int(n):,} in the database, {q} queries, "
                f"k = {self.k}, {self.config.get('threads', 1)} thread(s), best of "
                f"{self.config.get('repeats', 1)}; recall is tie-aware recall@k against the "
                f"exact scan; memory as the index serialises. {where}; source {self.source}.")

    def view_html(self, bits: int, n: int) -> str:
        df = self.table(bits, n)
        return _view_html("search", {"bits": int(bits), "n": int(n)},
                          _df_html(_format_search(df)),
                          _img_html(self.figure(bits, n),
                                    f"queries/s and memory per index, {bits} bits, n = {int(n):,}"),
                          self._caption(n))

    def _render(self, bits, n) -> dict:
        """What a control change does, without a frontend; never raises."""
        try:
            return {"ok": True, "html": self.view_html(bits, n),
                    "message": f"{bits} bits, n = {int(n):,}"}
        except ValueError as err:
            msg = str(err)
        except Exception as err:  # noqa: BLE001
            msg = "".join(traceback.format_exception_only(type(err), err)).strip()
        return {"ok": False, "html": _error_html(msg), "message": msg}

    def live_search(self, bits: int, n: int, *, seed: int = 0) -> dict:
        """Build and time every index on ``n`` random ``bits``-bit codes, here and now.

        Returns ``{"ok", "table" (numeric, per index), "html", "seconds", "message"}``;
        never raises (a failure is in ``message`` and ``html``).
        """
        import time

        try:
            b, n = _check_bits_value(bits), _pos_int(n, "the database size n")

            t0 = time.perf_counter()
            res = bench_search(sizes=(n,), bits=(b,), queries=self.live_queries, k=self.k,
                               indexes=tuple(self.indexes), kind="random", repeats=1,
                               seed=seed, max_n=self.live_max_n, progress=False)
            secs = time.perf_counter() - t0
            df = _search_frame(res["results"], self.indexes, self.live_max_n, n)
            fig = _search_figure(df, f"live, here: {b}-bit codes, n = {n:,}, k = {self.k}")
            caption = (f"Live on this machine: {n:,} random {b}-bit codes, "
                       f"{self.live_queries} queries, k = {self.k}, one thread, one repeat "
                       f"(noisier than the committed best-of-{self.config.get('repeats', 1)}); "
                       f"all indexes built and searched in {secs:.1f} s.")
            out = {"ok": True, "table": df, "seconds": secs, "bits": b, "n": n,
                   "html": _view_html("search-live", {"bits": b, "n": n},
                                      _df_html(_format_search(df)),
                                      _img_html(fig, f"live queries/s and memory, {b} bits"),
                                      caption),
                   "message": f"live: {b} bits, n = {n:,}, {secs:.1f} s"}
        except Exception as err:  # noqa: BLE001 - shown to the reader
            msg = "live search failed: " + "".join(
                traceback.format_exception_only(type(err), err)).strip()
            out = {"ok": False, "table": None, "seconds": None, "html": _error_html(msg),
                   "message": msg}
        self.last_live = out
        return out

    def static(self) -> StaticTabs:
        """Tabs per code length, in each tabs per committed database size."""
        outer = {}
        for b in self.bits:
            inner = {f"n = {n:,}": self.view_html(b, n) for n in self.sizes(b)}
            outer[f"{b} bits"] = option_tabs(inner, group_label="database size",
                                             selected=f"n = {self.default_n(b):,}")
        lines = [f"{self.title} (pre-rendered): {', '.join(map(str, self.bits))} bits; "
                 f"n = {', '.join(f'{n:,}' for n in self.sizes())}"]
        return option_tabs(outer, title=self.title, text="\n".join(lines),
                           group_label="code length", selected=f"{self.bits[-1]} bits")

    # -- widget wiring -------------------------------------------------------------------
    def redraw(self, _change=None) -> None:
        c = self._controls
        if c.get("busy"):
            return
        b = c["bits"].value
        sizes = self.sizes(b)
        if c["n"].value not in sizes:  # another code length has other sizes
            c["busy"] = True
            try:
                c["n"].options = [(f"{n:,}", n) for n in sizes]
                c["n"].value = self.default_n(b)
            finally:
                c["busy"] = False
        res = self._render(b, c["n"].value)
        self.last_html = res["html"]
        c["out"].outputs = (_output_bundle(res["html"], res["message"]),)

    def _on_live(self, _button=None) -> None:
        c = self._controls
        c["button"].disabled = True
        b, n = c["bits"].value, c["live_n"].value
        c["status"].value = f"<i>building and searching every index on {n:,} codes ...</i>"
        try:
            res = self.live_search(b, n)
            c["live_out"].outputs = (_output_bundle(res["html"], res["message"]),)
            c["status"].value = "" if res["ok"] else "<b>live search failed</b> (see below)"
        except Exception as err:  # noqa: BLE001 - never raise into the widget machinery
            c["status"].value = _error_html(f"{type(err).__name__}: {err}")
        finally:
            c["button"].disabled = False

    def build_widget(self, widgets=None):
        """The live control: code length and database size (committed results, redrawn on
        change) and a live search on a small database."""
        W = widgets or _import_ipywidgets()
        if W is None:
            raise ImportError("ipywidgets is not installed; pip install ipywidgets")
        style = {"description_width": "initial"}
        b0 = self.bits[-1]
        bits = W.Dropdown(options=[(f"{b} bits", b) for b in self.bits], value=b0,
                          description="code length", style=style)
        n = W.Dropdown(options=[(f"{v:,}", v) for v in self.sizes(b0)], value=self.default_n(b0),
                       description="database codes n", style=style)
        for dd in (bits, n):
            dd.add_class("hnb-redraw")
        out, live_out = W.Output(), W.Output()
        out.add_class("hnb-explorer-out")
        live_out.add_class("hnb-explorer-out")
        live_n = W.Dropdown(options=[(f"{v:,}", v) for v in self.live_sizes],
                            value=self.live_sizes[0], description="live database n",
                            style=style)
        live_n.add_class("hnb-action-input")
        button = W.Button(description="search live", icon="play", button_style="primary",
                          tooltip="build every index on random codes of this size, here, and "
                                  "time k-NN search")
        button.add_class("hnb-action")
        status = W.HTML("")
        self._controls = {"bits": bits, "n": n, "out": out, "live_n": live_n,
                          "button": button, "status": status, "live_out": live_out}
        bits.observe(self.redraw, names="value")
        n.observe(self.redraw, names="value")
        button.on_click(self._on_live)
        note = W.HTML("<small>Live control: needs a running Python kernel (Jupyter, Colab). "
                      "The dropdowns redraw the committed measurements; the button builds "
                      "and times every index on a small random database here, at the code "
                      "length chosen above. The tabs above are pre-rendered.</small>")
        self.widget = W.VBox([note, W.HBox([bits, n]), out, W.HBox([live_n, button]), status,
                              live_out])
        self.widget.add_class("hnb-explorer")
        self.widget.add_class("hnb-explorer-search")
        self.redraw()
        return self.widget

    def show(self, *, live: bool | None = None):
        """Display the static tabs and, in a live kernel, the control."""
        return _show(self.static(), self.build_widget, live,
                     "a live control with a live search")

    def __repr__(self) -> str:
        return f"SearchExplorer(bits={self.bits}, sizes={self.sizes()}, indexes={self.indexes})"


def search_explorer(scale=None, **kwargs) -> SearchExplorer:
    """:class:`SearchExplorer` over ``scale`` (default the committed
    ``results/search/scale_random.json``, from ``book/`` or the repository root)."""
    if scale is None:
        scale = results_dir("search", "scale_random.json")
    return SearchExplorer(scale, **kwargs)


# ------------------------------------------------------------------------ live training
class LivePlot:
    """Callback that redraws loss and validation mAP in a notebook as training runs.

    In a live kernel the figure updates in place (one display slot); in a saved notebook
    only its final state remains, so the built book shows the finished curves. A redraw
    costs about 0.2 s of matplotlib, more than a small model's epoch, so redraws are
    throttled: at most one every ``min_interval`` seconds (and never more than a fifth of
    the time goes to drawing), but always on the epoch that ends training
    (``ctx.last``: the budget is spent or early stopping fired), so the final curves are
    complete.
    """

    def __init__(self, keys: Iterable[str] = ("loss", "val_map"), every: int = 1,
                 title: str | None = None, min_interval: float = 1.0):
        self.keys = tuple(keys)
        self.every = every
        self.title = title
        self.min_interval = float(min_interval)
        self.redraws = 0
        self._handle = None
        self._fig = None
        self._next_draw = float("-inf")

    def __call__(self, ctx) -> None:
        last = bool(getattr(ctx, "last", False)) or ctx.epoch + 1 == ctx.epochs
        if ctx.rank != 0 or ((ctx.epoch + 1) % self.every and not last):
            return
        if not last and time.perf_counter() < self._next_draw:
            return
        t0 = time.perf_counter()
        self._draw(ctx)
        spent = time.perf_counter() - t0
        self._next_draw = time.perf_counter() + max(self.min_interval, 4 * spent)
        self.redraws += 1

    def _draw(self, ctx) -> None:
        import matplotlib.pyplot as plt
        from IPython.display import display

        if self._fig is None:
            self._fig, axes = plt.subplots(1, len(self.keys), figsize=(4 * len(self.keys), 3))
            plt.close(self._fig)
        axes = np.atleast_1d(self._fig.axes)
        for ax, key in zip(axes, self.keys):
            ax.clear()
            if any(key in h for h in ctx.history):  # val_map appears after val_every epochs
                plot_history(ctx.history, keys=[key], ax=ax)
            else:
                ax.set_title(f"{key}: not yet measured", fontsize=9)
        if self.title:
            self._fig.suptitle(self.title)
        self._fig.tight_layout()
        if self._handle is None:
            self._handle = display(self._fig, display_id=True)
        else:
            self._handle.update(self._fig)
