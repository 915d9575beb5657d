"""Consistency checks for the Jupyter Book and its tooling (no notebook is executed here).

- every notebook in book/ is committed without outputs (tools/strip_notebooks.py);
- _toc.yml and book/ agree: every notebook is listed, every entry exists;
- every notebook's first code cell installs hashnb when it is missing (Colab);
- README.md's two set-up commands are what .ci/run runs;
- _config.yml keeps the settings CI depends on.
Executing the notebooks is nbmake's job: ``pytest -n 2 --nbmake tests book``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"


def _load_strip_tool():
    spec = importlib.util.spec_from_file_location("strip_notebooks", ROOT / "tools" / "strip_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


strip_tool = _load_strip_tool()
NOTEBOOKS = strip_tool.find_notebooks(BOOK)


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _load_nb(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _toc_files(node) -> list[str]:
    """Every ``root`` / ``file`` entry of a jb-book _toc.yml, depth first."""
    found = []
    if isinstance(node, dict):
        for key in ("root", "file"):
            if isinstance(node.get(key), str):
                found.append(node[key])
        for value in node.values():
            if isinstance(value, (list, dict)):
                found.extend(_toc_files(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_toc_files(item))
    return found


def _toc() -> dict:
    return yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))


def _config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- notebooks


def test_book_has_notebooks():
    assert NOTEBOOKS, "no notebooks found under book/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_rel)
def test_notebook_outputs_stripped(path):
    nb = _load_nb(path)
    dirty = [
        i
        for i, cell in enumerate(nb["cells"])
        if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not dirty, f"{_rel(path)}: code cells {dirty} hold outputs; run python tools/strip_notebooks.py"
    assert strip_tool.dumps(strip_tool.strip_notebook(nb)) == path.read_text(encoding="utf-8"), (
        f"{_rel(path)}: metadata or formatting is not stripped; run python tools/strip_notebooks.py"
    )


def test_strip_gives_cells_without_an_id_a_stable_unique_one():
    """nbformat 4.5 needs a cell id; cells a script appended (or a copy of another cell's
    source) get one from the stripper, the same on every run, never a taken one."""
    md = {"cell_type": "markdown", "metadata": {}, "source": ["same text"]}
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {},
          "cells": [dict(md, id="keep0001"), dict(md), dict(md)]}
    out = strip_tool.strip_notebook(nb)
    ids = [c["id"] for c in out["cells"]]
    assert ids[0] == "keep0001" and len(set(ids)) == 3
    assert all(len(i) == 8 for i in ids[1:])
    assert [c["id"] for c in strip_tool.strip_notebook(nb)["cells"]] == ids


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_rel)
def test_first_code_cell_installs_hashnb(path):
    cells = [c for c in _load_nb(path)["cells"] if c["cell_type"] == "code"]
    assert cells, f"{_rel(path)} has no code cell"
    src = _source(cells[0])
    positions = {}
    for name, pattern in [
        ("try", r"^\s*try\s*:"),
        ("import", r"^\s+import hashnb\b"),
        ("except", r"^\s*except\s+(\(\s*)?(ModuleNotFoundError|ImportError)\b"),
        ("pip", r"pip\W+install"),
    ]:
        m = re.search(pattern, src, flags=re.MULTILINE)
        assert m, f"{_rel(path)}: first code cell lacks {name!r} (need try: import hashnb / except ImportError: pip install)"
        positions[name] = m.start()
    assert positions["try"] < positions["import"] < positions["except"] < positions["pip"], (
        f"{_rel(path)}: first code cell must be `try: import hashnb` then `except ImportError:` with a pip install"
    )


def test_strip_tool_oracle(tmp_path):
    nb = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"display_name": "venv", "language": "python", "name": "venv"},
            "widgets": {"application/vnd.jupyter.widget-state+json": {"state": {}}},
            "colab": {"provenance": []},
            "mystnb": {"execution_timeout": 60},
        },
        "cells": [
            {"cell_type": "markdown", "id": "m", "metadata": {"tags": ["x"], "collapsed": True}, "source": ["# T"]},
            {
                "cell_type": "code",
                "id": "c",
                "execution_count": 7,
                "metadata": {"tags": ["hide-input"], "scrolled": True, "ExecuteTime": {}},
                "outputs": [{"output_type": "stream", "name": "stdout", "text": ["hi\n"]}],
                "source": ["print('hi')"],
            },
        ],
    }
    original = json.loads(json.dumps(nb))
    out = strip_tool.strip_notebook(nb)
    assert nb == original, "strip_notebook must not modify its input"
    assert out["metadata"] == {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "mystnb": {"execution_timeout": 60},
    }
    code = out["cells"][1]
    assert code["outputs"] == [] and code["execution_count"] is None
    assert code["metadata"] == {"tags": ["hide-input"]} and code["id"] == "c" and code["source"] == ["print('hi')"]
    assert out["cells"][0] == {"cell_type": "markdown", "id": "m", "metadata": {"tags": ["x"]}, "source": ["# T"]}
    assert strip_tool.strip_notebook(out) == out, "stripping must be idempotent"

    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(nb), encoding="utf-8")
    assert strip_tool.main(["--check", str(path)]) == 1
    assert json.loads(path.read_text(encoding="utf-8")) == nb, "--check must not write"
    assert strip_tool.main([str(path)]) == 0
    assert json.loads(path.read_text(encoding="utf-8")) == out
    assert strip_tool.main(["--check", str(path)]) == 0
    with pytest.raises(ValueError, match="nbformat-4"):
        strip_tool.strip_notebook({"cells": []})


# --------------------------------------------------------------------------- table of contents


def test_toc_entries_exist():
    toc = _toc()
    assert toc.get("format") == "jb-book"
    entries = _toc_files(toc)
    assert entries and entries[0] == toc["root"]
    assert len(entries) == len(set(entries)), f"duplicate _toc.yml entries: {entries}"
    for entry in entries:
        stem = ROOT / entry
        matches = [p for p in (stem.with_suffix(".md"), stem.with_suffix(".ipynb")) if p.exists()]
        assert len(matches) == 1, f"_toc.yml entry {entry!r}: expected one of {entry}.md / {entry}.ipynb, found {matches}"


def test_every_book_page_is_in_toc():
    listed = set(_toc_files(_toc()))
    pages = NOTEBOOKS + sorted(BOOK.glob("*.md"))
    missing = [_rel(p) for p in pages if _rel(p.with_suffix("")) not in listed]
    assert not missing, f"not listed in _toc.yml (only_build_toc_files skips them silently): {missing}"


# --------------------------------------------------------------------------- README and CI


def _readme_command(keyword: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```(?:bash|sh|console)\n(.*?)```", text, flags=re.DOTALL)
    lines = [ln.strip() for b in blocks for ln in b.splitlines() if keyword in ln]
    assert len(lines) == 1, f"README.md: expected exactly one bash line with {keyword!r}, found {lines}"
    return lines[0]


@pytest.mark.parametrize("keyword", ["-m pytest", "jupyter-book build"])
def test_readme_commands_are_what_ci_runs(keyword):
    command = _readme_command(keyword)
    parts = [p.strip() for p in command.split("&&")]
    assert parts[:2] == ["python3 -m venv .venv", ".venv/bin/pip install -r requirements.txt"], (
        f"README set-up command must start with a venv and the requirements: {command}"
    )
    ci_lines = {ln.strip() for ln in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()}
    for part in parts:
        # the same command on a line of its own; only an output redirection may follow
        assert any(ln == part or ln.startswith(part + " >") for ln in ci_lines), (
            f".ci/run does not run the README's {part!r} on a line of its own"
        )


def test_test_command_covers_units_and_notebooks():
    argv = shlex.split(_readme_command("-m pytest").split("&&")[-1])
    assert argv[:3] == [".venv/bin/python", "-m", "pytest"]
    assert "--nbmake" in argv and "tests" in argv and "book" in argv, argv


def test_build_command_fails_on_warnings():
    argv = shlex.split(_readme_command("jupyter-book build").split("&&")[-1])
    for flag in ("-W", "-n", "--keep-going"):
        assert flag in argv, f"book build must use {flag}: {argv}"
    assert argv[-1] == "."


def test_ci_script_is_strict_and_executable():
    script = ROOT / ".ci" / "run"
    text = script.read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash")
    assert "set -euo pipefail" in text
    assert os.access(script, os.X_OK), ".ci/run must be executable (chmod +x .ci/run)"
    assert "HASHNB_CACHE=" in text and "unset HASHNB_DATA" in text


def test_conftest_selects_fast_profile():
    # Set by the repository's conftest.py; nbmake kernels inherit it.
    assert os.environ.get("HASHNB_FAST") is not None, "conftest.py must set HASHNB_FAST"


# --------------------------------------------------------------------------- _config.yml


def test_config_settings_ci_relies_on():
    cfg = _config()
    assert cfg["only_build_toc_files"] is True
    execute = cfg["execute"]
    assert execute["timeout"] >= 600, "training cells need a long cell timeout"
    assert execute["execute_notebooks"] in ("cache", "force")
    assert execute.get("allow_errors") is False
    assert execute.get("stderr_output", "show") in ("show", "remove"), (
        "stderr_output 'warn'/'remove-warn' turns tqdm and warnings text into Sphinx warnings, which fail -W"
    )
    assert re.match(r"https://github\.com/[^/]+/[^/]+$", cfg["repository"]["url"]), (
        "repository.url must be a GitHub URL: another host aborts the build"
    )
    excluded = set(cfg["exclude_patterns"])
    assert {".venv", "_build", "hashnb", "tests"} <= excluded
    for bib in cfg.get("bibtex_bibfiles", []):
        assert (ROOT / bib).exists(), f"bibtex file {bib} is missing"
