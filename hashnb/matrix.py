"""The benchmark matrix: methods x bits x seeds through the one training loop.

Each cell writes one JSON file (``<out>/<dataset>-<protocol>-<method>-<bits>b-s<seed>.json``)
with the metrics and their provenance: commit, hardware, package versions, dataset,
protocol, features (backbone, input size), seed, epochs, selection rule and wall times.
A cell whose JSON exists with the same configuration (its ``request``) is skipped, so an
interrupted matrix resumes where it stopped; one made with another configuration stops the
run before any work (``force=True`` / ``--force`` recomputes it).
``python -m hashnb.bench run ...`` is the command line for :func:`run_matrix`.

A method may be given as a *variant spec* ``name:key=value,key=value`` (for ablations),
e.g. ``crh:reassign=none`` or ``mlh:experts=4,top_k=2``: the keyword arguments go to the
method's constructor, the whole spec is the result's ``method`` label (and, with ``:``,
``=`` and ``,`` made file-safe, part of its file name), and ``method_name`` /
``method_kwargs`` record the parts. Values are Python literals (``1``, ``0.5``, ``True``,
``'greedy'``); a bare word that is not a literal is taken as a string.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from pathlib import Path
from typing import Iterable

import numpy as np
from tqdm.auto import tqdm

from hashnb.data import HashingDataset, image_transform, load_dataset, load_features, make_split
from hashnb.methods.registry import check_method_args, parse_method_spec
from hashnb.train import data_fingerprint, fit, method_from_dataset, run_method
from hashnb.utils import Timer, json_default, provenance

__all__ = ["run_matrix", "load_results", "summarize", "mean_std_text", "parse_method_spec",
           "paired_comparison", "TWINS", "twin_table", "floor_checks", "pending_cells",
           "read_pending", "markdown_report", "result_path", "results_dir", "train_throughput",
           "PROFILES"]

REPOSITORY = "https://github.com/hashnb/hashnb"  # where the chapters' install cell gets hashnb


def result_path(out: Path, dataset: str, protocol: str, method: str, bits: int, seed: int) -> Path:
    """``<out>/<dataset>-<protocol>-<method spec, file-safe>-<bits>b-s<seed>.json``."""
    safe = re.sub(r"[^A-Za-z0-9_.+-]+", "_", method.replace(":", "+").replace("=", "-"))
    return out / f"{dataset}-{protocol}-{safe}-{bits}b-s{seed}.json"


# The benchmark profiles of the book (chapter 8). ``cpu`` and ``cpu-pool`` are what the
# committed book/results/cpu and book/results/cpu-pool JSON files were made with; ``gpu`` is
# the end-to-end variant, documented and runnable on one GPU, never needed by CI. ``tuned`` names a folder below
# book/results (``bench tune``'s output). Explicit command-line options override a
# profile's entries.
PROFILES: dict[str, dict] = {
    "cpu": dict(
        dataset="cifar10", protocol="cifar10", seeds=[0, 1, 2, 3, 4], bits=[8, 16, 32, 64],
        methods=["lsh", "itq", "dpsh", "hashnet", "csq", "orthohash", "crh", "mlh", "adsh",
                 "mah", "crh:reassign=none", "mlh:branches=center", "mlh:experts=0"],
        extra_bits={"mah": [4, 6, 12]},
        features={"backbone": "tf_efficientnet_lite0", "input_size": 128},
        tuned="tuned",
        description="frozen ImageNet EfficientNet-Lite0 features at 128 px, each method's "
                    "tuned configuration (book/results/tuned: lr, weight decay, its own "
                    "settings), early stopping on validation mAP (100 epochs at most, "
                    "patience 10), best validation epoch; three twins of the recent methods"),
    # ADSH and MAH under their own protocol: the labelled database is the training pool,
    # the database codes are the learned V (committed in book/results/cpu-pool)
    "cpu-pool": dict(
        dataset="cifar10", protocol="cifar10-1", seeds=[0, 1, 2, 3, 4], bits=[8, 16, 32, 64],
        methods=["adsh:pool=database", "mah:pool=database"],
        extra_bits={"mah:pool=database": [4, 6, 12]},
        features={"backbone": "tf_efficientnet_lite0", "input_size": 128},
        tuned="tuned",
        description="ADSH/MAH's own protocol (cifar10-1, database = training pool), "
                    "tuned configurations of protocol cifar10 reused"),
    "gpu": dict(
        dataset="cifar10", protocol="cifar10", seeds=[0, 1, 2], bits=[16, 32, 64],
        methods=["dpsh", "hashnet", "csq", "orthohash"],
        extra_bits={},
        finetune={"backbone": "tf_efficientnet_lite0", "pretrained": True, "input_size": 224,
                  "batch_size": 64, "amp": True, "backbone_lr_mult": 0.1},
        epochs=30,
        description="end-to-end fine-tuning of ImageNet EfficientNet-Lite0 at 224 px "
                    "(AMP), 30 epochs, best validation epoch; closed-form methods omitted"),
}


def run_matrix(methods: Iterable[str], bits: Iterable[int], seeds: Iterable[int], *,
               dataset="digits", protocol: str | None = None, out: str | Path,
               epochs: dict | int | None = None, features: dict | None = None,
               finetune: dict | None = None, extra_bits: dict | None = None,
               split_kwargs: dict | None = None, progress: bool = True,
               root: str | None = None, device=None, force: bool = False,
               tuned: dict | None = None) -> list[dict]:
    """Run every (method, bits, seed) not already in ``out`` and return all their results.

    Parameters
    ----------
    methods : names or variant specs ``name:key=value,...`` (see :func:`parse_method_spec`).
    dataset : "digits" (vectors), an image dataset name, or a :class:`HashingDataset`. Image
        data is turned into frozen features with ``features`` (default tf_efficientnet_lite0
        at 128 px) unless ``finetune`` is given.
    epochs : one number for every method, a {method: epochs} dict, or None for each
        method's default.
    finetune : train end to end on the images instead of frozen features, e.g.
        ``{"backbone": "tf_efficientnet_lite0", "pretrained": True, "input_size": 224,
        "batch_size": 64, "amp": True, "backbone_lr_mult": 0.1}``; the images are resized to
        ``input_size`` and normalised for the backbone.
    extra_bits : {method: [bits, ...]} run in addition to ``bits`` (MAH's 4/6/12 bits).
    split_kwargs : extra arguments of :func:`hashnb.data.make_split` (e.g. ``n_query``).
    force : recompute results stored with another configuration (otherwise ``ValueError``
        naming the differences, before any cell runs).
    tuned : ``{method: settings}`` from :func:`hashnb.tuning.load_tuned` (``bench tune``):
        the method's tuned ``method_kwargs``, ``lr``, ``weight_decay``, ``epochs`` (the most),
        ``patience`` (early stopping on validation) and ``val_every``; a variant spec's own
        arguments and an explicit ``epochs`` win. A variant spec (``mlh:experts=0``) without
        its own record uses its method's. Recorded in every result's ``request``.

    A stored result is reused only when its ``request`` (the cell's whole configuration:
    data content, features, split, method and resolved hyper-parameters, bits, seed,
    epochs) equals the one asked for.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    methods = list(methods)
    specs = {m: parse_method_spec(m) for m in methods}  # fail on a bad spec before any work
    for m, (name, mkw) in specs.items():
        try:
            check_method_args(name, mkw)
        except ValueError as e:
            raise ValueError(f"method spec {m!r}: {e}") from None
    feat_kw = {"backbone": "tf_efficientnet_lite0", "input_size": 128, **(features or {})}
    ft = dict(finetune or {})
    with Timer() as tf:
        ds = dataset if isinstance(dataset, HashingDataset) else load_dataset(dataset, root=root)
        if ds.kind == "image" and not ft:
            ds = load_features(ds, progress=progress, **feat_kw)
    if ft:
        if ds.kind != "image":
            raise ValueError(f"finetune needs an image dataset; {ds.name!r} is {ds.kind!r} data")
        feats = {"finetune": True, **ft}
    else:
        feats = (ds.meta or {}).get("features")
    cells = [(m, int(b), int(s)) for m in methods
             for b in sorted(set(map(int, bits)) | set((extra_bits or {}).get(m, [])))
             for s in seeds]

    # Every cell's full configuration, checked against the stored results before any
    # training: a result is reused only when it was made with exactly this configuration.
    plan, stale = [], []
    for method, b, seed in cells:
        split = make_split(ds, protocol, seed=seed, **(split_kwargs or {}))
        name, mkw = specs[method]
        ep = (epochs.get(method, epochs.get(name)) if isinstance(epochs, dict) else epochs)
        fit_kw: dict = {}
        tc = (tuned or {}).get(method, (tuned or {}).get(name))
        if tc:
            mkw = {**tc.get("method_kwargs", {}), **mkw}
            ep = tc.get("epochs") if ep is None else ep
            fit_kw = {k: tc[k] for k in ("lr", "weight_decay", "patience", "val_every")
                      if tc.get(k) is not None}
        if ft:
            mkw = {"backbone": ft.get("backbone", "tf_efficientnet_lite0"),
                   "pretrained": ft.get("pretrained", True),
                   **({"backbone_lr_mult": ft["backbone_lr_mult"]}
                      if "backbone_lr_mult" in ft else {}), **mkw}
            fit_kw.update({k: ft[k] for k in ("batch_size", "amp") if k in ft})
            if ft.get("input_size"):
                fit_kw["transform"] = image_transform(mkw["backbone"], ft["input_size"])
        request = _request(name, mkw, ds, split, bits=b, seed=seed, epochs=ep, features=feats,
                           fit_kw=fit_kw, spec=method)
        path = result_path(out, ds.name, split.protocol, method, b, seed)
        old = _read_result(path)
        if old is not None and old.get("request") != request:
            stale.append((path, _differences(old.get("request"), request)))
        plan.append((method, name, mkw, b, seed, split, ep, fit_kw, request, path, old, tc))
    if stale and not force:
        lines = "\n".join(f"  {p.name}: {d}" for p, d in stale[:10])
        more = f"\n  ... and {len(stale) - 10} more" if len(stale) > 10 else ""
        raise ValueError(f"{len(stale)} result(s) in {out} were made with another "
                         f"configuration than the one asked for:\n{lines}{more}\n"
                         "rerun with force=True (--force) to recompute and overwrite them, "
                         "or write to another --out folder")

    results = []
    bar = tqdm(plan, desc="benchmark matrix", disable=not progress)
    for method, name, mkw, b, seed, split, ep, fit_kw, request, path, old, tc in bar:
        bar.set_postfix_str(path.stem)
        if old is not None and old.get("request") == request:
            results.append(old)
            continue
        with Timer() as tt:
            run = run_method(name, ds, split, bits=b, seed=seed, epochs=ep, progress=False,
                             method_kwargs=mkw, device=device, **fit_kw)
        with Timer() as te:
            metrics = run.evaluate()
            metrics["map_ties_index"] = run.evaluate(ties="index")["map"]
        rec = provenance(
            dataset=ds.name, protocol=split.protocol, split_sizes=split.sizes(),
            features=feats, method=method, method_name=name, method_kwargs=mkw,
            bits=b, seed=seed,
            epochs=run.config.get("epochs"), best_epoch=run.best_epoch,
            selection="best validation mAP@all (val queries vs train)" if run.best_epoch
            else "closed form (no selection)",
            hparams=run.config.get("hparams"), lr=run.config.get("lr"),
            batch_size=run.config.get("batch_size"),
            wall_seconds={"features_load": tf.seconds, "train": tt.seconds,
                          "train_loop": run.train_seconds, "evaluate": te.seconds},
            train_samples_per_s=_samples_per_s(run, len(split.train)),
            metrics=metrics, metric_convention="tie-aware (ties grouped), HashNet normalisation, "
                                               "R = all database items for 'map'",
            tuned=tc or None, request=request)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(rec, indent=1, default=json_default))
        os.replace(tmp, path)
        results.append(rec)
    return results


def _request(name: str, mkw: dict, ds, split, *, bits: int, seed: int, epochs, features,
             fit_kw: dict, spec: str) -> dict:
    """Everything a cell's result depends on, as JSON: the data's content, the features, the
    split, the method with every resolved hyper-parameter and default, bits, seed, epochs."""
    m = method_from_dataset(name, ds, bits=bits, seed=seed, **mkw)
    sha = hashlib.sha1()
    for part in ("train", "val", "query", "database"):
        sha.update(np.asarray(getattr(split, part), dtype=np.int64).tobytes())
    req = {"dataset": ds.name, "data": data_fingerprint(ds), "features": features,
           "protocol": split.protocol, "split": sha.hexdigest()[:12], "method": spec,
           "method_kwargs": mkw, "hparams": m.hparams(), "bits": bits, "seed": seed,
           "epochs": m.default_epochs if epochs is None else int(epochs),
           "lr": fit_kw.get("lr", m.default_lr),
           "batch_size": fit_kw.get("batch_size", m.default_batch_size),
           "weight_decay": fit_kw.get("weight_decay", m.default_weight_decay),
           "fit": {k: v for k, v in fit_kw.items()
                   if k not in ("batch_size", "lr", "weight_decay")}}
    return json.loads(json.dumps(req, default=json_default, sort_keys=True))


def _read_result(path: Path) -> dict | None:
    """A stored result, or None when there is none; an unreadable one is reported and redone."""
    if not path.exists():
        return None
    try:
        rec = json.loads(path.read_text())
        if not isinstance(rec, dict):
            raise ValueError("not a JSON object")
        return rec
    except (OSError, ValueError, UnicodeDecodeError) as e:
        warnings.warn(f"{path} is unreadable ({type(e).__name__}: {e}); it is computed again",
                      RuntimeWarning, stacklevel=3)
        return None


def _differences(old: dict | None, new: dict) -> str:
    if old is None:
        return "no configuration recorded (written before hashnb recorded it)"
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys)


def _samples_per_s(run, n_train: int) -> float | None:
    """Training items per second over the epochs' own time (validation passes excluded)."""
    times = [h["time"] for h in run.history if "time" in h]
    if not times or not sum(times):
        return None
    # samples actually fed (ADSH/MAH train on a sampled subset), else the training set size
    seen = [h.get("samples", n_train) for h in run.history if "time" in h]
    return sum(seen) / sum(times)


def train_throughput(methods: Iterable[str], *, dataset="cifar10", protocol: str | None = None,
                     bits: int = 32, epochs: int = 3, seed: int = 0,
                     features: dict | None = None, root: str | None = None,
                     device=None, progress: bool = True) -> dict:
    """Training samples per second of each method on the same data (validation off).

    Every method trains ``epochs`` epochs on the same split's training items with its own
    default batch size and ``select="last"`` (no validation pass is timed). Closed-form
    methods report their fit time and no throughput.
    """
    feat_kw = {"backbone": "tf_efficientnet_lite0", "input_size": 128, **(features or {})}
    ds = dataset if isinstance(dataset, HashingDataset) else load_dataset(dataset, root=root)
    if ds.kind == "image":
        ds = load_features(ds, progress=progress, **feat_kw)
    split = make_split(ds, protocol, seed=seed)
    rows = []
    for spec in tqdm(list(methods), desc="training throughput", disable=not progress):
        name, mkw = parse_method_spec(spec)
        method = method_from_dataset(name, ds, bits=bits, seed=seed, **mkw)
        trainable = method.trainable
        run = fit(method, ds, split, epochs=epochs, seed=seed, select="last", progress=False,
                  device=device)
        sec = sum(h.get("time", 0.0) for h in run.history) if trainable else run.train_seconds
        rows.append({"method": spec, "bits": bits, "epochs": run.config.get("epochs"),
                     "batch_size": run.config.get("batch_size"), "seconds": sec,
                     "samples_per_s": _samples_per_s(run, len(split.train)) if trainable
                     else None})
    return {"config": {"dataset": ds.name, "protocol": split.protocol, "train": len(split.train),
                       "bits": bits, "epochs": epochs, "seed": seed,
                       "features": (ds.meta or {}).get("features")},
            "results": rows}


def load_results(folder: str | Path) -> list[dict]:
    """Every result JSON in ``folder``."""
    return [json.loads(p.read_text()) for p in sorted(Path(folder).glob("*.json"))]


def _package_repository() -> Path:
    """The folder above the imported ``hashnb`` package: the repository for an editable
    install (``pip install -e .``), ``site-packages`` for an install from git or PyPI."""
    return Path(__file__).resolve().parents[1]


def _results_roots() -> list[Path]:
    """Where ``book/results`` may be, best first: next to the running notebook (the working
    directory is ``book/``, as under Jupyter Book, nbmake and JupyterLab), below the working
    directory (the repository root), then in the repository of the imported package."""
    cwd = Path.cwd().resolve()
    roots = [cwd / "results"] if cwd.name == "book" else []
    roots += [cwd / "book" / "results", _package_repository() / "book" / "results"]
    return list(dict.fromkeys(roots))


def results_dir(*parts: str, must_exist: bool = True) -> Path:
    """The committed results folder ``book/results/<parts...>`` as an absolute path, whatever
    the working directory.

    ``book/results`` is looked for next to the notebook (working directory ``book/``), under
    the working directory (the repository root), then in the repository the ``hashnb``
    package was imported from (a clone installed with ``pip install -e .``); the first one
    that exists is used. ``parts`` name a sub-folder (or a file) below it, e.g.
    ``results_dir("ablations", "crh")``.

    With ``must_exist=True`` (the default) a missing folder raises ``FileNotFoundError``
    saying which folder is missing and how to get it; with ``must_exist=False`` the path is
    returned anyway, for results a chapter can do without.
    """
    roots = _results_roots()
    root = next((r for r in roots if r.is_dir()), None)
    sub = Path(*parts) if parts else Path()
    if root is None:
        if must_exist:
            raise FileNotFoundError(
                f"the committed results folder book/results/{sub.as_posix()} was not found: "
                f"looked in {', '.join(str(r) for r in roots)}. The results come with the "
                f"repository, not with the installed package: clone it (git clone {REPOSITORY}) "
                "and run the chapter from its book/ folder (or pip install -e the clone)")
        return roots[0] / sub
    path = root / sub
    if must_exist and not path.exists():
        raise FileNotFoundError(
            f"{path} is missing (book/results/{sub.as_posix()} in {root.parent.parent}): "
            "create it with the `python -m hashnb.bench` command that the chapter shows next "
            "to these results (its --out folder), or restore the committed copy with "
            f"git checkout -- book/results/{sub.as_posix()}")
    return path


def mean_std_text(values) -> str:
    """``"mean ± std (n)"`` over seeds, 3 decimals; one seed has no spread: ``"mean (1)"``."""
    v = np.asarray(values, dtype=float)
    if len(v) == 1:
        return f"{v.mean():.3f} (1)"
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f} ({len(v)})"


def summarize(results: list[dict], metric: str = "map"):
    """A pandas table: rows (dataset, protocol, method), columns bits, cells 'mean ± std (n)'."""
    import pandas as pd

    rows = [{"dataset": r["dataset"], "protocol": r["protocol"], "method": r["method"],
             "bits": r["bits"], "seed": r["seed"], metric: r["metrics"][metric]} for r in results]
    df = pd.DataFrame(rows)
    if df.empty:
        return df

    return df.pivot_table(index=["dataset", "protocol", "method"], columns="bits",
                          values=metric, aggfunc=mean_std_text)


#: each recent method beside its twin (chapters 4-8): (method, twin, what the twin removes)
TWINS: list[tuple[str, str, str]] = [
    ("mlh", "mlh:branches=center", "the pairwise branch and the mutual term (center branch alone)"),
    ("mlh", "mlh:experts=0", "the mixture of hash experts (MoHE)"),
    ("crh", "crh:reassign=none", "the reassignment (fixed random centers from the same codebook)"),
    ("mah", "adsh", "the extra heads (one code length, ADSH)"),
    ("mah:pool=database", "adsh:pool=database", "the extra heads, on ADSH/MAH's own protocol"),
]


def paired_comparison(results: list[dict], a: str, b: str, *, metric: str = "map",
                      protocol: str | None = None, n_boot: int = 10_000, alpha: float = 0.05,
                      seed: int = 0):
    """``a`` against its twin ``b``, paired by seed (same split, same initial draw), per
    code length: a pandas table with n, the two means ± std, the mean paired difference a - b,
    a paired t-test (``scipy.stats.ttest_rel``, two-sided), a percentile bootstrap CI of the
    mean difference (``n_boot`` resamples of the seeds, seeded) and whether the difference
    is significant at ``alpha`` (t-test). Code lengths where fewer than two seeds have both
    are left out. Raises ``ValueError`` when the two were run on different splits for a seed.
    """
    import pandas as pd
    from scipy import stats

    def cells(method):
        out = {}
        for r in results:
            if r["method"] == method and (protocol is None or r["protocol"] == protocol):
                out[(r["protocol"], r["bits"], r["seed"])] = r
        return out

    ca, cb = cells(a), cells(b)
    rows = []
    for proto, bits in sorted({k[:2] for k in ca} & {k[:2] for k in cb}):
        seeds = sorted(s for (p, bt, s) in ca if (p, bt) == (proto, bits) and (p, bt, s) in cb)
        for s in seeds:
            sa = (ca[(proto, bits, s)].get("request") or {}).get("split")
            sb = (cb[(proto, bits, s)].get("request") or {}).get("split")
            if sa and sb and sa != sb:
                raise ValueError(f"{a} and {b} at {bits} bits, seed {s} were run on different "
                                 f"splits ({sa} vs {sb}); rerun them on the same split")
        if len(seeds) < 2:
            continue
        va = np.array([ca[(proto, bits, s)]["metrics"][metric] for s in seeds], dtype=float)
        vb = np.array([cb[(proto, bits, s)]["metrics"][metric] for s in seeds], dtype=float)
        d = va - vb
        t = stats.ttest_rel(va, vb)
        rng = np.random.default_rng(seed)
        boot = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(1)
        lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
        p = float(t.pvalue) if np.isfinite(t.pvalue) else (0.0 if d.mean() != 0 else 1.0)
        rows.append({"protocol": proto, "bits": int(bits), "n": len(seeds),
                     a: mean_std_text(va), b: mean_std_text(vb),
                     "diff": float(d.mean()), "diff_std": float(d.std(ddof=1)),
                     "t": float(t.statistic), "p": p, "ci_low": float(lo), "ci_high": float(hi),
                     "significant": bool(p < alpha)})
    return pd.DataFrame(rows)


def _means(results: list[dict], metric: str = "map") -> dict:
    """{(protocol, method, bits): (mean, {seed: value})} over seeds."""
    acc: dict = {}
    for r in results:
        acc.setdefault((r["protocol"], r["method"], r["bits"]), {})[r["seed"]] = \
            r["metrics"][metric]
    return {k: (float(np.mean(list(v.values()))), v) for k, v in acc.items()}


def floor_checks(results: list[dict], protocol: str = "cifar10") -> "pd.DataFrame":
    """The floors issue 13 sets on the cpu profile, checked on ``results`` (means over
    seeds): one row per check with what was measured, the target and whether it is met
    (None when a result it needs is missing). Also flags every trained method whose mAP
    falls from 32 to 64 bits by more than seed noise (a paired t-test over the seeds,
    p < 0.05, and a drop)."""
    import pandas as pd
    from scipy import stats

    m = _means(results)
    P, POOL = protocol, "cifar10-1"

    def mean(method, bits, proto=P):
        return m.get((proto, method, bits), (None, None))[0]

    rows = []

    def check(name, measured, target, ok):
        rows.append({"check": name, "measured": measured, "target": target,
                     "met": None if measured is None or target is None else bool(ok)})

    for meth in ("dpsh", "hashnet"):
        v = mean(meth, 64)
        check(f"{meth} 64 bits >= 0.62", v, 0.62, v is not None and v >= 0.62)
    v = mean("mlh", 64)
    check("mlh 64 bits >= 0.615", v, 0.615, v is not None and v >= 0.615)
    for b in (16, 32, 64):
        v, c = mean("mlh", b), mean("mlh:branches=center", b)
        check(f"mlh > its center branch alone, {b} bits", v, c,
              v is not None and c is not None and v > c)
        refs = [x for x in (mean("csq", b), mean("dpsh", b)) if x is not None]
        goal = max(refs) + 0.01 if len(refs) == 2 else None
        check(f"goal: mlh >= max(csq, dpsh) + 0.01, {b} bits", v, goal,
              v is not None and goal is not None and v >= goal)
    for b in (8, 16, 32, 64):
        v, c = mean("crh", b), mean("csq", b)
        check(f"crh >= csq, {b} bits", v, c, v is not None and c is not None and v >= c)
    v, c = mean("mah:pool=database", 8, POOL), mean("csq", 16)
    check("mah 8 bits (cifar10-1, database as pool) >= csq 16 bits (cifar10)", v, c,
          v is not None and c is not None and v >= c)
    trained = sorted({meth for (p, meth, b) in m if p == P and meth not in ("lsh", "itq")})
    for meth in trained:
        a, b = m.get((P, meth, 32)), m.get((P, meth, 64))
        if a is None or b is None:
            continue
        seeds = sorted(set(a[1]) & set(b[1]))  # paired by seed
        drop = b[0] - a[0]
        p_val = (float(stats.ttest_rel([b[1][s] for s in seeds], [a[1][s] for s in seeds]).pvalue)
                 if len(seeds) >= 2 else float("nan"))
        check(f"{meth}: 64 bits not below 32 bits beyond seed noise (paired p = {p_val:.2g})",
              b[0], a[0], not (drop < 0 and p_val < 0.05))
    return pd.DataFrame(rows)


def read_pending(folder) -> list[tuple[str, int]]:
    """The ``(method, bits)`` groups listed in ``folder/PENDING.txt`` (none when absent)."""
    path = Path(folder) / "PENDING.txt"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            m, b = line.split()
            out.append((m, int(b)))
    return out


def pending_cells(results: list[dict], profile: str) -> list[list]:
    """The ``[method, bits]`` groups of :data:`PROFILES` ``[profile]`` that ``results`` do not
    hold for every seed (what ``bench report --pending`` writes to PENDING.txt)."""
    prof = PROFILES[profile]
    have = {(r["method"], r["bits"], r["seed"]) for r in results}
    out = []
    for m in prof["methods"]:
        for b in sorted(set(prof["bits"]) | set(prof.get("extra_bits", {}).get(m, []))):
            if not all((m, b, s) in have for s in prof["seeds"]):
                out.append([m, b])
    return out


def twin_table(results: list[dict], *, metric: str = "map") -> pd.DataFrame:
    """Every :data:`TWINS` pair present in ``results``, one row per (pair, protocol, bits).

    The :func:`paired_comparison` columns, with the two methods' cells renamed ``method``
    and ``twin`` and two more columns: ``pair`` ("a vs b") and ``removes`` (what the twin
    takes away). Empty when no pair has results on both sides."""
    import pandas as pd

    rows = []
    for a, b, what in TWINS:
        tab = paired_comparison(results, a, b, metric=metric)
        if not tab.empty:
            rows.append(tab.rename(columns={a: "method", b: "twin"})
                        .assign(pair=f"{a} vs {b}", removes=what))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def _twin_lines(results: list[dict], metric: str = "map") -> list[str]:
    """Markdown of every twin pair present in ``results`` (for :func:`markdown_report`)."""
    lines = []
    tab = twin_table(results, metric=metric)
    for pair, group in (tab.groupby("pair", sort=False) if len(tab) else []):
        a, b = pair.split(" vs ")
        lines += [f"### {pair} (without {group['removes'].iloc[0]})", "",
                  f"| protocol | bits | n | {a} | {b} | mean diff | 95% bootstrap CI | "
                  "paired t-test p | significant (p < 0.05) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in group.to_dict("records"):
            lines.append(f"| {r['protocol']} | {r['bits']} | {r['n']} | {r['method']} | "
                         f"{r['twin']} | {r['diff']:+.4f} | [{r['ci_low']:+.4f}, "
                         f"{r['ci_high']:+.4f}] | {r['p']:.3g} | "
                         f"{'yes' if r['significant'] else 'no'} |")
        lines.append("")
    return lines


# ---------------------------------------------------------------------------------------
# command line (wired into ``python -m hashnb.bench`` as the ``run`` and ``report`` verbs)
# ---------------------------------------------------------------------------------------
def markdown_report(results: list[dict], metrics=("map", "map@1000", "p@r2")) -> str:
    """The results as Markdown: one table per metric (mean ± std (n) over seeds).

    Deterministic in the JSON content only (no timestamps), so a committed report can be
    checked against the JSON it came from (``tests/test_results.py``).
    """
    if not results:
        raise ValueError("no results to report")
    lines = []
    keys = sorted({(r["dataset"], r["protocol"]) for r in results})
    for ds, proto in keys:
        sub = [r for r in results if (r["dataset"], r["protocol"]) == (ds, proto)]
        feats = sub[0].get("features") or {}
        seeds = sorted({r["seed"] for r in sub})
        sizes = sub[0].get("split_sizes", {})
        lines.append(f"## {ds}, protocol {proto}")
        lines.append("")
        lines.append(f"- split: {sizes.get('query')} query / {sizes.get('train')} train + "
                     f"{sizes.get('val')} val / {sizes.get('database')} database; seeds "
                     f"{', '.join(map(str, seeds))}")
        lines.append(f"- inputs: {json.dumps(feats, sort_keys=True)}")
        lines.append(f"- selection: {sorted({r['selection'] for r in sub})}")
        lines.append(f"- metric convention: {sub[0].get('metric_convention')}")
        lines.append("")
        for metric in metrics:
            table = summarize(sub, metric)
            bits = list(table.columns)
            lines.append(f"### {metric}")
            lines.append("")
            lines.append("| method | " + " | ".join(f"{b} bits" for b in bits) + " |")
            lines.append("|---|" + "---|" * len(bits))
            for (_, _, method), row in table.iterrows():
                cells = [row[b] if isinstance(row[b], str) else "" for b in bits]
                lines.append(f"| {method} | " + " | ".join(cells) + " |")
            lines.append("")
    twins = _twin_lines(results)
    if twins:
        lines += ["## Twins: each recent method against itself without its mechanism", "",
                  "Paired by seed (same split and initial draw); mAP@all. The t-test is "
                  "scipy.stats.ttest_rel, the CI a percentile bootstrap of the mean paired "
                  "difference over seeds (10,000 resamples, seed 0).", ""] + twins
    return "\n".join(lines)
