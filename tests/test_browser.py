"""The built book (``_build/html``) checked in a real, headless browser.

Serves ``_build/html`` on a free localhost port (``http.server`` in a thread) and drives the
system Chromium (``/usr/bin/chromium``, Debian's ``chromium`` package) with Playwright; no
browser is ever downloaded. For every page of ``_toc.yml``:

- no console error, page error, failed request or HTTP error, and **no request leaves
  localhost** (no CDN is reachable in CI: MathJax, require.js and the widget manager are
  vendored in ``widgets_js/vendor/``);
- every ``<img>`` decodes (``naturalWidth > 0``);
- every ``.math`` element was typeset by MathJax (holds an ``mjx-container``, no TeX error);
- every saved ipywidgets view is rendered by the vendored widget manager and is visible;
- every visible group of pre-rendered tabs (``hashnb.widgets.static_tabs`` and
  ``option_tabs``, nested ones included) shows exactly one panel, and clicking another label
  shows that label's panel, with decoded images, instead (pure CSS, no kernel);
- every chapter notebook has launch buttons for Colab and Binder (JupyterLab interface)
  pointing at its own ``.ipynb``.

Screenshots go to ``_build/html/_screenshots/<page>.png`` (plus ``-widget`` / ``-tabs``
crops) for people to look at.

Opt-in (``HASHNB_JUPYTERLAB_CHECK=1``; ``.ci/run`` runs it after the book build): every
chapter runs top to bottom in a real JupyterLab (on a temporary copy of ``book/``, fast
profile unless ``HASHNB_FAST=0``) with no error output and live widgets, and every explorer
of ``hashnb.widgets`` (as many as the chapter's cells show) **redraws on a change**: each of
its redraw controls (dropdowns, checkboxes) is changed and its output must change to a
new view, and its action button (train / load a code length, search live) must produce a
new output; an error shown in an explorer fails the check. ``HASHNB_JUPYTERLAB_TIMEOUT``
(seconds, default 900) bounds each chapter's run and each explorer action.

Without a build, Chromium or Playwright the browser tests are skipped with the reason;
with ``HASHNB_REQUIRE_BROWSER=1`` (set by ``.ci/run``) they fail instead.
``HASHNB_BOOK_HTML`` points the tests at another build folder. The link check over the
built HTML and the check of the vendored-JS configuration need no browser.
"""

from __future__ import annotations

import functools
import html.parser
import http.server
import os
import shutil
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
HTML = Path(os.environ.get("HASHNB_BOOK_HTML") or ROOT / "_build" / "html").resolve()
CHROMIUM = os.environ.get("HASHNB_CHROMIUM", "/usr/bin/chromium")
REQUIRE = os.environ.get("HASHNB_REQUIRE_BROWSER") == "1"
VENDOR = ROOT / "widgets_js" / "vendor"
SHOTS = HTML / "_screenshots"

# Console messages that are harmless, each with its reason. Keep this list short.
ALLOWED_CONSOLE = [
    # sphinx-thebe's inline script is emitted twice by Jupyter Book 1.x even with thebe off;
    # the second `const` declaration throws, nothing uses it (toolchain.md, section 2).
    "Identifier 'THEBE_JS_URL' has already been declared",
]

WIDGET_VIEW = 'script[type="application/vnd.jupyter.widget-view+json"]'


def _toc_entries() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    found: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            for key in ("root", "file"):
                if isinstance(node.get(key), str):
                    found.append(node[key])
            for value in node.values():
                if isinstance(value, (list, dict)):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return found


PAGES = _toc_entries()


def _is_notebook(entry: str) -> bool:
    return (ROOT / entry).with_suffix(".ipynb").exists()


def _unavailable(reason: str):
    if REQUIRE:
        pytest.fail(f"HASHNB_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


def _need_build():
    if not (HTML / "index.html").exists():
        _unavailable(f"no built book at {HTML}; build it first: "
                     ".venv/bin/jupyter-book build -W -n --keep-going .")


def _need_page(entry: str):
    _need_build()
    if not (HTML / f"{entry}.html").exists():
        _unavailable(f"{entry}.html is not in the build at {HTML} (built before {entry} joined "
                     "_toc.yml, or the build failed); rebuild the book")


# --------------------------------------------------------------------------- no browser needed


def test_vendored_js_is_configured():
    """_config.yml points myst-nb and MathJax at files that exist in widgets_js/vendor/."""
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["sphinx"]["config"]
    assert cfg["html_extra_path"] == ["widgets_js"], "widgets_js/ must be copied to the HTML root"
    static = ROOT / "_static"  # the URLs are relative to _static/ (Sphinx's add_js_file)
    scripts = list(cfg["nb_ipywidgets_js"]) + [cfg["mathjax_path"]]
    for src in scripts:
        assert "://" not in src, f"{src}: no CDN is reachable in CI; vendor it"
        target = (static / src).resolve()
        rel = target.relative_to(ROOT / "vendor")  # ../vendor/x -> widgets_js/vendor/x
        assert (VENDOR / rel).is_file(), f"{src} -> widgets_js/vendor/{rel} is missing"
    for src, attrs in cfg["nb_ipywidgets_js"].items():
        assert "crossorigin" not in (attrs or {}), f"{src}: crossorigin breaks file:// viewing"
    # Jupyter Book injects every *.js under html_static_path into every page (twice-rendered
    # widgets); the vendored scripts must stay out of it.
    for folder in cfg.get("html_static_path", []):
        assert not list((ROOT / folder).rglob("*.js")), f"no .js files in html_static_path {folder}"
    size = sum(p.stat().st_size for p in VENDOR.rglob("*") if p.is_file())
    assert size < 10e6, f"widgets_js/vendor/ holds {size / 1e6:.1f} MB; keep it under 10 MB"


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("id", "name"):
            if a.get(key):
                self.ids.add(a[key])
        if tag == "a" and a.get("href"):
            self.hrefs.append(a["href"])


@functools.lru_cache(maxsize=None)
def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


@pytest.mark.parametrize("entry", PAGES)
def test_internal_links_resolve(entry):
    """Every cross-reference, citation and glossary link points at a page and anchor that exist."""
    _need_page(entry)
    page = HTML / f"{entry}.html"
    broken = []
    for href in _parse(page).hrefs:
        url = urllib.parse.urlsplit(href)
        if url.scheme or url.netloc or href.startswith(("mailto:", "javascript:")):
            continue
        target = (page.parent / urllib.parse.unquote(url.path)).resolve() if url.path else page
        if target.is_dir():
            target = target / "index.html"
        if not target.exists():
            broken.append(f"{href} (no file {target})")
        elif url.fragment and target.suffix == ".html" and url.fragment not in _parse(target).ids:
            broken.append(f"{href} (no id {url.fragment!r} in {target.name})")
    assert not broken, f"{entry}.html has broken links:\n  " + "\n  ".join(broken)


# --------------------------------------------------------------------------- browser


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture(scope="module")
def server():
    _need_build()
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def chromium():
    if not (os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        _unavailable(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install playwright; the browser is "
                     "the system Chromium, never downloaded)")
    with sync_playwright() as p:
        # Playwright passes --no-sandbox by default (chromium_sandbox=False): needed as root.
        # A container's /dev/shm is often 64 MB, too small for Chromium's shared memory.
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--disable-dev-shm-usage"])
        yield b
        b.close()


def _load(chromium, server, entry):
    """Open one page; return it with the list of problems seen while loading."""
    problems: list[str] = []
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    host = urllib.parse.urlsplit(server).netloc

    def route(r):
        if urllib.parse.urlsplit(r.request.url).netloc in (host, "") or r.request.url.startswith("data:"):
            r.continue_()
        else:
            problems.append(f"request leaves localhost: {r.request.url}")
            r.abort()

    def console(msg):
        if msg.type == "error" and not any(a in msg.text for a in ALLOWED_CONSOLE):
            problems.append(f"console error: {msg.text} ({msg.location.get('url', '')})")

    page.route("**/*", route)
    page.on("console", console)
    page.on("pageerror", lambda exc: None if any(a in str(exc) for a in ALLOWED_CONSOLE)
            else problems.append(f"page error: {exc}"))
    page.on("requestfailed", lambda req: problems.append(f"request failed: {req.url} {req.failure}")
            if urllib.parse.urlsplit(req.url).netloc == host else None)
    page.on("response", lambda resp: problems.append(f"HTTP {resp.status}: {resp.url}")
            if resp.status >= 400 else None)
    page.goto(f"{server}/{entry}.html", wait_until="load")
    # MathJax typesets asynchronously after load; wait for it when the page loads it.
    page.evaluate("() => window.MathJax && MathJax.startup && MathJax.startup.promise "
                  "? MathJax.startup.promise.then(() => true) : false")
    # every image decoded or failed
    page.evaluate("""() => Promise.all([...document.images].map(img => img.complete ? null :
        new Promise(res => { img.addEventListener('load', res); img.addEventListener('error', res); })))""")
    return context, page, problems


def _check_widgets(page, shot: Path) -> list[str]:
    views = page.locator(WIDGET_VIEW).count()
    if not views:
        return []
    try:  # the widget manager renders each view into a .widget-subarea before its <script>
        page.wait_for_function(
            f"() => document.querySelectorAll('.widget-subarea .jupyter-widgets').length > 0 && "
            f"[...document.querySelectorAll('{WIDGET_VIEW}')].every(s => "
            "s.previousElementSibling && s.previousElementSibling.classList.contains('widget-subarea') "
            "&& s.previousElementSibling.children.length > 0)", timeout=20_000)
    except Exception:
        rendered = page.locator(".widget-subarea").count()
        return [f"{views} saved widget view(s) but {rendered} rendered: the vendored widget "
                "JavaScript did not run (widgets_js/vendor/, nb_ipywidgets_js)"]
    problems = []
    areas = page.locator(".widget-subarea")
    for i in range(areas.count()):
        area = areas.nth(i)
        area.scroll_into_view_if_needed()
        box = area.bounding_box()
        if not box or box["width"] < 10 or box["height"] < 5:
            problems.append(f"widget view {i} rendered but not visible (box {box})")
    areas.first.screenshot(path=str(shot))
    return problems


def _check_tabs(page, shot: Path) -> list[str]:
    """Click a second tab in every visible tab group; exactly its panel must show."""
    problems = []
    groups = page.locator(".hnb-tabs")
    own_panels = "g => [...g.children].filter(p => p.classList.contains('hnb-panel'))"
    visible_panels = (f"g => ({own_panels})(g).filter(p => p.offsetParent !== null)"
                      ".map(p => p.getAttribute('aria-label'))")
    checked = 0
    for i in range(groups.count()):
        group = groups.nth(i)
        if not group.is_visible():  # nested in a closed tab of an outer group
            continue
        checked += 1
        before = group.evaluate(visible_panels)
        if len(before) != 1:
            problems.append(f"tab group {i}: {len(before)} panels visible before a click: {before}")
            continue
        inputs = group.locator(":scope > input[type=radio]")
        target = next((inputs.nth(j) for j in range(inputs.count())
                       if not inputs.nth(j).is_checked()), None)
        if target is None:
            problems.append(f"tab group {i} has a single tab; nothing to switch")
            continue
        label = group.locator(f':scope > label[for="{target.get_attribute("id")}"]')
        text = label.inner_text().strip()
        label.scroll_into_view_if_needed()
        label.click()
        after = group.evaluate(visible_panels)
        if after != [text]:
            problems.append(f"tab group {i}: clicking '{text}' shows {after} (was {before})")
        imgs = group.evaluate(
            f"g => {{ const p = ({own_panels})(g).find(p => p.offsetParent !== null); "
            "return p ? [...p.querySelectorAll('img')].filter(im => im.offsetParent !== null)"
            ".map(im => im.naturalWidth > 0) : []; }")
        if not imgs or not all(imgs):
            problems.append(f"tab group {i}: the '{text}' panel has no decoded image ({imgs})")
        if checked == 1:
            group.screenshot(path=str(shot))
    return problems


def _check_launch_buttons(page, entry) -> list[str]:
    hrefs = page.eval_on_selector_all(".dropdown-launch-buttons a", "els => els.map(a => a.href)")
    problems = []
    nb = f"{entry}.ipynb"
    colab = [h for h in hrefs if h.startswith("https://colab.research.google.com/") and h.endswith(nb)]
    binder = [h for h in hrefs if h.startswith("https://mybinder.org/")
              and f"urlpath=lab/tree/{nb}" in urllib.parse.unquote(h)]
    if not colab:
        problems.append(f"no Colab launch button for {nb} (found {hrefs})")
    if not binder:
        problems.append(f"no Binder/JupyterLab launch button for {nb} (found {hrefs})")
    return problems


@pytest.mark.parametrize("entry", PAGES)
def test_page_in_browser(chromium, server, entry):
    _need_page(entry)
    SHOTS.mkdir(exist_ok=True)
    stem = Path(entry).name
    context, page, problems = _load(chromium, server, entry)
    try:
        bad_imgs = page.evaluate("() => [...document.images].filter(i => !(i.naturalWidth > 0))"
                                 ".map(i => (i.getAttribute('src') || '').slice(0, 80))")
        problems += [f"image does not load: {src!r}" for src in bad_imgs]

        math = page.evaluate("""() => {
            const els = [...document.querySelectorAll('.math')];
            return {n: els.length,
                    raw: els.filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 60)),
                    errors: [...document.querySelectorAll('mjx-merror')].map(e => e.textContent.slice(0, 60))};
        }""")
        raw = math["raw"]
        problems += [f"math not typeset: {t!r}" for t in raw[:5]]
        if len(raw) > 5:
            problems.append(f"... and {len(raw) - 5} more of {math['n']} math elements not typeset")
        problems += [f"TeX error: {t!r}" for t in math["errors"]]

        problems += _check_widgets(page, SHOTS / f"{stem}-widget.png")
        if _is_notebook(entry):
            problems += _check_launch_buttons(page, entry)
        page.evaluate("() => window.scrollTo(0, 0)")
        page.screenshot(path=str(SHOTS / f"{stem}.png"))
        assert (SHOTS / f"{stem}.png").stat().st_size > 1000, "empty screenshot"
        problems += _check_tabs(page, SHOTS / f"{stem}-tabs.png")
        page.wait_for_timeout(200)  # let late console errors arrive
    finally:
        context.close()
    assert not problems, f"{entry}.html:\n  " + "\n  ".join(problems)


# --------------------------------------------------------------------------- JupyterLab (opt-in)
# Chapters run top to bottom in JupyterLab with live widgets. Slow (a kernel per chapter,
# minutes each), so opt-in: HASHNB_JUPYTERLAB_CHECK=1 (fast profile unless HASHNB_FAST=0).
# Runs on a temporary copy of book/, so JupyterLab's autosave never writes outputs into the
# repository's notebooks.
LAB = os.environ.get("HASHNB_JUPYTERLAB_CHECK") == "1"
LAB_TIMEOUT_MS = 1000 * int(os.environ.get("HASHNB_JUPYTERLAB_TIMEOUT", "900"))  # per chapter
NOTEBOOK_PAGES = [e for e in PAGES if _is_notebook(e)]


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory):
    if not LAB:
        pytest.skip("set HASHNB_JUPYTERLAB_CHECK=1 to run the chapters in JupyterLab (slow)")
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    work = tmp_path_factory.mktemp("lab")
    shutil.copytree(ROOT / "book", work / "book")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # user settings: render every cell (JupyterLab 4 windowing leaves off-screen cells out of
    # the DOM, where the widget checks below would not see them)
    settings = work / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    env = dict(os.environ, HASHNB_FAST=os.environ.get("HASHNB_FAST", "1"),
               JUPYTERLAB_SETTINGS_DIR=str(work / "settings"))
    log = open(work / "jupyterlab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
         "--ServerApp.token=hashnb", "--LabApp.expose_app_in_browser=True", "--allow-root",
         f"--ServerApp.root_dir={work}", f"--LabApp.workspaces_dir={work / 'workspaces'}"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/api/status?token=hashnb", timeout=2)
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"jupyter lab exited; see {work / 'jupyterlab.log'}")
                time.sleep(1)
        yield url
    finally:
        proc.terminate()  # shuts its kernels down
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


_LAB_STATE = """() => {
    const panel = window.jupyterapp.shell.currentWidget;
    const nb = panel.content;
    const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
    const out = {errors: [], unexecuted: 0, kernel: kernel ? kernel.status : 'none'};
    for (const cell of nb.model.cells) {
        if (cell.type !== 'code') continue;
        if (cell.executionCount === null) out.unexecuted += 1;
        for (let i = 0; i < cell.outputs.length; i++) {
            const o = cell.outputs.get(i).toJSON();
            if (o.output_type === 'error') out.errors.push(`${o.ename}: ${o.evalue}`.slice(0, 300));
        }
    }
    return out;
}"""


def _explorer_cells(entry: str) -> int:
    """How many explorers the chapter's code cells show (``...Explorer(...).show()`` or
    ``..._explorer(...).show()``): the live check expects that many, redrawing."""
    import json
    import re

    nb = json.loads((ROOT / f"{entry}.ipynb").read_text(encoding="utf-8"))
    src = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    return sum(len(re.findall(r"(?:Explorer|_explorer)\(.*?\)\s*\.show\(", s, re.S)) for s in src)


_OUT_SIGNATURE = ("e => [...e.querySelectorAll('.hnb-explorer-out')].map(o => o.innerHTML)"
                  ".join('\\u0000')")
# a new view has arrived: the outputs changed and hold a view, an image, a note or an error
_REDRAWN = ("([e, before]) => { const outs = [...e.querySelectorAll('.hnb-explorer-out')];"
            " const sig = outs.map(o => o.innerHTML).join('\\u0000');"
            " return sig !== before && outs.some(o => o.querySelector("
            "'.hnb-view, img, .hnb-note, .hnb-error')); }")
_KERNEL_IDLE = ("() => { const w = window.jupyterapp.shell.currentWidget;"
                " const k = w.sessionContext.session && w.sessionContext.session.kernel;"
                " return !!k && k.status === 'idle'; }")


def _exercise_explorer(page, explorer, label: str) -> tuple[list[str], list[str]]:
    """Change every control of one live explorer and wait for its output to redraw.

    Returns ``(done, problems)``: a line per redraw seen, a line per failure.
    """
    done: list[str] = []
    problems: list[str] = []
    handle = explorer.element_handle()

    def act(what: str, do) -> None:
        before = explorer.evaluate(_OUT_SIGNATURE)
        do()
        t0 = time.perf_counter()
        try:
            page.wait_for_function(_REDRAWN, arg=[handle, before], timeout=LAB_TIMEOUT_MS,
                                   polling=300)
            page.wait_for_function(_KERNEL_IDLE, timeout=LAB_TIMEOUT_MS, polling=300)
        except Exception as err:  # noqa: BLE001 - reported with the control's name
            problems.append(f"{label}: {what}: the output did not redraw ({type(err).__name__})")
            return
        errs = explorer.evaluate("e => [...e.querySelectorAll('.hnb-explorer-out .hnb-error')]"
                                 ".map(x => x.textContent.slice(0, 300))")
        if errs:
            problems.append(f"{label}: {what}: the explorer shows an error: {errs}")
        else:
            done.append(f"{label}: {what}: redrawn in {time.perf_counter() - t0:.1f} s")

    explorer.scroll_into_view_if_needed()
    # 1. redraw controls: one checkbox (if any) off and on again, then every dropdown, each
    #    to another value
    boxes = explorer.locator(".hnb-redraw input[type=checkbox]")
    if boxes.count():
        act("toggle the first checkbox", lambda: boxes.first.click())
        act("toggle it back", lambda: boxes.first.click())
    selects = explorer.locator(".hnb-redraw select")
    for j in range(selects.count()):
        sel = selects.nth(j)
        opts = sel.evaluate("s => [...s.options].map(o => o.textContent.replace(/\\s+/g, ' '))")
        cur = sel.evaluate("s => s.selectedIndex")
        if len(opts) < 2:
            continue
        nxt = (cur + 1) % len(opts)
        act(f"dropdown {j}: {opts[cur]!r} -> {opts[nxt]!r}",
            lambda sel=sel, nxt=nxt: sel.select_option(index=nxt))
    # 2. action buttons (train / load a new code length, search live)
    buttons = explorer.locator("button.hnb-action")
    for j in range(buttons.count()):
        inp = explorer.locator(".hnb-action-input select")
        if inp.count():
            opts = inp.first.evaluate("s => [...s.options].map(o => o.textContent)")
            fresh = [i for i, o in enumerate(opts) if "tab" not in o] or [len(opts) - 1]
            inp.first.select_option(index=fresh[0])
        text = buttons.nth(j).inner_text().strip()
        act(f"button {text!r}", lambda b=buttons.nth(j): b.click())
    if not done and not problems:
        problems.append(f"{label}: no control to change (no .hnb-redraw / .hnb-action)")
    return done, problems


@pytest.mark.parametrize("entry", NOTEBOOK_PAGES)
def test_chapter_live_in_jupyterlab(chromium, jupyterlab, entry):
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(120_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    t_start = time.perf_counter()
    try:
        page.goto(f"{jupyterlab}/lab/tree/{entry}.ipynb?token=hashnb")
        # a fresh workspace (workspaces_dir above), so the chapter is the current widget
        page.wait_for_function(
            "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
            " const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;"
            f" return !!k && k.status === 'idle' && w.context.path === '{entry}.ipynb'; }}",
            polling=500)
        # fire and forget: awaiting the command would hang on a dialog, with no timeout
        page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
        page.wait_for_function(f"() => {{ const s = ({_LAB_STATE})(); return s.kernel === 'idle' && "
                               "(s.unexecuted === 0 || s.errors.length > 0); }",
                               timeout=LAB_TIMEOUT_MS, polling=2000)
        t_run = time.perf_counter() - t_start
        state = page.evaluate(_LAB_STATE)
        assert not state["errors"], f"{entry}: cells raised in JupyterLab: {state['errors']}"
        assert state["unexecuted"] == 0, f"{entry}: {state['unexecuted']} code cells did not run"
        # only this chapter's panel: a restored workspace may still hold an earlier chapter
        panel = page.locator(f'[id="{page.evaluate("() => window.jupyterapp.shell.currentWidget.id")}"]')
        # live widgets: at least one view rendered by JupyterLab's own widget manager
        assert panel.locator(".jp-OutputArea .jupyter-widgets").count() > 0, f"{entry}: no live widget"
        # every explorer the chapter shows is live, and redraws when a control changes
        explorers = panel.locator(".jp-OutputArea .hnb-explorer")
        expected = _explorer_cells(entry)
        assert explorers.count() == expected, (
            f"{entry}: {explorers.count()} live explorer(s) rendered, the cells show {expected}")
        done: list[str] = []
        problems: list[str] = []
        if HTML.exists():
            SHOTS.mkdir(exist_ok=True)
        for i in range(explorers.count()):
            kind = explorers.nth(i).evaluate(
                "e => [...e.classList].filter(c => c.startsWith('hnb-explorer-')).join(' ')")
            d, p = _exercise_explorer(page, explorers.nth(i), f"explorer {i} ({kind})")
            done += d
            problems += p
            if HTML.exists():
                explorers.nth(i).screenshot(path=str(SHOTS / f"{Path(entry).name}-jupyterlab-{i}.png"))
        assert not problems, f"{entry}:\n  " + "\n  ".join(problems + done)
        state = page.evaluate(_LAB_STATE)
        assert not state["errors"], f"{entry}: cells raised after the explorer changes: {state['errors']}"
        assert not errors, f"{entry}: page errors in JupyterLab: {errors}"
        print(f"\n{entry}: ran in {t_run:.0f} s, {len(done)} redraw(s), "
              f"{time.perf_counter() - t_start:.0f} s in all" + "".join(f"\n  {x}" for x in done))
    finally:
        try:  # shut this chapter's kernel down and close it: the next chapter starts clean
            page.evaluate("async () => { const w = window.jupyterapp.shell.currentWidget;"
                          " if (w && w.sessionContext) { await w.sessionContext.shutdown(); w.dispose(); } }")
        except Exception:  # noqa: BLE001 - best effort; the fixture stops JupyterLab anyway
            pass
        page.close()
