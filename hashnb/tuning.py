"""Equal tuning for every trained method: one declared search space each, the same budget.

``python -m hashnb.bench tune`` runs, for each method, ``trials`` trials of Optuna's TPE
sampler (seeded) over :data:`SPACES` (the training lr and weight decay, which every method
shares, plus the method's own loss weights and switches). Each trial trains with early
stopping on validation mAP (``patience`` validations without progress, at most
``max_epochs``) and is scored by its best **validation** mAP: validation queries
(``split.val``) against the training items, exactly the loop's model selection. The query
set and the retrieval database are never looked at. A median pruner stops trials that fall
behind the median of earlier ones at the same epoch.

Each method's study is kept in an Optuna journal file under ``cache_dir("tuning")``, keyed by
the data, split, bits, seed, space and budget: an interrupted tuning resumes where it
stopped, and a changed space starts a new study. The chosen configuration is written as
``<out>/<method>.json`` with every trial, the space and provenance; ``bench run --tuned
<out>`` trains with it (and records it in each result's ``request``).

Optuna is imported only when a tuning runs (:func:`tune_method`), so the rest of hashnb (the
GPU profile's run path included) does not need it.

The spaces are ours: ranges around each method's paper or released-code defaults (named
beside each entry in :data:`SPACES`), wide enough to move the default in either direction.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from hashnb.methods.registry import parse_method_spec
from hashnb.runs import data_fingerprint
from hashnb.train import fit, method_from_dataset
from hashnb.utils import cache_dir, provenance

__all__ = ["SPACES", "COMMON", "tune_method", "load_tuned", "suggest"]

#: training settings every method shares (Adam): name -> (kind, low, high[, log]) or
#: ("categorical", choices)
COMMON: dict[str, tuple] = {
    "lr": ("float", 1e-4, 3e-3, True),          # Adam on frozen features; default 1e-3
    "weight_decay": ("categorical", [0.0, 1e-5, 1e-4]),  # OrthoHash/CRH release: 5e-4 / 1e-5
}

#: each method's own loss weights and switches (constructor arguments), around its defaults
SPACES: dict[str, dict[str, tuple]] = {
    "dpsh": {"eta": ("float", 1.0, 100.0, True),          # port's CIFAR demo: 10
             "relax": ("categorical", ["linear", "tanh"])},  # port: linear
    "hashnet": {"alpha": ("float", 0.05, 1.0, True),     # released: 10 / K
                "gamma": ("float", 0.005, 0.05, True)},  # continuation speed; released 0.005
    "csq": {"quant_weight": ("float", 1e-3, 1.0, True)},  # CSQ README: 0.05
    "orthohash": {"margin": ("float", 0.1, 0.5, False),   # code 0.2, README CIFAR 0.3
                  "quant_weight": ("categorical", [0.0, 0.01, 0.1])},  # code: 0
    "crh": {"margin": ("float", 0.1, 0.5, False),         # paper: 0.2
            "quant_weight": ("categorical", [0.01, 0.1, 0.3]),  # paper: 0.1
            "reassign_until": ("int", 1, 30, False),     # paper/release: 20
            "reassign": ("categorical", ["hungarian", "greedy"])},
    "mlh": {"lambda_pair": ("float", 0.1, 4.0, True),     # secondary source: 1 (center: 4)
            "lambda_mutual": ("float", 0.1, 4.0, True),   # secondary source: 1
            "experts": ("categorical", [0, 4]),           # ours: 4 (MoHE) or none
            "stop_grad": ("categorical", [False, True])},  # ours: False
    "adsh": {"gamma": ("float", 20.0, 1000.0, True)},     # paper and code: 200
    "mah": {"gamma": ("float", 20.0, 1000.0, True),       # as ADSH: 200
            "variant": ("categorical", ["cascade", "flat"])},  # paper's best: cascade
}


def suggest(trial, space: dict[str, tuple]) -> dict:
    """Draw one configuration of ``space`` from ``trial``."""
    out = {}
    for name, spec in space.items():
        if spec[0] == "categorical":
            out[name] = trial.suggest_categorical(name, spec[1])
        elif spec[0] == "int":
            out[name] = trial.suggest_int(name, spec[1], spec[2], log=bool(spec[3]))
        elif spec[0] == "float":
            out[name] = trial.suggest_float(name, spec[1], spec[2], log=bool(spec[3]))
        else:
            raise ValueError(f"unknown search-space kind {spec[0]!r} for {name!r}")
    return out


def _study_key(method: str, dataset, split, *, bits, seed, space, max_epochs, patience,
               fixed, defaults) -> str:
    sha = hashlib.sha1()
    for part in ("train", "val"):
        sha.update(np.asarray(getattr(split, part), dtype=np.int64).tobytes())
    key = json.dumps({"method": method, "data": data_fingerprint(dataset), "split": sha.hexdigest(),
                      "bits": bits, "seed": seed, "space": space, "max_epochs": max_epochs,
                      "patience": patience, "fixed": fixed, "defaults": defaults},
                     sort_keys=True, default=str)
    return hashlib.sha1(key.encode()).hexdigest()[:12]


class _Report:
    """Training callback: each validation mAP to the trial; prune when it falls behind."""

    def __init__(self, trial):
        self.trial = trial

    def __call__(self, ctx) -> None:
        import optuna

        rec = ctx.history[-1]
        if "val_map" in rec:
            self.trial.report(rec["val_map"], rec["epoch"])
            if self.trial.should_prune():
                raise optuna.TrialPruned(f"validation mAP {rec['val_map']:.4f} at epoch "
                                         f"{rec['epoch']} is behind the median")


def tune_method(spec: str, dataset, split, *, bits: int = 32, trials: int = 20, seed: int = 0,
                max_epochs: int = 100, patience: int = 10, storage_dir: str | Path | None = None,
                progress: bool = False) -> dict:
    """Tune one method (or variant spec) on ``split``'s validation; returns the record that
    :func:`load_tuned` reads back (chosen configuration, every trial, provenance).

    ``trials`` counts finished trials (completed or pruned); rerunning with a larger number
    extends the same study. The variant spec's own keyword arguments are held fixed.
    """
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna.trial import TrialState

    name, fixed = parse_method_spec(spec)
    if name not in SPACES:
        raise ValueError(f"no search space for {name!r}; declared: {sorted(SPACES)}")
    space = {k: v for k, v in {**COMMON, **SPACES[name]}.items() if k not in fixed}
    # the method's defaults outside the space are part of the study: a changed default
    # (e.g. CRH's codebook construction) starts a new study instead of resuming an old one
    defaults = method_from_dataset(name, dataset, bits=bits, seed=seed, **fixed).hparams()
    key = _study_key(spec, dataset, split, bits=bits, seed=seed, space=space,
                     max_epochs=max_epochs, patience=patience, fixed=fixed, defaults=defaults)
    folder = Path(storage_dir) if storage_dir is not None else cache_dir("tuning")
    folder.mkdir(parents=True, exist_ok=True)
    journal = folder / f"{getattr(dataset, 'name', 'data')}-{name}-{bits}b-s{seed}-{key}.log"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=key, direction="maximize", load_if_exists=True,
        storage=JournalStorage(JournalFileBackend(str(journal))),
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=5))
    for t in study.trials:  # trials of an interrupted process: never finished
        if t.state == TrialState.RUNNING:
            study.tell(t.number, state=TrialState.FAIL)

    def objective(trial) -> float:
        params = suggest(trial, space)
        lr, wd = params.pop("lr", None), params.pop("weight_decay", None)
        method = method_from_dataset(name, dataset, bits=bits, seed=seed, **fixed, **params)
        run = fit(method, dataset, split, epochs=max_epochs, lr=lr, weight_decay=wd, seed=seed,
                  val_every=1, patience=patience, progress=False, callbacks=[_Report(trial)])
        trial.set_user_attr("best_epoch", run.best_epoch)
        trial.set_user_attr("epochs_run", len(run.history))
        trial.set_user_attr("seconds", run.train_seconds)
        return max(h["val_map"] for h in run.history if "val_map" in h)

    t0 = time.perf_counter()
    done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    if trials > done:
        study.optimize(objective, n_trials=trials - done, show_progress_bar=progress,
                       catch=(FloatingPointError,))
    best = study.best_trial
    params = dict(best.params)
    lr = params.pop("lr", None)
    wd = params.pop("weight_decay", None)
    return provenance(
        method=spec, method_name=name, dataset=getattr(dataset, "name", None),
        data=data_fingerprint(dataset), protocol=getattr(split, "protocol", None),
        features=(getattr(dataset, "meta", None) or {}).get("features"), bits=bits, seed=seed,
        split_sizes=split.sizes(), score="best validation mAP@all (val queries vs train)",
        sampler=f"optuna TPESampler(seed={seed})", pruner="MedianPruner(5 startup, 5 warm-up)",
        optuna=optuna.__version__, trials=trials, max_epochs=max_epochs, patience=patience,
        space={k: list(v) for k, v in space.items()}, fixed=fixed, study=key,
        wall_seconds_this_call=time.perf_counter() - t0,
        tuned={"method_kwargs": {**fixed, **params}, "lr": lr, "weight_decay": wd,
               "epochs": max_epochs, "patience": patience, "val_every": 1},
        best={"number": best.number, "val_map": best.value, **best.user_attrs},
        history=[{"number": t.number, "state": t.state.name, "value": t.value,
                  "params": t.params, **t.user_attrs} for t in study.trials])


def load_tuned(folder: str | Path) -> dict[str, dict]:
    """``{method spec: tuned settings}`` from the ``<method>.json`` files of ``bench tune``:
    ``method_kwargs``, ``lr``, ``weight_decay``, ``epochs`` (the most), ``patience`` and
    ``val_every`` (1: validation after every epoch, as in the trials; records written before
    it was stored get 1)."""
    out = {}
    for p in sorted(Path(folder).glob("*.json")):
        rec = json.loads(p.read_text())
        if "tuned" not in rec or "method" not in rec:
            raise ValueError(f"{p} is not a `bench tune` record (no 'tuned' or 'method')")
        out[rec["method"]] = {"val_every": 1, **rec["tuned"]}
    if not out:
        raise FileNotFoundError(f"no tuned configurations (*.json) in {folder}; run "
                                "python -m hashnb.bench tune first")
    return out
