"""Tests for hashnb.widgets: static HTML/CSS tabs, per-bit figures, the explorer's callbacks.

Cheap closed-form methods (LSH, ITQ) on the embedded digits data, PCA instead of UMAP (the
book uses UMAP; its numba JIT costs ~10 s per process), runs cached in a temporary folder.
"""
from __future__ import annotations

import base64
import json
import builtins
import re
from html.parser import HTMLParser
from pathlib import Path

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

    monkeypatch.setattr("hashnb.widgets.run_method", boom)  # what the explorer calls
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
def _click(soup, label) -> None:
    """A click on a tab label: its radio is checked, the others of its group unchecked."""
    target = soup.find("input", id=label["for"])
    for inp in soup.find_all("input", attrs={"name": target["name"]}):
        if inp is target:
            inp["checked"] = ""
        elif inp.has_attr("checked"):
            del inp["checked"]


def _css_display(soup) -> tuple[set, set]:
    """Elements (by ``id()``) that the page's ``<style>`` rules hide and show."""
    rules = [r.split("{", 1) for st in soup.find_all("style") for r in st.get_text().split("}")
             if "{" in r]
    hidden = {id(e) for sel, body in rules if "display:none" in body for e in soup.select(sel.strip())}
    shown = {id(e) for sel, body in rules if "display:block" in body for e in soup.select(sel.strip())}
    return hidden, shown


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
        _click(soup, soup.find(id=dom_id).find("label", string=f"{bits} bits"))
    hidden, shown = _css_display(soup)
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


# ------------------------------------------------------------------ option tabs (nested)
def _visible_option_panels(markup: str, clicks: dict) -> dict:
    """Like ``_visible_panels`` for :func:`widgets.option_tabs` groups, nested ones too.

    ``clicks``: ``{dom_id: label text}``. Returns ``{dom_id: [aria-labels of the group's own
    visible panels]}`` for every group whose ancestors' panels are all visible.
    """
    bs4 = pytest.importorskip("bs4")
    soup = bs4.BeautifulSoup(markup, "html.parser")
    for dom_id, text in clicks.items():
        group = soup.find(id=dom_id)
        _click(soup, next(lb for lb in group.find_all("label", recursive=False)
                          if lb.get_text() == text))
    hidden, shown = _css_display(soup)
    out = {}
    for root in soup.select("div.hnb-tabs"):
        ancestors = [p for p in root.parents if "hnb-panel" in (p.get("class") or [])]
        if not all(id(p) in shown for p in ancestors):
            continue  # inside a closed tab of an outer group
        panels = root.find_all("div", class_="hnb-panel", recursive=False)
        assert all(id(p) in hidden for p in panels)
        out[root["id"]] = [p["aria-label"] for p in panels if id(p) in shown]
    return out


def test_option_tabs_one_tab_per_option_nested_groups_switch_independently():
    inner_a = widgets.option_tabs({"x": "<b>ax</b>", "y <1>": "<b>ay</b>"}, selected="y <1>")
    inner_b = widgets.option_tabs({"x": "<b>bx</b>", "z": "<b>bz</b>"})
    outer = widgets.option_tabs({"A": inner_a, "B": inner_b}, title="T & t")
    p = _parse(outer.html)
    assert outer.keys == ["A", "B"] and inner_a.keys == ["x", "y <1>"]
    assert "&lt;1&gt;" in inner_a.html and "T &amp; t" in outer.html  # labels escaped
    assert "<script" not in outer.html.lower()
    assert sum(1 for t, a in p.tags if t == "input") == 6  # 2 outer + 2 + 2 inner
    # as first rendered: outer A open, inside it "y <1>"; B's group is in a closed panel
    assert _visible_option_panels(outer.html, {}) == {outer.dom_id: ["A"],
                                                      inner_a.dom_id: ["y <1>"]}
    # switching the outer tab shows B's own default; A's inner choice is kept
    assert _visible_option_panels(outer.html, {outer.dom_id: "B"}) == {
        outer.dom_id: ["B"], inner_b.dom_id: ["x"]}
    assert _visible_option_panels(outer.html, {inner_a.dom_id: "x"}) == {
        outer.dom_id: ["A"], inner_a.dom_id: ["x"]}
    with pytest.raises(ValueError, match="non-empty"):
        widgets.option_tabs({})
    with pytest.raises(ValueError, match="selected"):
        widgets.option_tabs({"a": "x"}, selected="b")
    with pytest.raises(ValueError, match="HTML string"):
        widgets.option_tabs({"a": 3})


# ------------------------------------------------------------------ leaderboard explorer
RESULTS = Path(__file__).resolve().parents[1] / "book" / "results"


def _record(method, bits, seed, **metrics):
    base = {"map": 0.5, "map@1000": 0.6, "p@1000": 0.7, "p@r2": 0.8}
    return {"method": method, "bits": bits, "seed": seed, "dataset": "d", "protocol": "p",
            "split_sizes": {"query": 10, "database": 100}, "metrics": {**base, **metrics}}


@pytest.fixture(scope="module")
def toy_records():
    # a: better on map, b: better on p@1000; c only at 8 bits (like MAH's extra lengths)
    recs = []
    for seed, jitter in [(0, 0.0), (1, 0.02)]:
        for bits, gain in [(8, 0.0), (16, 0.1)]:
            recs.append(_record("a", bits, seed, map=0.6 + gain + jitter, **{"p@1000": 0.3}))
            recs.append(_record("b", bits, seed, map=0.4 + gain + jitter, **{"p@1000": 0.9}))
        recs.append(_record("c", 4, seed, map=0.9))
    return recs


def test_leaderboard_tables_follow_metric_protocol_and_bits(toy_records):
    ex = widgets.LeaderboardExplorer({"toy": toy_records, "one": toy_records[:2]})
    assert ex.protocols == ["toy", "one"] and ex.bits("toy") == [4, 8, 16]
    m = ex.means("map", "toy")
    # rows ranked on the lengths every method has (8, 16), not on c's lone 4-bit 0.9
    assert list(m.index) == ["a", "b", "c"]
    assert m.loc["a", 16] == pytest.approx(0.71) and np.isnan(m.loc["a", 4])
    assert list(ex.means("p@1000", "toy").index) == ["b", "a", "c"]  # other metric, other order
    t = ex.table("map", "toy", bits=[16, 8])
    assert list(t.columns) == ["8 bits", "16 bits"] and t.columns.name == "mAP@all"
    assert t.loc["a", "16 bits"] == "0.710 ± 0.014 (2)"
    assert list(t.index) == ["a", "b"]  # c has no result at these lengths
    t = ex.table("map", "toy", bits=[4, 8])
    assert list(t.index) == ["a", "b", "c"] and t.loc["c", "8 bits"] == "–"
    assert t.loc["c", "4 bits"] == "0.900 ± 0.000 (2)"
    assert list(ex.table("map", "one").columns) == ["8 bits"]
    fig = ex.figure("p@1000", "toy", [8, 16])
    (ax,) = fig.axes
    assert ax.get_ylabel() == "P@1000" and len(ax.get_legend().get_texts()) == 2
    a_html, p_html = ex.view_html("map", "toy"), ex.view_html("p@1000", "toy")
    assert a_html != p_html and 'data-metric="p@1000"' in p_html
    assert "0.900 ± 0.000 (2)" in p_html and "0.900 ± 0.000 (2)" not in ex.view_html("map", "one")
    for bad in [("mAP", "toy", None), ("map", "nope", None), ("map", "toy", [32])]:
        res = ex._render(*bad)
        assert not res["ok"] and 'class="hnb-error"' in res["html"]
    assert not ex._render("map", "toy", [])["ok"]
    with pytest.raises(ValueError, match="unknown metrics"):
        widgets.LeaderboardExplorer({"toy": toy_records}, metrics=("ndcg",))


def test_leaderboard_on_committed_results_matches_the_json():
    protos = widgets.committed_protocols(RESULTS)
    tuned = ["cifar10 (tuned)"] + (["cifar10-1, database pool (tuned)"]
                                   if (RESULTS / "cpu-pool").is_dir() else [])
    assert list(protos) == tuned + ["cifar10 (defaults)", "cifar10-1 (defaults)",
                                    "cifar10-1-dbpool (defaults)"]
    ex = widgets.leaderboard_explorer(root=RESULTS)
    raw = [json.loads(p.read_text()) for p in sorted((RESULTS / "cpu").glob("*.json"))]
    csq32 = [r["metrics"]["p@r2"] for r in raw if r["method"] == "csq" and r["bits"] == 32]
    assert len(csq32) == 5
    assert ex.means("p@r2", "cifar10 (tuned)").loc["csq", 32] == pytest.approx(np.mean(csq32))
    assert ex.bits("cifar10-1 (defaults)") == [32]
    assert set(ex.means("map", "cifar10-1-dbpool (defaults)").index) == {"adsh:pool=database",
                                                                        "mah:pool=database"}


def test_leaderboard_static_one_tab_per_metric_and_protocol(toy_records):
    ex = widgets.LeaderboardExplorer({"toy": toy_records, "one": toy_records[:2]},
                                     metrics=("map", "p@1000", "p@r2"))
    st = ex.static()
    bs4 = pytest.importorskip("bs4")
    soup = bs4.BeautifulSoup(st.html, "html.parser")
    outer = soup.find(id=st.dom_id)
    assert [lb.get_text() for lb in outer.find_all("label", recursive=False)] == [
        "mAP@all", "P@1000", "P@r≤2"]
    inner = outer.find_all("div", class_="hnb-panel", recursive=False)
    for panel, metric in zip(inner, ("map", "p@1000", "p@r2")):
        group = panel.find("div", class_="hnb-tabs")
        assert [lb.get_text() for lb in group.find_all("label", recursive=False)] == ["toy", "one"]
        views = group.find_all("div", class_="hnb-view")
        assert [v["data-protocol"] for v in views] == ["toy", "one"]
        assert {v["data-metric"] for v in views} == {metric}
        for v in views:
            src = v.find("img")["src"]
            assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    assert "toy: best mAP@all (mean over bits) a 0.660" in repr(st)


def test_leaderboard_live_control_redraws_on_every_change(toy_records):
    W = pytest.importorskip("ipywidgets")
    ex = widgets.LeaderboardExplorer({"toy": toy_records, "one": toy_records[:2]})
    box = ex.build_widget(W)
    assert "hnb-explorer" in box._dom_classes
    c = ex._controls

    def shown():
        (o,) = c["out"].outputs
        return o["data"]["text/html"]

    first = shown()
    assert first == ex.last_html and 'data-metric="map"' in first and 'data-bits="4,8,16"' in first
    c["metric"].value = "p@1000"
    second = shown()
    assert second != first and 'data-metric="p@1000"' in second and "0.900 ± 0.000 (2)" in second
    c["bits"].children[0].value = False  # untick 4 bits
    third = shown()
    assert 'data-bits="8,16"' in third and "4 bits" not in third
    c["protocol"].value = "one"  # other lengths: the boxes are rebuilt, one redraw
    assert [cb.description for cb in c["bits"].children] == ["8"]
    assert 'data-protocol="one"' in shown() and 'data-bits="8"' in shown()
    c["bits"].children[0].value = False  # nothing ticked: said, not raised
    assert "hnb-note" in shown() and "hnb-error" not in shown() and "at least one" in shown()


# ------------------------------------------------------------------ search explorer
def _toy_scale():
    rows = []
    for bits in (16, 32):
        for n in (1000, 4000):
            for ix, qps, mem in [("flat", 1000.0, 2.0), ("mih", 3000.0 / bits, 6.0),
                                 ("hnsw", 5000.0, 40.0)]:
                if ix == "hnsw" and n > 1000:
                    continue
                rows.append({"data": "random", "n": n, "bits": bits, "index": ix,
                             "queries": 10, "k": 10, "build_s": 0.01, "search_s": 10 / qps,
                             "qps": qps * 1000 / n, "recall": 1.0 if ix != "hnsw" else 0.9,
                             "bytes": mem * n, "bytes_per_code": mem})
    return {"config": {"indexes": ["flat", "mih", "hnsw"], "k": 10, "queries": 10,
                       "repeats": 2, "data": "random", "max_n": {"hnsw": 1000}},
            "provenance": {"cpu": "toy", "cpu_count": 2, "commit": "abc", "time_utc": "now"},
            "results": rows}


def test_search_tables_follow_bits_and_size():
    ex = widgets.SearchExplorer(_toy_scale(), live_sizes=(300,))
    assert ex.bits == [16, 32] and ex.sizes(16) == [1000, 4000]
    assert ex.default_n(16) == 1000  # the largest size with every index
    t = ex.table(16, 1000)
    assert list(t.index) == ["flat", "mih", "hnsw"]
    assert t.loc["mih", "× flat"] == pytest.approx(3000 / 16 / 1000)
    assert t.loc["hnsw", "MiB"] == pytest.approx(40 * 1000 / 2**20)
    big = ex.table(16, 4000)
    assert big.loc["flat", "queries/s"] == pytest.approx(250.0)
    assert np.isnan(big.loc["hnsw", "queries/s"]) and "not built at n = 4,000" in big.loc["hnsw", "note"]
    fig = ex.figure(16, 4000)
    assert [ax.get_xlabel() for ax in fig.axes] == ["queries/s (log)", "MiB (log)"]
    assert "not built at this n" in [tx.get_text() for tx in fig.axes[0].texts]
    assert ex.view_html(16, 1000) != ex.view_html(32, 1000)
    assert not ex._render(64, 1000)["ok"] and not ex._render(16, 5)["ok"]
    st = ex.static()
    bs4 = pytest.importorskip("bs4")
    soup = bs4.BeautifulSoup(st.html, "html.parser")
    outer = soup.find(id=st.dom_id)
    assert [lb.get_text() for lb in outer.find_all("label", recursive=False)] == ["16 bits",
                                                                                   "32 bits"]
    for panel in outer.find_all("div", class_="hnb-panel", recursive=False):
        group = panel.find("div", class_="hnb-tabs")
        labels = [lb.get_text() for lb in group.find_all("label", recursive=False)]
        assert labels == ["n = 1,000", "n = 4,000"]
        assert len(group.find_all("img")) == 2


def test_search_on_committed_scale_results():
    path = RESULTS / "search" / "scale_random.json"
    raw = json.loads(path.read_text())
    ex = widgets.search_explorer(path)
    assert ex.bits == [16, 32, 64] and ex.sizes() == [10**4, 10**5, 10**6, 10**7]
    row = next(r for r in raw["results"] if r["bits"] == 64 and r["n"] == 10**6
               and r["index"] == "mih")
    t = ex.table(64, 10**6)
    assert t.loc["mih", "queries/s"] == pytest.approx(row["qps"])
    assert t.loc["mih", "bytes / code"] == pytest.approx(row["bytes_per_code"])
    assert np.isnan(t.loc["hnsw", "queries/s"])  # HNSW was built up to 10^5 only


def test_search_live_control_redraws_and_searches_a_small_database():
    W = pytest.importorskip("ipywidgets")
    pytest.importorskip("faiss")
    ex = widgets.SearchExplorer(_toy_scale(), live_sizes=(400,), live_queries=5)
    box = ex.build_widget(W)
    assert "hnb-explorer" in box._dom_classes
    c = ex._controls

    def shown(key="out"):
        (o,) = c[key].outputs
        return o["data"]["text/html"]

    first = shown()
    assert 'data-bits="32"' in first and 'data-n="1000"' in first
    c["n"].value = 4000
    assert 'data-n="4000"' in shown() and "not built at n = 4,000" in shown()
    c["bits"].value = 16
    assert 'data-bits="16"' in shown()
    assert c["live_out"].outputs == ()
    c["button"].click()  # the live search: every index built and timed here
    live = ex.last_live
    assert live["ok"] and live["n"] == 400 and live["bits"] == 16 and not c["button"].disabled
    assert list(live["table"].index) == ["flat", "mih", "hnsw"]
    assert live["table"].loc["flat", "recall@k"] == 1.0 and live["table"].loc["mih", "recall@k"] == 1.0
    assert (live["table"]["queries/s"] > 0).all()
    assert 'data-n="400"' in shown("live_out") and "Live on this machine" in shown("live_out")


def test_live_plot_throttles_redraws_but_always_draws_the_epoch_that_ends_training(
        digits, monkeypatch):
    """Early stopping ends training before ``epochs``: the last epoch is still drawn, with the
    full history, even when the throttle would skip it; every epoch is drawn when it allows."""
    from hashnb.train import fit, method_from_dataset

    ds, split = digits
    seen = []
    monkeypatch.setattr(widgets.LivePlot, "_draw",
                        lambda self, ctx: seen.append((ctx.epoch, len(ctx.history))))
    slow = widgets.LivePlot(min_interval=1e9)  # the first epoch, then only the last
    run = fit(method_from_dataset("csq", ds, bits=16), ds, split, epochs=200, lr=3e-3,
              val_every=1, patience=3, progress=False, callbacks=[slow])
    n = len(run.history)
    assert n < 200  # early stopping fired, so `epoch + 1 == epochs` never held
    assert seen == [(0, 1), (n - 1, n)] and slow.redraws == 2
    seen.clear()
    every = widgets.LivePlot(min_interval=0.0)
    fit(method_from_dataset("csq", ds, bits=16), ds, split, epochs=5, val_every=1,
        progress=False, callbacks=[every])
    assert [e for e, _ in seen] == [0, 1, 2, 3, 4]
