"""Runs: the result of training, and the folder that keeps it.

A run folder holds ``config.json``, ``history.json`` and ``model.pt`` when finished, and
``checkpoint.pt`` while training. :class:`RunFolder` is everything the loop does with it:
compare the config, load a finished run ("load if present, else train"), save and restore
checkpoints, and write the finished run. Every write is atomic (temp file, then rename);
a damaged file is reported once by a ``RuntimeWarning`` naming it and then recomputed.
:func:`run_dir_for` gives the cache folder of a (method, data, configuration), keyed by
the data's content.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from hashnb.batches import codes_for, labels
from hashnb.metrics import evaluate, mean_average_precision
from hashnb.utils import cache_dir, default_device, json_default

__all__ = ["Run", "RunFolder", "TrainState", "run_dir_for", "load_run", "data_fingerprint",
           "canonical"]


def canonical(cfg: dict) -> dict:
    """``cfg`` as JSON would give it back (sorted keys, numpy scalars as numbers)."""
    return json.loads(json.dumps(cfg, default=json_default, sort_keys=True))


def data_fingerprint(dataset) -> str:
    """Hash of a dataset's inputs and labels (its ``content_fingerprint`` where it has one).

    Part of every run's key and config: change one feature value or one label and a cached
    run is not reused.
    """
    fp = getattr(dataset, "content_fingerprint", None)
    if isinstance(fp, str):
        return fp
    h = hashlib.blake2b(digest_size=16)
    for a in (dataset.labels, getattr(dataset, "x", None)):
        if a is not None:
            a = np.ascontiguousarray(np.asarray(a))
            h.update(f"{a.shape}{a.dtype}".encode())
            h.update(memoryview(a).cast("B"))
    return h.hexdigest()[:12]


@dataclass
class Run:
    """A trained (or loaded) method with its data, split, history and config."""
    method: Any
    dataset: Any
    split: Any
    history: list
    config: dict
    run_dir: Path | None = None
    best_epoch: int | None = None
    train_seconds: float = 0.0
    _codes: dict = field(default_factory=dict, repr=False)

    def codes(self, part: str = "database", *, device=None) -> torch.Tensor:
        """Codes of ``split.<part>`` ("query", "database", "train", "val"), cached.

        Learned codes of an asymmetric method are used where it stores them (:func:`codes_for`).
        """
        if part not in self._codes:
            idx = getattr(self.split, part)
            self._codes[part] = codes_for(self.method, self.dataset, idx, device=device)
        return self._codes[part]

    def evaluate(self, *, R: int | None = None, ties: str = "average") -> dict:
        """Retrieval metrics of query vs database codes (:func:`hashnb.metrics.evaluate`)."""
        q, db = self.codes("query"), self.codes("database")
        ql = labels(self.dataset, self.split.query)
        dbl = labels(self.dataset, self.split.database)
        out = evaluate(q, db, ql, dbl, R=R)
        if ties != "average":
            out["map"] = mean_average_precision(q, db, ql, dbl, R=R, ties=ties)
        return out


@dataclass
class TrainState:
    """What a checkpoint restores besides the weights: the history so far, the next epoch
    and the best validation snapshot (score, epoch, weights)."""
    history: list = field(default_factory=list)
    start: int = 0
    best_score: float = -float("inf")
    best_epoch: int | None = None
    best_state: dict | None = None


# --------------------------------------------------------------------------- files
def _tmp_name(path: Path) -> Path:
    # per-process name: two processes finishing the same run never clash on the temp file
    return path.with_suffix(f"{path.suffix}.{os.getpid()}.tmp")


def _atomic_save(obj, path: Path) -> None:
    tmp = _tmp_name(path)
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _atomic_json(obj, path: Path) -> None:
    tmp = _tmp_name(path)
    tmp.write_text(json.dumps(obj, indent=1, default=json_default))
    os.replace(tmp, path)


class _DamagedFile(Exception):
    """A run-folder file that exists but cannot be read."""

    def __init__(self, path: Path, err: BaseException):
        super().__init__(f"{type(err).__name__}: {err}")
        self.path = path


def _read_file(path: Path, reader: Callable):
    try:
        return reader(path)
    except Exception as e:  # torch.load: RuntimeError, EOFError, UnpicklingError; JSON: ValueError
        raise _DamagedFile(path, e) from e


def _warn_corrupt(path: Path, err: BaseException, action: str) -> None:
    warnings.warn(f"{path} is unreadable ({type(err).__name__}: {err}); hashnb {action}",
                  RuntimeWarning, stacklevel=4)


def _torch_load(device) -> Callable:
    return lambda p: torch.load(p, map_location=device, weights_only=False)


def _json_load(p: Path):
    return json.loads(p.read_text())


def load_run(run_dir, method, dataset, split, *, device=None) -> Run:
    """Load a finished run folder into ``method`` (which must be built with the same config)."""
    run_dir = Path(run_dir)
    device = default_device(device)
    # read every file before touching the method: a damaged one leaves it as it was
    state = _read_file(run_dir / "model.pt", _torch_load("cpu"))
    h = _read_file(run_dir / "history.json", _json_load)
    config = _read_file(run_dir / "config.json", _json_load)
    method.load_state_dict(state["model"])
    if state.get("method_extra") is not None:
        method.load_extra_state(state["method_extra"])
    method.to(device).eval()
    return Run(method, dataset, split, h["history"], config, run_dir, h["best_epoch"],
               h.get("train_seconds", 0.0))


class RunFolder:
    """The loop's view of one run folder (``main``: this process writes; DDP rank 0)."""

    def __init__(self, path, config: dict, *, main: bool = True):
        self.path, self.config, self.main = Path(path), config, main
        if main:
            self.path.mkdir(parents=True, exist_ok=True)
        self.checkpoint = self.path / "checkpoint.pt"

    def _guarded(self, method, load: Callable, files: tuple, action: str):
        """``load()``, or None after a warning when a file is damaged: the damaged ``files``
        are deleted and the method's weights put back, so what follows is the same as a run
        that never saw them."""
        before = {k: v.detach().clone() for k, v in method.state_dict().items()}
        try:
            return load()
        except Exception as e:  # a damaged file, or a state that does not fit the method
            _warn_corrupt(e.path if isinstance(e, _DamagedFile) else self.path / files[0], e,
                          action)
        method.load_state_dict(before)
        for name in files:
            (self.path / name).unlink(missing_ok=True)
        return None

    def check_config(self) -> None:
        """Refuse a folder that holds another configuration's run; a damaged config.json is
        reported and the folder's files dropped (nothing in it can be matched)."""
        path = self.path / "config.json"
        if not path.exists():
            return
        try:
            old = _json_load(path)
            if not isinstance(old, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError, UnicodeDecodeError) as e:
            _warn_corrupt(path, e, "trains the run again")
            for name in ("config.json", "history.json", "model.pt", "checkpoint.pt"):
                (self.path / name).unlink(missing_ok=True)
            return
        # a key the folder lacks counts as None: a setting added later with a None default
        # (e.g. patience) matches the runs written before it
        diff = sorted(k for k, v in self.config.items() if old.get(k) != v)
        if diff:
            raise ValueError(f"{self.path} holds a run with a different config (differs in "
                             f"{diff}); use another run_dir or delete it")

    def load_finished(self, method, dataset, split, device) -> Run | None:
        """The finished run loaded into ``method``, or None (not there, or damaged)."""
        self.check_config()
        if not (self.path / "model.pt").exists():
            return None
        return self._guarded(method, lambda: load_run(self.path, method, dataset, split,
                                                      device=device),
                             ("model.pt", "history.json"), "trains it again")

    def restore(self, method, opt, scaler, sched, device) -> TrainState | None:
        """Resume state from ``checkpoint.pt`` (weights, optimizer, RNG, history), or None."""
        if not self.checkpoint.exists():
            return None

        def restore():
            ck = _read_file(self.checkpoint, _torch_load(device))
            method.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            scaler.load_state_dict(ck["scaler"])
            if sched is not None and ck.get("scheduler"):
                sched.load_state_dict(ck["scheduler"])
            if ck.get("method_extra") is not None:
                method.load_extra_state(ck["method_extra"])
            _set_rng_state(ck["rng"])
            return TrainState(ck["history"], ck["epoch"] + 1, ck["best_score"],
                              ck["best_epoch"], ck["best_state"])

        return self._guarded(method, restore, ("checkpoint.pt",), "starts the run over")

    def write_config(self) -> None:
        if self.main:
            _atomic_json(self.config, self.path / "config.json")

    def save_checkpoint(self, method, opt, scaler, sched, epoch: int, st: TrainState) -> None:
        if self.main:
            _atomic_save({"model": method.state_dict(), "optimizer": opt.state_dict(),
                          "scaler": scaler.state_dict(),
                          "scheduler": sched.state_dict() if sched else None,
                          "epoch": epoch, "history": st.history, "best_score": st.best_score,
                          "best_epoch": st.best_epoch, "best_state": st.best_state,
                          "method_extra": method.extra_state(), "rng": _rng_state()},
                         self.checkpoint)

    def finish(self, method, history, best_epoch, seconds) -> None:
        """Write the finished run (config, history, weights) and drop the checkpoint."""
        if not self.main:
            return
        _atomic_json(self.config, self.path / "config.json")
        _atomic_json({"history": history, "best_epoch": best_epoch, "train_seconds": seconds},
                     self.path / "history.json")
        _atomic_save({"model": method.state_dict(), "method_extra": method.extra_state()},
                     self.path / "model.pt")
        self.checkpoint.unlink(missing_ok=True)


def _rng_state():
    st = {"torch": torch.get_rng_state(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st):
    torch.set_rng_state(st["torch"])
    np.random.set_state(st["numpy"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def run_dir_for(name: str, dataset, split, *, bits: int, seed: int, extra: dict | None = None,
                root: str | Path | None = None) -> Path:
    """Deterministic run folder under ``cache_dir('runs')`` for a (method, data, config)."""
    key = canonical({"name": name, "bits": bits, "seed": seed,
                     "dataset": getattr(dataset, "name", None), "n": len(dataset.labels),
                     "data": data_fingerprint(dataset),
                     "features": (getattr(dataset, "meta", None) or {}).get("features"),
                     "protocol": getattr(split, "protocol", None),
                     "split_seed": getattr(split, "seed", None),
                     "train": hashlib.sha1(np.asarray(split.train).tobytes()).hexdigest(),
                     **(extra or {})})
    h = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    base = Path(root) if root is not None else cache_dir("runs")
    return base / f"{getattr(dataset, 'name', 'data')}-{name}-{bits}b-s{seed}-{h}"
