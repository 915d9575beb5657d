#!/usr/bin/env python3
"""Strip outputs, execution counts and editor metadata from the book's notebooks, in place.

The book's notebooks are committed without outputs: Jupyter Book executes them at build
time and nbmake executes them in the tests, so committed outputs would only be stale
copies (and large ones: images, widget state). Run before committing::

    python tools/strip_notebooks.py            # strip book/**/*.ipynb in place
    python tools/strip_notebooks.py --check    # list notebooks that need stripping; exit 1 if any
    python tools/strip_notebooks.py a.ipynb    # strip the given files only

What is kept: cell sources, cell ids (a cell without one gets a stable id made from its
source), markdown attachments, the cell metadata keys that
Jupyter Book reads (``tags``, ``mystnb``) and, at notebook level, ``kernelspec`` (forced to
the standard ``python3`` kernel), ``language_info.name`` and ``mystnb``. Everything else
(outputs, execution counts, widget state, Colab/JupyterLab editor metadata) is dropped.
The file is written as nbformat writes it (indent 1, sorted keys, trailing newline), so a
notebook saved by JupyterLab and then stripped gives a small diff. Only the standard
library is used.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"

KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}
KEEP_CELL_METADATA = ("tags", "mystnb")
KEEP_NOTEBOOK_METADATA = ("mystnb",)

__all__ = ["strip_notebook", "strip_file", "find_notebooks", "dumps", "main"]


def strip_notebook(nb: dict[str, Any]) -> dict[str, Any]:
    """Return a stripped copy of a notebook given as parsed JSON (nbformat 4).

    Parameters
    ----------
    nb : dict
        The notebook, as ``json.load`` returns it.

    Returns
    -------
    dict
        A new dict: code cells with ``outputs == []`` and ``execution_count is None``,
        minimal metadata (see the module docstring). The input is not modified.

    Raises
    ------
    ValueError
        If ``nb`` is not an nbformat 4 notebook.
    """
    if not isinstance(nb, dict) or nb.get("nbformat") != 4 or "cells" not in nb:
        raise ValueError(
            "not an nbformat-4 notebook; open and re-save it in JupyterLab (File > Save) first"
        )
    out: dict[str, Any] = {k: v for k, v in nb.items() if k not in ("cells", "metadata")}
    meta = nb.get("metadata", {}) or {}
    new_meta: dict[str, Any] = {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}}
    for key in KEEP_NOTEBOOK_METADATA:
        if key in meta:
            new_meta[key] = meta[key]
    out["metadata"] = new_meta

    cells = []
    taken = {c["id"] for c in nb["cells"] if "id" in c}
    for cell in nb["cells"]:
        new = {k: v for k, v in cell.items() if k not in ("metadata", "outputs", "execution_count")}
        if "id" not in new:  # nbformat 4.5 requires one; cells added by a script lack it
            new["id"] = _new_id(cell, taken)
            taken.add(new["id"])
        cmeta = cell.get("metadata", {}) or {}
        new["metadata"] = {k: cmeta[k] for k in KEEP_CELL_METADATA if k in cmeta}
        if cell.get("cell_type") == "code":
            new["outputs"] = []
            new["execution_count"] = None
        cells.append(new)
    out["cells"] = cells
    return out


def _new_id(cell: dict[str, Any], taken: set) -> str:
    """A cell id that is stable (derived from the cell's source) and unique in its notebook."""
    src = "".join(cell.get("source", []))
    for salt in range(1000):
        cid = hashlib.sha1(f"{salt}:{src}".encode()).hexdigest()[:8]
        if cid not in taken:
            return cid
    raise ValueError("could not find a free cell id")  # pragma: no cover - 1000 collisions


def dumps(nb: dict[str, Any]) -> str:
    """Serialise like ``nbformat.writes``: indent 1, sorted keys, unicode kept, final newline."""
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def strip_file(path: str | Path, *, check: bool = False) -> bool:
    """Strip one notebook file in place.

    Parameters
    ----------
    path : str or Path
        The ``.ipynb`` file.
    check : bool, keyword-only
        If True, only report; the file is not written.

    Returns
    -------
    bool
        True if the file's content differs (``check=True``) or was changed (``check=False``).
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        nb = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); fix or re-save the notebook") from exc
    new_text = dumps(strip_notebook(nb))
    changed = new_text != text
    if changed and not check:
        path.write_text(new_text, encoding="utf-8")
    return changed


def find_notebooks(root: str | Path = BOOK) -> list[Path]:
    """All ``*.ipynb`` files under ``root`` (default: ``book/``), checkpoints and ``_build`` excluded."""
    root = Path(root)
    return sorted(
        p
        for p in root.rglob("*.ipynb")
        if ".ipynb_checkpoints" not in p.parts and "_build" not in p.parts
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: book/**/*.ipynb)")
    parser.add_argument(
        "--check", action="store_true", help="do not write; exit 1 if any notebook needs stripping"
    )
    args = parser.parse_args(argv)
    paths = args.paths or find_notebooks()
    changed = [p for p in paths if strip_file(p, check=args.check)]
    for p in changed:
        print(("needs stripping: " if args.check else "stripped: ") + str(p))
    if args.check and changed:
        print(f"run: python {Path(__file__).relative_to(ROOT)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
