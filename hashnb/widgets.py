"""Bit-length explorer: how a method's codes change with the code length K.

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
"""
from __future__ import annotations

import base64
import html
import io
import os
import traceback
import uuid
from typing import Iterable, Mapping, Sequence

import numpy as np

__all__ = ["bit_figures", "render_bits", "static_tabs", "StaticTabs", "BitLengthExplorer",
           "CANDIDATE_BITS"]

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
    from hashnb.viz import embed_2d, plot_embedding, subsample_indices

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
    from hashnb.viz import plot_distance_histogram

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
    from hashnb.centers import pairwise_hamming

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
    from hashnb.train import run_method

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
    ``.dom_id`` the unique id of the outer ``<div>``, ``.bits`` the code lengths.
    """

    def __init__(self, html_text: str, text: str, dom_id: str, bits: list[int]):
        super().__init__(html_text)
        self.html = html_text
        self.text = text
        self.dom_id = dom_id
        self.bits = bits

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
    markup = (f'<div class="hnb-bit-tabs" id="{uid}" role="group" '
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
        from hashnb.train import method_from_dataset

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
                from hashnb.train import run_method

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
            return [HTML(f'<div style="color:#b00020;white-space:pre-wrap">'
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
        self.widget = W.VBox([note, W.HBox([dd, button]), status, self._out])
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
