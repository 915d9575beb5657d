"""Studies that read trained runs: CRH's center semantics, MLH's branches.

Nothing below imports this module: it sits above the loop (it trains or loads runs through
:func:`hashnb.train.run_method`) and beside the benchmark matrix. The command-line verb
``python -m hashnb.bench semantics`` calls :func:`crh_semantics_study`.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.stats import pearsonr, spearmanr

from hashnb.data import load_dataset, load_features, make_split
from hashnb.methods.mlh import MLH
from hashnb.methods.registry import parse_method_spec
from hashnb.metrics import evaluate, mean_average_precision
from hashnb.train import encode_dataset, run_method
from hashnb.utils import provenance

__all__ = ["center_semantics", "crh_semantics_study", "branch_codes", "evaluate_branches",
           "BranchValidation"]


# ----------------------------------------------------------------------- CRH
def center_semantics(centers: np.ndarray, features: np.ndarray, labels: np.ndarray,
                     class_names: list[str] | None = None) -> dict:
    """How well center similarity follows class similarity in feature space.

    Parameters
    ----------
    centers : (C, K) +-1 class centers. features : (n, D) inputs (e.g. frozen features).
    labels : (n, C) multi-hot. class_names : optional names for the pair table.

    Returns
    -------
    dict with ``center_sim`` (C, C) = 1 - 2 d_H / K, ``feature_sim`` (C, C) cosine of the
    class-mean features (features centred by their overall mean first), ``pearson`` and
    ``spearman`` correlations over the C(C-1)/2 class pairs, and ``hamming`` (C, C).
    """
    centers = np.asarray(centers, dtype=np.float64)
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if x.shape[0] != y.shape[0] or y.shape[1] != centers.shape[0]:
        raise ValueError(f"features (n, D), labels (n, C) and centers (C, K) must agree; got "
                         f"{x.shape}, {y.shape}, {centers.shape}")
    x = x - x.mean(0)
    means = (y.T @ x) / np.maximum(y.sum(0), 1)[:, None]
    means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    fsim = means @ means.T
    K = centers.shape[1]
    csim = centers @ centers.T / K
    iu = np.triu_indices(len(centers), 1)
    out = {"center_sim": csim.tolist(), "feature_sim": fsim.tolist(),
           "hamming": ((K - centers @ centers.T) / 2).round().astype(int).tolist(),
           "pearson": float(pearsonr(csim[iu], fsim[iu])[0]),
           "spearman": float(spearmanr(csim[iu], fsim[iu])[0])}
    if class_names is not None:
        out["class_names"] = list(class_names)
    return out


def crh_semantics_study(specs, *, dataset: str = "cifar10", bits=(16, 32, 64),
                        seeds=(0, 1, 2), epochs: int | None = None) -> dict:
    """Center vs feature similarity (:func:`center_semantics`) of trained CRH runs.

    ``specs`` are method specs (``crh:reassign=none,heads=1``, ...); each (spec, bits, seed)
    run is loaded from the run cache when the benchmark already trained it, trained
    otherwise. Returns one JSON-able dict with provenance and a row per run.
    """
    ds = load_dataset(dataset)
    if ds.kind == "image":
        ds = load_features(ds, backbone="tf_efficientnet_lite0", input_size=128)
    names = list(ds.classes)
    rows = []
    for spec in specs:
        name, mkw = parse_method_spec(spec)
        for b in bits:
            for seed in seeds:
                split = make_split(ds, None, seed=seed)
                run = run_method(name, ds, split, bits=b, seed=seed, epochs=epochs,
                                 progress=False, method_kwargs=mkw)
                tr = np.asarray(split.train)
                sem = center_semantics(run.method.centers.cpu().numpy(), ds.x[tr],
                                       ds.labels[tr], names)
                rows.append({"method": spec, "bits": b, "seed": seed,
                             "protocol": split.protocol, "epochs": epochs,
                             "best_epoch": run.best_epoch,
                             "centers_changed": [h.get("centers_changed", 0)
                                                 for h in run.history],
                             **sem})
    return provenance(dataset=ds.name, features=(ds.meta or {}).get("features"), results=rows)


# ----------------------------------------------------------------------- MLH
def _labels(dataset, idx) -> torch.Tensor:
    return torch.as_tensor(np.asarray(dataset.labels[idx]), dtype=torch.float32)


def branch_codes(run, part: str, branch: str) -> torch.Tensor:
    """Codes of ``split.<part>`` from one branch of an MLH run (forward passes)."""
    return encode_dataset(run.method, run.dataset, getattr(run.split, part), branch=branch)


def evaluate_branches(run, *, R: int | None = None) -> dict:
    """Query-vs-database metrics of each trained branch of an MLH :class:`~hashnb.train.Run`.

    Returns ``{"center": metrics, "pairwise": metrics}`` (active branches only), both from
    the weights the run selected (best validation mAP of its ``encode_branch``).
    """
    m = run.method
    if not isinstance(m, MLH):
        raise ValueError(f"evaluate_branches needs an MLH run, got {type(m).__name__}")
    ql, dbl = _labels(run.dataset, run.split.query), _labels(run.dataset, run.split.database)
    return {b: evaluate(branch_codes(run, "query", b), branch_codes(run, "database", b), ql, dbl,
                        R=R)
            for b in m.active}


class BranchValidation:
    """Training callback: validation mAP of *each* active branch every ``every`` epochs.

    Adds ``val_center`` / ``val_pair`` to the epoch's history record (validation queries
    against the training items, like the loop's own ``val_map``), so both branches'
    curves can be drawn together. Selection is untouched: the loop still selects on
    ``encode_branch``. Use as ``fit(..., callbacks=[BranchValidation(5)])``.
    """

    def __init__(self, every: int = 5):
        if int(every) < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.every = int(every)

    def __call__(self, ctx) -> None:
        m = ctx.method
        last = ctx.epoch + 1 == ctx.epochs
        if not isinstance(m, MLH) or ((ctx.epoch + 1) % self.every and not last):
            return
        if ctx.split.val is None or len(ctx.split.val) == 0:
            return
        xv = torch.as_tensor(np.asarray(ctx.dataset.x[ctx.split.val]), dtype=torch.float32)
        xt = torch.as_tensor(np.asarray(ctx.dataset.x[ctx.split.train]), dtype=torch.float32)
        yv = _labels(ctx.dataset, ctx.split.val)
        for b in m.active:
            q = m.encode(xv, branch=b, device=ctx.device)
            db = m.encode(xt, branch=b, device=ctx.device)
            key = "val_pair" if b == "pairwise" else f"val_{b}"
            ctx.history[-1][key] = float(mean_average_precision(q, db, yv, ctx.train_y))
