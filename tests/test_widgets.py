"""Tests for hashnb.widgets: static HTML/CSS tabs, per-bit figures, the explorer's callbacks.

Cheap closed-form methods (LSH, ITQ) on the embedded digits data, PCA instead of UMAP (the
book uses UMAP; its numba JIT costs ~10 s per process), runs cached in a temporary folder.
"""
from __future__ import annotations

import base64
import builtins
import re
from html.parser import HTMLParser

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from hashnb import widgets  # noqa: E402
from hashnb.data import load_dataset, make_split  # noqa: E402
from hashnb.train import run_method  # noqa: E402

PANELS = ("pca", "hist")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HASHNB_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("digits")
    return ds, make_split(ds, seed=0, cache=False)


def _fig(text="x"):
    fig = Figure(figsize=(2, 1.5))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1])
    ax.set_title(text)
    return fig


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []  # (tag, attrs dict)
        self.style = ""
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        if tag == "style":
            self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.style += data


def _parse(markup):
    p = _Collector()
    p.feed(markup)
    return p


# ------------------------------------------------------------------ static tabs
def test_static_tabs_structure_one_tab_per_bit_no_script():
    figs = {32: {"figure": _fig(), "map": 0.5}, 8: {"figure": _fig(), "map": 0.25},
            16: {"figure": _fig(), "map": 0.375}}
    out = widgets.static_tabs(figs, title="LSH <digits>")
    markup = out._repr_html_()
    p = _parse(markup)
    radios = [a for t, a in p.tags if t == "input"]
    labels = [a for t, a in p.tags if t == "label"]
    imgs = [a for t, a in p.tags if t == "img"]
    assert len(radios) == len(labels) == len(imgs) == 3
    assert all(a["type"] == "radio" and a["name"] == out.dom_id for a in radios)
    assert [int(a["value"]) for a in radios] == [8, 16, 32]  # ascending
    assert [a["for"] for a in labels] == [a["id"] for a in radios]
    assert sum("checked" in a for a in radios) == 1 and "checked" in radios[0]
    for r, a in zip(radios, imgs):
        assert a["src"].startswith("data:image/png;base64,")
        assert base64.b64decode(a["src"].split(",", 1)[1], validate=True).startswith(PNG_MAGIC)
        assert f"{r['value']}-bit codes" in a["alt"] and "mAP@all" in a["alt"]
    assert "<script" not in markup.lower()
    assert not re.search(r"\son\w+\s*=", markup)  # no inline event handlers either
    assert "&lt;digits&gt;" in markup  # the title is escaped
    # every CSS rule is scoped to this explorer's id
    selectors = [r.split("{")[0].strip() for r in p.style.split("}") if r.strip()]
    assert selectors and all(s.startswith(f"#{out.dom_id}") for s in selectors)
    # text/plain fallback: mAP per bit length
    assert "8 bits: mAP@all 0.250" in repr(out) and "32 bits: mAP@all 0.500" in repr(out)


def test_static_tabs_ids_unique_across_calls_and_plain_figures():
    a = widgets.static_tabs({8: _fig(), 16: _fig()}, selected=16)
    b = widgets.static_tabs({8: _fig(), 16: _fig()})
    ids_a = {x["id"] for t, x in _parse(a.html).tags if "id" in x}
    ids_b = {x["id"] for t, x in _parse(b.html).tags if "id" in x}
    assert len(ids_a) == 3 and len(ids_b) == 3 and not ids_a & ids_b
    checked = [x["value"] for t, x in _parse(a.html).tags if t == "input" and "checked" in x]
    assert checked == ["16"]
    assert "16 bits: figure" in repr(a)  # no mAP given


def test_static_tabs_rejects_bad_input():
    with pytest.raises(ValueError, match="fmt"):
        widgets.static_tabs({8: _fig()}, fmt="gif")
    with pytest.raises(ValueError, match="non-empty"):
        widgets.static_tabs({})
    with pytest.raises(ValueError, match="not a matplotlib Figure"):
        widgets.static_tabs({8: {"map": 0.3}})
    with pytest.raises(ValueError, match="selected"):
        widgets.static_tabs({8: _fig()}, selected=16)


# ------------------------------------------------------------------ figures per bit length
def test_bit_figures_maps_equal_run_evaluate(digits, tmp_path):
    ds, split = digits
    out = widgets.bit_figures("lsh", ds, split, bits=(16, 8), panels=PANELS)
    assert list(out) == [8, 16]
    for b, r in out.items():
        run = run_method("lsh", ds, split, bits=b, seed=0)  # loads the cached run
        assert str(run.run_dir).startswith(str(tmp_path / "cache"))
        assert r["map"] == run.evaluate()["map"]
        assert r["run"].codes("database").shape == (len(split.database), b)
        fig = r["figure"]
        assert isinstance(fig, Figure) and len(fig.axes) == 2
        assert f"mAP@all = {r['map']:.3f}" in fig._suptitle.get_text()
    assert out[8]["map"] != out[16]["map"]
    tabs = widgets.static_tabs(out, title="LSH")
    assert f"{out[16]['map']:.3f}" in repr(tabs)


def test_embedding_is_capped_and_centers_panel(digits):
    ds, split = digits
    out = widgets.bit_figures("csq", ds, split, bits=(8,), panels=("pca", "centers", "hist"),
                              max_points=200, run_kwargs={"epochs": 2, "progress": False})
    fig = out[8]["figure"]
    emb, cen, _ = fig.axes[:3]
    n_points = sum(len(c.get_offsets()) for c in emb.collections)
    assert n_points == 200 + 10  # the capped codes + one star per class center
    assert cen.images and cen.images[0].get_array().shape == (10, 8)
    lsh = widgets.bit_figures("lsh", ds, split, bits=(8,), panels=("centers",))
    assert "no hash centers" in lsh[8]["figure"].axes[0].texts[0].get_text()


def test_bad_arguments_raise_clear_errors(digits):
    ds, split = digits
    with pytest.raises(ValueError, match="unknown panel"):
        widgets.bit_figures("lsh", ds, split, bits=(8,), panels=("violin",))
    with pytest.raises(ValueError, match="run_kwargs"):
        widgets.bit_figures("lsh", ds, split, bits=(8,), run_kwargs={"bits": 8})
    with pytest.raises(ValueError, match="min_bits"):
        widgets.BitLengthExplorer("lsh", ds, split, min_bits=32, max_bits=8)


# ------------------------------------------------------------------ the explorer
def test_explorer_render_new_length_and_unsupported_length(digits):
    ds, split = digits
    ex = widgets.BitLengthExplorer("itq", ds, split, bits=(8,), panels=PANELS, max_bits=128)
    assert ex.choices() == [4, 6, 8, 12, 16, 24, 32, 48, 64]  # 96, 128 > 64 input dims
    res = ex._render(12)
    assert res["ok"] and isinstance(res["figure"], Figure)
    assert res["map"] == run_method("itq", ds, split, bits=12, seed=0).evaluate()["map"]
    assert f"{res['map']:.3f}" in res["message"]
    assert ex._render(12)["figure"] is res["figure"]  # cached in memory
    bad = ex._render(128)
    assert not bad["ok"] and bad["figure"] is None and bad["map"] is None
    assert "128" in bad["message"] and "input dimension" in bad["message"]
    assert not ex._render("twelve")["ok"]


def test_explorer_render_reports_unexpected_errors(digits, monkeypatch):
    ds, split = digits
    ex = widgets.BitLengthExplorer("lsh", ds, split, bits=(8,), panels=PANELS)

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr("hashnb.train.run_method", boom)
    res = ex._render(16)
    assert not res["ok"] and "RuntimeError: disk full" in res["message"]


def test_choices_leave_out_lengths_the_method_cannot_build(digits):
    ds, split = digits
    ex = widgets.BitLengthExplorer("csq", ds, split)  # 4 bits cannot hold 10 balanced centers
    assert ex.choices() == [6, 8, 12, 16, 24, 32, 48, 64]
    assert "4-bit" in ex.supports(4) and ex.supports(16) is None


def test_show_without_ipywidgets_prints_static_fallback(digits, monkeypatch, capsys):
    ds, split = digits
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "ipywidgets" or name.startswith("ipywidgets."):
            raise ImportError("No module named 'ipywidgets'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    ex = widgets.BitLengthExplorer("lsh", ds, split, bits=(8, 16), panels=PANELS)
    assert ex.show(live=True) is None
    out = capsys.readouterr().out
    assert "ipywidgets is not installed" in out
    assert re.search(r"8 bits: mAP@all 0\.\d{3}", out) and "16 bits: mAP@all" in out
    with pytest.raises(ImportError, match="ipywidgets"):
        ex.build_widget()


def test_live_widget_callback_without_frontend(digits, monkeypatch):
    W = pytest.importorskip("ipywidgets")
    ds, split = digits
    ex = widgets.BitLengthExplorer("itq", ds, split, bits=(8,), panels=PANELS)
    box = ex.build_widget(W)
    dd, button = ex._controls["bits"], ex._controls["button"]
    assert isinstance(box, W.VBox) and [v for _, v in dd.options] == ex.choices()
    assert dd.value != 8  # starts on a length that is not pre-rendered
    dd.value = 24
    ex._on_click(button)
    assert 24 in ex.results and not button.disabled and ex._controls["status"].value == ""
    out = ex._result_outputs(ex._render(24))
    assert out[0].data.startswith(PNG_MAGIC)

    def boom(*a, **k):
        raise RuntimeError("display broke")

    monkeypatch.setattr(ex, "_render", boom)
    ex._on_click(button)  # must not raise into the widget machinery
    assert "display broke" in ex._controls["status"].value and not button.disabled


# ------------------------------------------------------------------ CSS behaviour
def _visible_panels(markup: str, clicks: dict) -> dict:
    """Which panels the scoped CSS shows after clicking tab labels, per explorer.

    Emulates the browser with soupsieve (CSS selectors incl. ``:checked`` and ``~``) on the
    whole page: clicking a label checks the radio its ``for`` points at and unchecks the
    other radios of the same ``name`` (a browser radio group). Every ``<style>`` on the page
    applies to the whole page, as in a browser. ``clicks``: ``{dom_id: bits}``.
    Returns ``{dom_id: [aria-labels of visible panels]}``.
    """
    bs4 = pytest.importorskip("bs4")
    soup = bs4.BeautifulSoup(markup, "html.parser")
    for dom_id, bits in clicks.items():
        label = soup.find(id=dom_id).find("label", string=f"{bits} bits")
        target = soup.find("input", id=label["for"])
        for inp in soup.find_all("input", attrs={"name": target["name"]}):
            if inp is target:
                inp["checked"] = ""
            elif inp.has_attr("checked"):
                del inp["checked"]
    rules = [r.split("{", 1) for st in soup.find_all("style") for r in st.get_text().split("}")
             if "{" in r]
    hidden = {id(e) for sel, body in rules if "display:none" in body for e in soup.select(sel.strip())}
    shown = {id(e) for sel, body in rules if "display:block" in body for e in soup.select(sel.strip())}
    out = {}
    for root in soup.select("div.hnb-bit-tabs"):
        panels = root.select(".hnb-panel")
        assert all(id(p) in hidden for p in panels)  # the default is hidden
        out[root["id"]] = [p["aria-label"] for p in panels if id(p) in shown]
    return out


def test_css_shows_exactly_the_clicked_tab_and_two_explorers_do_not_interact():
    a = widgets.static_tabs({8: _fig(), 16: _fig(), 32: _fig()})
    b = widgets.static_tabs({8: _fig(), 16: _fig()}, selected=16)
    assert _visible_panels(a.html, {}) == {a.dom_id: ["8 bits"]}  # as first rendered
    for bits in (8, 16, 32):
        assert _visible_panels(a.html, {a.dom_id: bits}) == {a.dom_id: [f"{bits} bits"]}
    page = a.html + b.html  # both on one page: clicking in one leaves the other alone
    assert _visible_panels(page, {a.dom_id: 32}) == {a.dom_id: ["32 bits"], b.dom_id: ["16 bits"]}
    assert _visible_panels(page, {a.dom_id: 16, b.dom_id: 8}) == {a.dom_id: ["16 bits"],
                                                                   b.dom_id: ["8 bits"]}
