"""Helpers for the book's notebooks: glue numbers into prose, say which data a chapter uses,
find the committed results.

``glue`` forwards to ``myst_nb.glue`` when the notebook is executed by Jupyter Book (so
``{glue:text}`` roles in the prose show numbers from executed cells) and simply displays
the value elsewhere (Colab, JupyterLab without myst-nb).
"""
from __future__ import annotations

from hashnb.matrix import results_dir
from hashnb.utils import fast_mode

__all__ = ["glue", "chapter_dataset", "banner", "data_line", "results_dir", "twin_test",
           "profile_results"]

def glue(name: str, value, display: bool = False):
    """Record ``value`` under ``name`` for ``{glue:text}`name`` in the book's prose.

    numpy and 0-d torch scalars are turned into Python numbers first: myst-nb formats
    ``{glue:text}`x:.3f``` from the text repr, which for ``np.float64`` is not a number.
    """
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    try:
        from myst_nb import glue as _glue
    except ImportError:  # Colab / plain Jupyter: show it, nothing to glue into
        if display:
            from IPython.display import display as _display
            _display(value)
        return value
    _glue(name, value, display=display)
    return value


def banner(dataset, split=None) -> str:
    """One line saying what data the chapter runs on (printed by every chapter)."""
    mode = "FAST profile (HASHNB_FAST=1)" if fast_mode() else "full profile"
    parts = [f"data: {dataset.name} ({len(dataset.labels):,} items, {dataset.labels.shape[1]} classes)"]
    if split is not None:
        parts.append(f"protocol {split.protocol}, seed {split.seed}: {len(split.train):,} train, "
                     f"{len(split.val):,} val, {len(split.query):,} query, "
                     f"{len(split.database):,} database")
    parts.append(mode)
    return " | ".join(parts)


def chapter_dataset(prefer: str = "digits"):
    """The dataset a chapter runs on.

    ``prefer="cifar10"`` uses frozen EfficientNet-Lite0 features of CIFAR-10 when the data
    can be found (``HASHNB_DATA`` or torchvision's download) and otherwise falls back, with
    a printed notice, to the embedded ``digits``: the fallback is the notebook's choice,
    made visibly, never a silent substitution inside the library.
    """
    from hashnb.data import DatasetNotFoundError, load_dataset, load_features

    if prefer == "cifar10":
        try:
            return load_features("cifar10")
        except DatasetNotFoundError as err:
            print(f"CIFAR-10 not available ({err.__class__.__name__}); falling back to the "
                  "embedded digits data. Set HASHNB_DATA to run this chapter on CIFAR-10.")
    elif prefer != "digits":
        raise ValueError("prefer must be 'digits' or 'cifar10'")
    return load_dataset("digits")



def data_line(prefer: str = "cifar10") -> str:
    """What data a chapter will use, said before anything is loaded (the install cell).

    Only looks at ``HASHNB_DATA`` and the profile; :func:`chapter_dataset` makes the actual
    choice (and prints a notice when it falls back).
    """
    import os

    mode = "FAST profile (HASHNB_FAST=1)" if fast_mode() else "full profile"
    if prefer == "digits":
        return f"data: scikit-learn digits (embedded, offline) | {mode}"
    root = os.environ.get("HASHNB_DATA")
    if root:
        where = f"CIFAR-10 from HASHNB_DATA={root}"
        if not os.path.exists(root):
            where += " (that path does not exist: the chapter will fall back to digits)"
    else:
        where = ("CIFAR-10 if torchvision can download it (online), else the embedded digits; "
                 "set HASHNB_DATA to a CIFAR-10 folder to choose")
    return f"data: {where}; frozen EfficientNet-Lite0 features, cached | {mode}"


def profile_results(folder: str = "cpu") -> list[dict]:
    """The committed cpu-profile results (``book/results/<folder>``), every protocol."""
    from hashnb.matrix import load_results

    return load_results(results_dir(folder))


def twin_test(a: str, b: str, results: list[dict] | None = None, *, protocol: str | None = None):
    """``a`` against its twin ``b`` on the committed cpu profile, paired by seed.

    Returns ``(table, verdict)``: the :func:`hashnb.matrix.paired_comparison` table,
    formatted for display, and one Markdown sentence per code length that says the mean
    paired difference, its bootstrap CI, the t-test p value and whether it is significant
    at 0.05 -- written from the numbers, so the prose cannot go stale.
    """
    from hashnb.matrix import paired_comparison

    res = profile_results() if results is None else results
    tab = paired_comparison(res, a, b, protocol=protocol)
    if tab.empty:
        return tab, f"No paired results of `{a}` and `{b}` are committed yet."
    parts, wins, losses = [], [], []
    for r in tab.to_dict("records"):
        sig = "significant" if r["significant"] else "not significant"
        parts.append(f"{r['bits']} bits: {r['diff']:+.4f} mAP [{r['ci_low']:+.4f}, "
                     f"{r['ci_high']:+.4f}], p = {r['p']:.2g} ({sig}, {r['n']} seeds)")
        if r["significant"]:
            (wins if r["diff"] > 0 else losses).append(str(r["bits"]))
    summary = (f"`{a}` minus `{b}`, paired over seeds on protocol "
               f"{', '.join(sorted(set(tab['protocol'])))}: " + "; ".join(parts) + ". ")
    if wins or losses:
        summary += (f"Significantly better at {', '.join(wins) or 'no'} bits"
                    f"{'; significantly worse at ' + ', '.join(losses) + ' bits' if losses else ''}.")
    else:
        summary += "No difference is significant at 0.05."
    show = tab.drop(columns=["t", "diff_std"]).style.format(
        {"diff": "{:+.4f}", "p": "{:.2g}", "ci_low": "{:+.4f}", "ci_high": "{:+.4f}"}).hide(axis="index")
    return show, summary
