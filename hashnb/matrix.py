"""The benchmark matrix: methods x bits x seeds through the one training loop.

Each cell writes one JSON file (``<out>/<dataset>-<protocol>-<method>-<bits>b-s<seed>.json``)
with the metrics and their provenance: commit, hardware, package versions, dataset,
protocol, features (backbone, input size), seed, epochs, selection rule and wall times.
A cell whose JSON exists is skipped, so an interrupted matrix resumes where it stopped.
``python -m hashnb.bench run ...`` is the command line for :func:`run_matrix`.

A method may be given as a *variant spec* ``name:key=value,key=value`` (for ablations),
e.g. ``crh:reassign=none`` or ``mlh:experts=4,top_k=2``: the keyword arguments go to the
method's constructor, the whole spec is the result's ``method`` label (and, with ``:``,
``=`` and ``,`` made file-safe, part of its file name), and ``method_name`` /
``method_kwargs`` record the parts. Values are Python literals (``1``, ``0.5``, ``True``,
``'greedy'``); a bare word that is not a literal is taken as a string.
"""
from __future__ import annotations

import ast
import json
import os
import re
from pathlib import Path
from typing import Iterable

import numpy as np

from hashnb.utils import Timer, provenance

__all__ = ["run_matrix", "load_results", "summarize", "parse_method_spec"]


def parse_method_spec(spec: str) -> tuple[str, dict]:
    """``"crh:reassign=greedy,heads=1"`` -> ``("crh", {"reassign": "greedy", "heads": 1})``."""
    name, _, rest = str(spec).partition(":")
    name = name.strip()
    if not name:
        raise ValueError(f"method spec {spec!r} has no method name; write name:key=value,...")
    kwargs: dict = {}
    for item in filter(None, (t.strip() for t in rest.split(","))):
        key, eq, val = item.partition("=")
        if not eq or not key.strip().isidentifier():
            raise ValueError(f"method spec {spec!r}: {item!r} is not key=value; "
                             "write e.g. crh:reassign=greedy,heads=1")
        try:
            kwargs[key.strip()] = ast.literal_eval(val.strip())
        except (ValueError, SyntaxError):
            kwargs[key.strip()] = val.strip()
    return name, kwargs


def _result_path(out: Path, dataset: str, protocol: str, method: str, bits: int, seed: int) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.+-]+", "_", method.replace(":", "+").replace("=", "-"))
    return out / f"{dataset}-{protocol}-{safe}-{bits}b-s{seed}.json"


def run_matrix(methods: Iterable[str], bits: Iterable[int], seeds: Iterable[int], *,
               dataset: str = "digits", protocol: str | None = None, out: str | Path,
               epochs: dict | int | None = None, features: dict | None = None,
               progress: bool = True, root: str | None = None) -> list[dict]:
    """Run every (method, bits, seed) not already in ``out`` and return all their results.

    Parameters
    ----------
    dataset : "digits" (vectors) or an image dataset name, which is turned into frozen
        features with ``features`` (default tf_efficientnet_lite0 at 128 px).
    epochs : one number for every method, a {method: epochs} dict, or None for each
        method's default.
    """
    from tqdm.auto import tqdm

    from hashnb.data import load_dataset, load_features, make_split
    from hashnb.train import run_method

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    feat_kw = {"backbone": "tf_efficientnet_lite0", "input_size": 128, **(features or {})}
    with Timer() as tf:
        ds = load_dataset(dataset, root=root)
        if ds.kind == "image":
            ds = load_features(ds, progress=progress, **feat_kw)
    feats = (ds.meta or {}).get("features")
    methods = list(methods)
    specs = {m: parse_method_spec(m) for m in methods}  # fail on a bad spec before any work
    cells = [(m, int(b), int(s)) for m in methods for b in bits for s in seeds]
    results = []
    bar = tqdm(cells, desc="benchmark matrix", disable=not progress)
    for method, b, seed in bar:
        split = make_split(ds, protocol, seed=seed)
        path = _result_path(out, ds.name, split.protocol, method, b, seed)
        bar.set_postfix_str(path.stem)
        if path.exists():
            results.append(json.loads(path.read_text()))
            continue
        name, mkw = specs[method]
        ep = (epochs.get(method, epochs.get(name)) if isinstance(epochs, dict) else epochs)
        with Timer() as tt:
            run = run_method(name, ds, split, bits=b, seed=seed, epochs=ep, progress=False,
                             method_kwargs=mkw)
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
            train_samples_per_s=(len(split.train) * (run.config.get("epochs") or 0)
                                 / run.train_seconds if run.train_seconds and run.best_epoch
                                 else None),
            metrics=metrics, metric_convention="tie-aware (ties grouped), HashNet normalisation, "
                                               "R = all database items for 'map'")
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(rec, indent=1))
        os.replace(tmp, path)
        results.append(rec)
    return results


def load_results(folder: str | Path) -> list[dict]:
    """Every result JSON in ``folder``."""
    return [json.loads(p.read_text()) for p in sorted(Path(folder).glob("*.json"))]


def summarize(results: list[dict], metric: str = "map"):
    """A pandas table: rows (dataset, protocol, method), columns bits, cells 'mean ± std (n)'."""
    import pandas as pd

    rows = [{"dataset": r["dataset"], "protocol": r["protocol"], "method": r["method"],
             "bits": r["bits"], "seed": r["seed"], metric: r["metrics"][metric]} for r in results]
    df = pd.DataFrame(rows)
    if df.empty:
        return df

    def fmt(v):
        v = np.asarray(v, dtype=float)
        sd = v.std(ddof=1) if len(v) > 1 else 0.0
        return f"{v.mean():.3f} ± {sd:.3f} ({len(v)})"

    return df.pivot_table(index=["dataset", "protocol", "method"], columns="bits",
                          values=metric, aggfunc=fmt)


# ---------------------------------------------------------------------------------------
# command line (wired into ``python -m hashnb.bench`` as the ``run`` and ``report`` verbs)
# ---------------------------------------------------------------------------------------
def add_subcommands(sub) -> None:
    """Add ``run`` and ``report`` to an ``argparse`` subparsers object."""
    p = sub.add_parser("run", help="run the methods x bits x seeds matrix (resumable)")
    p.add_argument("--methods", nargs="+", required=True,
                   help="method names or variant specs name:key=value,... (e.g. crh:reassign=none)")
    p.add_argument("--bits", nargs="+", type=int, required=True)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--dataset", default="digits")
    p.add_argument("--protocol", default=None, help="default: the dataset's own")
    p.add_argument("--epochs", type=int, default=None, help="default: each method's")
    p.add_argument("--backbone", default="tf_efficientnet_lite0")
    p.add_argument("--input-size", type=int, default=128)
    p.add_argument("--root", default=None, help="data folder (default: HASHNB_DATA)")
    p.add_argument("--out", required=True, help="folder for one JSON per result")
    p.set_defaults(func=_cli_run)
    r = sub.add_parser("report", help="table (mean ± std over seeds) from result JSONs")
    r.add_argument("folder")
    r.add_argument("--metric", default="map")
    r.set_defaults(func=_cli_report)


def _cli_run(args) -> None:
    from hashnb.utils import Timer

    with Timer() as t:
        res = run_matrix(args.methods, args.bits, args.seeds, dataset=args.dataset,
                         protocol=args.protocol, out=args.out, epochs=args.epochs,
                         features={"backbone": args.backbone, "input_size": args.input_size},
                         root=args.root)
    print(summarize(res).to_string())
    print(f"\n{len(res)} results in {args.out}; wall time {t.seconds:.1f} s")


def _cli_report(args) -> None:
    res = load_results(args.folder)
    if not res:
        raise SystemExit(f"no result JSON in {args.folder}")
    print(summarize(res, args.metric).to_string())
    r0 = res[0]
    print(f"\nmetric: {args.metric} ({r0.get('metric_convention')}); features: "
          f"{r0.get('features')}; hardware: {r0.get('cpu')} / {r0.get('gpu')}; "
          f"commit {r0.get('commit')}")
