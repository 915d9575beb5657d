"""The paper profile: every trained method fine-tuned end to end on one GPU (issue 16).

The book's ``cpu`` profile trains small heads on frozen 128-px features; this profile trains
each method the way its paper does: the whole ImageNet EfficientNet-Lite0 (offline weights,
:mod:`hashnb.models.backbones`) end to end at 224 px, on the protocol the paper uses.

=====================  ==============  ==================  ==========================
methods                protocol        bits                training
=====================  ==============  ==================  ==========================
DPSH, HashNet, CSQ,    ``cifar10``     16, 32, 64          20 epochs over the 4,500
OrthoHash, CRH, CRH                                        training images, random
``reassign=none``,                                         crop + flip
MLH, MLH ``experts=0``
(no MoHE), MLH
``branches=center``
ADSH ``pool=database`` ``cifar10-1``   8, 16, 32, 64       15 outer iterations of
MAH (cascade)          ``cifar10-1``   4, 6, 8, 12         |Omega| = 2,000 x 3 passes
``pool=database``                                          (released code: no augmentation)
=====================  ==============  ==================  ==========================

Seeds 0, 1, 2; each method's own learning rate and batch size (as in the ``cpu`` profile), the
backbone at 0.1 x that rate; the best validation epoch (val queries against train), never
the query set. ADSH and MAH learn the codes of their training pool, the whole database minus
the validation items (their papers' protocol, as ``book/results/protocols/cifar10-1-dbpool``).

**Speed.** :class:`DeviceImages` keeps the 60,000 images on the device as uint8
``(n, 3, 32, 32)`` (184 MB) and hands the loop batches by index: no CPU data loader. The
backbone is wrapped in :class:`PaperBackbone`, whose first step (:class:`GPUPreprocess`)
turns a uint8 (or [0, 1] float) batch into the network's input on the device in one
``grid_sample``: resize 32 -> 256 and crop 224 (random crop and horizontal flip while
training, the centre crop in eval mode: DeepHash-pytorch's CIFAR transform), normalise,
channels_last. Training runs under bf16 autocast (:func:`hashnb.train.fit` ``amp=True``),
evaluation encodes 1,024 images per batch under autocast, ``torch.compile`` is optional.
Every result JSON records the images/s of training and of encoding and the device's name.

**Budget.** ``python -m hashnb.bench paper --budget 8`` runs the decisive cells first
(:data:`DECISIVE`: each recent method beside its baseline and its ablation twin, seed 0, 64
bits; MAH and ADSH at 8 bits), then the rest of the profile, and starts a cell only when the
time spent so far plus the cell's estimated cost (its training and encoding images over the
throughput measured in earlier cells on the same device, plus their fixed cost) fits the
budget. A cell whose JSON exists with the same configuration is skipped, so repeated
invocations complete the profile.

**The loop's data hook.** :mod:`hashnb.batches` (the loop's batch sources) asks a dataset
that has ``batches(...)`` for its batches instead of building a ``DataLoader``; a
:class:`DeviceImages` is such a dataset. ``loader="items"`` uses the loop's own per-item
``DataLoader`` instead (the same preprocessing, applied on the device after the batch is
collated on the CPU).

The run path imports torch, torchvision (via timm), timm, numpy, scipy, scikit-learn and
Pillow only: no FAISS, UMAP or Jupyter (``tests/test_paper.py`` checks it).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hashnb.data import load_dataset, load_packed_cifar10, make_split
from hashnb.data.datasets import find_cifar10
from hashnb.data.packed import find_packed
from hashnb.matrix import load_results, mean_std_text, result_path, results_dir
from hashnb.methods.registry import check_method_args, constructor_parameters, parse_method_spec
from hashnb.metrics import evaluate, mean_average_precision
from hashnb.models import backbone_preprocess, create_backbone
from hashnb.train import encode_dataset, fit, method_from_dataset
from hashnb.utils import default_device, json_default, provenance

__all__ = ["SYMMETRIC", "ASYMMETRIC", "PAPER_PROFILE", "DECISIVE", "PUBLISHED", "Cell",
           "paper_cells", "load_paper_dataset", "DeviceImages", "GPUPreprocess",
           "PaperBackbone", "Rates", "cell_workload", "estimate_seconds",
           "run_cell", "run_paper", "paper_table", "process_age_s"]

#: symmetric methods with their ablation twins, on protocol ``cifar10``
SYMMETRIC = ["dpsh", "hashnet", "csq", "orthohash", "crh", "crh:reassign=none", "mlh",
             "mlh:experts=0", "mlh:branches=center"]
#: asymmetric methods, trained on the database (their protocol ``cifar10-1``)
ASYMMETRIC = ["adsh:pool=database", "mah:pool=database"]

PAPER_PROFILE: dict = dict(
    dataset="cifar10",
    backbone="tf_efficientnet_lite0", pretrained=True, input_size=224, resize=256,
    backbone_lr_mult=0.1, amp=True, channels_last=True, compile=False,
    eval_batch_size=1024, seeds=[0, 1, 2],
    groups=[
        dict(methods=SYMMETRIC, protocol="cifar10", bits=[16, 32, 64], epochs=20,
             augment=True),
        dict(methods=["adsh:pool=database"], protocol="cifar10-1", bits=[8, 16, 32, 64],
             epochs=15, augment=False),
        dict(methods=["mah:pool=database"], protocol="cifar10-1", bits=[4, 6, 8, 12],
             epochs=15, augment=False),
    ],
    description="end-to-end fine-tuning of ImageNet EfficientNet-Lite0 at 224 px (32 -> 256 "
                "resize, 224 crop), bf16 autocast, images resident on the GPU, best "
                "validation epoch; papers' protocols (cifar10; cifar10-1 with the database "
                "as ADSH/MAH's training pool)")

#: The decisive subset, in the order a budgeted run starts it: (method, bits, role).
DECISIVE: list[tuple[str, int, str]] = [
    ("crh", 64, "recent"), ("crh:reassign=none", 64, "twin"), ("orthohash", 64, "baseline"),
    ("mlh", 64, "recent"), ("mlh:branches=center", 64, "twin"), ("csq", 64, "baseline"),
    ("mah:pool=database", 8, "recent"), ("adsh:pool=database", 8, "baseline"),
    ("mlh:experts=0", 64, "twin"), ("dpsh", 64, "baseline"), ("hashnet", 64, "baseline"),
    ("adsh:pool=database", 64, "baseline"),
]

_DECISIVE_SEED = 0
_METRIC_CONVENTION = ("tie-aware (ties grouped), HashNet normalisation, R = all database items "
                      "for 'map'")


# ---------------------------------------------------------------------------------- cells
@dataclass(frozen=True)
class Cell:
    """One (method, bits, seed) result of the profile and how it is trained."""
    method: str
    bits: int
    seed: int
    protocol: str
    epochs: int
    augment: bool
    role: str = "profile"
    split_kwargs: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def label(self) -> str:
        return f"{self.method} {self.bits}b s{self.seed} ({self.protocol})"


def paper_cells(profile: dict | None = None, *, seeds: Iterable[int] | None = None,
                methods: Iterable[str] | None = None, bits: Iterable[int] | None = None,
                epochs: int | None = None, decisive_only: bool = False) -> list[Cell]:
    """Every cell of ``profile`` (default :data:`PAPER_PROFILE`), the decisive ones first.

    Order: :data:`DECISIVE` (seed 0), then the remaining cells of seed 0 (64 bits first,
    then the longest codes down), then the other seeds in the same order. ``methods``,
    ``bits``, ``seeds`` restrict the profile; ``epochs`` overrides every group's.
    """
    prof = PAPER_PROFILE if profile is None else profile
    seeds = list(prof.get("seeds", [0]) if seeds is None else seeds)
    keep_m = None if methods is None else set(methods)
    keep_b = None if bits is None else {int(b) for b in bits}
    cells: dict[tuple, Cell] = {}
    for g in prof["groups"]:
        for m in g["methods"]:
            for b in g["bits"]:
                for s in seeds:
                    if (keep_m is not None and m not in keep_m) or \
                            (keep_b is not None and int(b) not in keep_b):
                        continue
                    cells[(m, int(b), int(s))] = Cell(
                        method=m, bits=int(b), seed=int(s), protocol=g["protocol"],
                        epochs=int(epochs if epochs is not None else g["epochs"]),
                        augment=bool(g.get("augment", True)),
                        split_kwargs=dict(g.get("split_kwargs") or {}))
    roles = {(m, b): r for m, b, r in DECISIVE}
    first = []
    for m, b, r in DECISIVE:
        c = cells.get((m, b, _DECISIVE_SEED))
        if c is not None:
            first.append(Cell(**{**asdict(c), "role": r, "split_kwargs": c.split_kwargs}))
    if decisive_only:
        return first
    taken = {(c.method, c.bits, c.seed) for c in first}
    order = {m: i for i, m in enumerate(dict.fromkeys(m for g in prof["groups"]
                                                      for m in g["methods"]))}
    rest = sorted((c for k, c in cells.items() if k not in taken),
                  key=lambda c: (c.seed != _DECISIVE_SEED, c.seed, c.bits != 64, -c.bits,
                                 order[c.method]))
    rest = [Cell(**{**asdict(c), "role": roles.get((c.method, c.bits), "profile"),
                    "split_kwargs": c.split_kwargs}) for c in rest]
    return first + rest


# ----------------------------------------------------------------------------------- data
def load_paper_dataset(root=None, *, threads: int | None = None):
    """CIFAR-10 for the profile: a packed file (``pack-cifar10``) at ``root`` or
    ``$HASHNB_DATA`` (the file or its folder), else :func:`hashnb.data.load_dataset`
    (``cifar10.npz`` or torchvision's batches; never downloaded here)."""
    where = root if root is not None else os.environ.get("HASHNB_DATA")
    if where:
        found = find_cifar10(Path(where))  # a folder with the original copy: that one
        packed = find_packed(where) if found is None or found[0] == "packed" or \
            Path(where).is_file() else None
        if packed is not None:
            return load_packed_cifar10(packed, threads=threads)
    return load_dataset("cifar10", root=root, download=False)


class DeviceImages:
    """A :class:`~hashnb.data.HashingDataset` with its images resident on ``device``.

    ``x`` (uint8 ``(n, 3, H, W)``) and the float labels live on the device; the
    :class:`~hashnb.data.HashingDataset` attributes the loop and the methods read (``name``,
    ``labels`` as numpy, ``kind``, ``meta``, ``classes``...) come from ``dataset``.
    :meth:`batches` is the batch source: ``(x uint8 on device, y float on device, dataset
    indices int64 on CPU)`` per batch, the triple the loop's image loader yields.
    """

    def __init__(self, dataset, device=None):
        if getattr(dataset, "kind", None) != "image" or getattr(dataset, "x", None) is None:
            raise ValueError("DeviceImages needs an in-memory image dataset (x uint8 (n, H, W, 3))")
        self.base = dataset
        self.device = default_device(device)
        x = torch.from_numpy(np.ascontiguousarray(dataset.x))
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[-1] != 3:
            raise ValueError(f"expected uint8 (n, H, W, 3) images, got {x.dtype} {tuple(x.shape)}")
        self.images = x.to(self.device).permute(0, 3, 1, 2).contiguous()
        self.targets = torch.as_tensor(np.asarray(dataset.labels), dtype=torch.float32,
                                       device=self.device)

    def __getattr__(self, name):  # name, labels, classes, kind, meta, x, content_fingerprint...
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)

    def __len__(self) -> int:
        return len(self.base)

    def batches(self, idx, *, batch_size: int, shuffle: bool = False, seed: int = 0,
                epoch: int = 0, rank: int = 0, world: int = 1, **_):
        """Batches of dataset indices ``idx`` in order (or shuffled, seeded by seed and epoch)."""
        if world > 1:
            raise NotImplementedError("DeviceImages feeds one process; run the profile without "
                                      "torchrun")
        idx = torch.as_tensor(np.asarray(idx), dtype=torch.long)
        if shuffle:
            g = torch.Generator().manual_seed(int(seed) * 100003 + int(epoch))
            idx = idx[torch.randperm(len(idx), generator=g)]
        for b in idx.split(int(batch_size)):
            bd = b.to(self.device, non_blocking=True)
            yield self.images[bd], self.targets[bd], b


# ------------------------------------------------------------------------- preprocessing
class GPUPreprocess(nn.Module):
    """uint8 / [0, 1] float ``(n, 3, h, w)`` -> normalised ``(n, 3, size, size)``, batched,
    on the input's device.

    One ``grid_sample`` (bilinear) does resize to ``resize`` and crop ``size``: in training
    mode with ``augment`` a random crop and a horizontal flip (probability 0.5) per image, in
    eval mode (or without ``augment``) the centre crop, so codes never depend on the rest of
    the batch. ``resize == size`` with a centre crop returns the pixels unchanged when
    ``h == size``. Output channels_last when ``channels_last``.
    """

    def __init__(self, size: int, *, resize: int | None = None, mean=(0.5, 0.5, 0.5),
                 std=(0.5, 0.5, 0.5), augment: bool = True, channels_last: bool = True):
        super().__init__()
        self.size = int(size)
        self.resize = int(resize or size)
        if self.resize < self.size:
            raise ValueError(f"resize ({self.resize}) must be >= size ({self.size})")
        self.augment = bool(augment)
        self.channels_last = bool(channels_last)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)

    def extra_repr(self) -> str:
        return (f"size={self.size}, resize={self.resize}, augment={self.augment}, "
                f"channels_last={self.channels_last}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        n = x.shape[0]
        frac = self.size / self.resize  # the crop's share of the resized image
        theta = torch.zeros(n, 2, 3, device=x.device)
        theta[:, 0, 0] = frac
        theta[:, 1, 1] = frac
        if self.training and self.augment and n:
            shift = (torch.rand(n, 2, device=x.device) * 2 - 1) * (1 - frac)
            theta[:, :, 2] = shift
            flip = torch.rand(n, device=x.device) < 0.5
            theta[:, 0, 0] = torch.where(flip, -frac, frac)
        same = (x.shape[-1] == self.size and x.shape[-2] == self.size
                and not (self.training and self.augment) and self.resize == self.size)
        if not same:
            grid = F.affine_grid(theta, [n, 3, self.size, self.size], align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border",
                              align_corners=False)
        x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


class PaperBackbone(nn.Module):
    """``net(preprocess(x))``: a backbone that takes raw image batches (see
    :class:`GPUPreprocess`); ``out_dim`` is the backbone's."""

    def __init__(self, net: nn.Module, preprocess: GPUPreprocess):
        super().__init__()
        self.preprocess = preprocess
        self.net = net
        self.out_dim = int(net.out_dim)

    def forward(self, x):
        return self.net(self.preprocess(x))


class _AsIs:
    """Per-item transform of the loop's own loader: keep the [0, 1] float CHW image (the
    backbone's :class:`GPUPreprocess` does the rest, batched)."""

    def __call__(self, t):
        return t

    def __repr__(self):
        return "AsIs()"


# ------------------------------------------------------------------------ budget / rates
@dataclass
class Rates:
    """Throughput the budget plans with: training and encoding images/s, and the fixed
    seconds of a cell (model set-up, validation passes, first-batch autotuning)."""
    train_ips: float
    encode_ips: float
    fixed_s: float
    measured: int = 0  # cells the numbers come from (0: prior)

    @classmethod
    def prior(cls, device) -> "Rates":
        """Before anything is measured: a rough guess for EfficientNet-Lite0 at 224 px (the
        first cell then measures the real numbers)."""
        if torch.device(device).type == "cuda":
            return cls(train_ips=2500.0, encode_ips=10000.0, fixed_s=10.0)
        return cls(train_ips=15.0, encode_ips=60.0, fixed_s=20.0)

    @classmethod
    def from_records(cls, records: list[dict], *, device_name: str | None = None,
                     prior: "Rates | None" = None) -> "Rates | None":
        """Medians over result records measured on ``device_name`` (None: any)."""
        rows = [r for r in records if r.get("images_per_s") and r.get("wall_seconds")
                and (device_name is None or (r.get("device") or {}).get("name") == device_name)]
        tr = [r["images_per_s"].get("train") for r in rows]
        en = [r["images_per_s"].get("encode") for r in rows]
        fx = [r["wall_seconds"].get("fixed") for r in rows]
        tr, en, fx = ([v for v in vs if v] for vs in (tr, en, fx))
        if not tr and not en:
            return prior
        p = prior or cls(1.0, 1.0, 0.0)
        return cls(train_ips=float(np.median(tr)) if tr else p.train_ips,
                   encode_ips=float(np.median(en)) if en else p.encode_ips,
                   fixed_s=float(np.median(fx)) if fx else p.fixed_s, measured=len(rows))


def _asym_defaults(name: str) -> dict:
    """ADSH/MAH's constructor defaults that size a cell's work."""
    params = constructor_parameters(check_method_args(name, {}))
    return {k: params[k].default for k in ("num_samples", "inner_epochs", "pool")}


def cell_workload(cell: Cell, sizes: dict) -> dict:
    """Images a cell trains on and encodes (final evaluation), from its split ``sizes``.

    Symmetric methods: ``epochs`` x train; query + database encoded. ADSH/MAH: ``epochs`` x
    min(|Omega|, pool) x inner passes; the pool's codes are learned, so only the items
    outside it (queries, and the database items outside the pool) are encoded.
    """
    name, kw = parse_method_spec(cell.method)
    if name in ("adsh", "mah"):
        d = {**_asym_defaults(name), **kw}
        pool = sizes["database"] - sizes["val"] if d.get("pool") == "database" else sizes["train"]
        train = cell.epochs * min(int(d["num_samples"]), pool) * int(d["inner_epochs"])
        encode = sizes["query"] + max(0, sizes["database"] - pool)
    else:
        train = cell.epochs * sizes["train"]
        encode = sizes["query"] + sizes["database"]
    return {"train_images": int(train), "encode_images": int(encode)}


def estimate_seconds(cell: Cell, sizes: dict, rates: Rates) -> float:
    """Estimated wall seconds of a cell: fixed cost + training and encoding at ``rates``."""
    w = cell_workload(cell, sizes)
    return (rates.fixed_s + w["train_images"] / max(rates.train_ips, 1e-9)
            + w["encode_images"] / max(rates.encode_ips, 1e-9))


# ----------------------------------------------------------------------------- one cell
def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return f"CPU: {provenance().get('cpu')}"
    return str(device)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _encode(method, data, idx, *, batch_size, device, amp) -> torch.Tensor:
    """Forward-pass codes (n, K) float {-1, +1} on CPU, ``batch_size`` images per batch."""
    idx = np.asarray(idx)
    if len(idx) == 0:
        return torch.empty(0, method.bits)
    amp_dtype = torch.bfloat16
    with torch.autocast(device.type, dtype=amp_dtype, enabled=bool(amp) and device.type == "cuda"):
        if hasattr(data, "batches"):
            return torch.cat([method.encode(xb, batch_size=len(xb), device=device)
                              for xb, _, _ in data.batches(idx, batch_size=batch_size)])
        return encode_dataset(method, data, idx, batch_size=batch_size, device=device,
                              transform=_AsIs())


def _codes(method, data, idx, **kw) -> tuple[torch.Tensor, int]:
    """Codes of ``idx``: learned (stored) codes where the method keeps them (ADSH/MAH), else
    forward passes -> (codes, number of images encoded)."""
    idx = np.asarray(idx)
    hook = getattr(method, "stored_codes", None)
    stored = hook(idx) if hook is not None else None
    if stored is None:
        return _encode(method, data, idx, **kw), len(idx)
    stored = stored.float().cpu()
    missing = (stored == 0).all(1).numpy()
    if missing.any():
        stored[torch.as_tensor(missing)] = _encode(method, data, idx[missing], **kw)
    return stored, int(missing.sum())


def cell_config(cell: Cell, settings: dict, dataset) -> dict:
    """What a result depends on (the resume key): method, bits, seed, protocol, training and
    input settings, and the data's content fingerprint."""
    return {"method": cell.method, "bits": cell.bits, "seed": cell.seed,
            "protocol": cell.protocol, "split_kwargs": cell.split_kwargs,
            "epochs": cell.epochs, "augment": cell.augment,
            "batch_size": settings.get("batch_size"), "lr": settings.get("lr"),
            **{k: settings[k] for k in ("backbone", "pretrained", "input_size", "resize",
                                        "backbone_lr_mult")},
            "data": getattr(dataset, "content_fingerprint", None)}


def _result_path(out: Path, dataset_name: str, cell: Cell) -> Path:
    """``<out>/<dataset>-<protocol>-<method>-<bits>b-s<seed>.json``, as the matrix runner's."""
    return result_path(out, dataset_name, cell.protocol, cell.method, cell.bits, cell.seed)


def _build_method(cell: Cell, dataset, settings: dict):
    name, mkw = parse_method_spec(cell.method)
    torch.manual_seed(cell.seed)  # model initialisation (the head: create_method's seed)
    bb_name = settings["backbone"]
    net = create_backbone(bb_name, pretrained=bool(settings["pretrained"]))
    pre = backbone_preprocess(bb_name)
    prep = GPUPreprocess(settings["input_size"], resize=settings["resize"],
                         mean=pre.get("mean") or (0.5,) * 3, std=pre.get("std") or (0.5,) * 3,
                         augment=cell.augment, channels_last=settings["channels_last"])
    backbone = PaperBackbone(net, prep)
    method = method_from_dataset(name, dataset, bits=cell.bits, backbone=backbone,
                                 backbone_lr_mult=settings["backbone_lr_mult"],
                                 seed=cell.seed, **mkw)
    if settings["channels_last"]:
        method = method.to(memory_format=torch.channels_last)
    if settings.get("compile"):
        backbone.net = torch.compile(backbone.net)
    return name, mkw, method


def run_cell(cell: Cell, dataset, *, data=None, settings: dict, device, out: Path,
             progress: bool = False, budget: dict | None = None) -> dict:
    """Train and evaluate one cell, write its JSON into ``out``, return the record.

    ``dataset`` is the :class:`~hashnb.data.HashingDataset` (splits are made on it);
    ``data`` what the loop reads (a :class:`DeviceImages`, or ``dataset`` itself for the
    loop's per-item loader).
    """

    data = dataset if data is None else data
    t_cell = time.perf_counter()
    split = make_split(dataset, cell.protocol, seed=cell.seed, **cell.split_kwargs)
    name, mkw, method = _build_method(cell, dataset, settings)
    _sync(device)
    t_setup = time.perf_counter() - t_cell
    t0 = time.perf_counter()
    run = fit(method, data, split, epochs=cell.epochs, batch_size=settings.get("batch_size"),
              lr=settings.get("lr"), seed=cell.seed, device=device, amp=settings["amp"],
              progress=progress, transform=_AsIs(), select="val")
    _sync(device)
    t_train = time.perf_counter() - t0
    t1 = time.perf_counter()
    kw = dict(batch_size=settings["eval_batch_size"], device=device, amp=settings["amp"])
    q, nq = _codes(run.method, data, split.query, **kw)
    db, ndb = _codes(run.method, data, split.database, **kw)
    _sync(device)
    t_encode = time.perf_counter() - t1
    ql = torch.as_tensor(dataset.labels[split.query], dtype=torch.float32)
    dbl = torch.as_tensor(dataset.labels[split.database], dtype=torch.float32)
    t2 = time.perf_counter()
    metrics = evaluate(q, db, ql, dbl, device=device)
    metrics["map_ties_index"] = float(mean_average_precision(q, db, ql, dbl, ties="index",
                                                             device=device))
    t_metrics = time.perf_counter() - t2
    epoch_s = sum(h.get("time", 0.0) for h in run.history)
    seen = sum(h.get("samples", 0) for h in run.history)
    encoded = nq + ndb
    wall = time.perf_counter() - t_cell
    train_ips = seen / epoch_s if epoch_s > 0 else None
    encode_ips = encoded / t_encode if encoded and t_encode > 0 else None
    rec = provenance(
        profile="paper", dataset=dataset.name, protocol=split.protocol,
        split_sizes=split.sizes(),
        features={"finetune": True, "backbone": settings["backbone"],
                  "pretrained": bool(settings["pretrained"]),
                  "input_size": settings["input_size"], "resize": settings["resize"],
                  "augment": cell.augment, "amp": bool(settings["amp"]) and device.type == "cuda",
                  "channels_last": bool(settings["channels_last"]),
                  "compile": bool(settings.get("compile")), "loader": settings["loader"],
                  "data_source": (getattr(dataset, "meta", None) or {}).get("source"),
                  "data_format": (getattr(dataset, "meta", None) or {}).get("format")},
        method=cell.method, method_name=name,
        method_kwargs={**mkw, "backbone": settings["backbone"],
                       "pretrained": bool(settings["pretrained"]),
                       "backbone_lr_mult": settings["backbone_lr_mult"]},
        bits=cell.bits, seed=cell.seed, role=cell.role,
        epochs=run.config.get("epochs"), best_epoch=run.best_epoch,
        selection="best validation mAP@all (val queries vs train)",
        hparams=run.config.get("hparams"), lr=run.config.get("lr"),
        batch_size=run.config.get("batch_size"),
        device={"type": device.type, "name": _device_name(device)},
        wall_seconds={"features_load": settings.get("data_seconds", 0.0), "setup": t_setup,
                      "train": t_train, "train_loop": epoch_s, "encode": t_encode,
                      "evaluate": t_encode + t_metrics, "metrics": t_metrics, "cell": wall,
                      "fixed": max(0.0, wall - epoch_s - t_encode)},
        train_samples_per_s=train_ips,
        images_per_s={"train": train_ips, "encode": encode_ips},
        images={"train": int(seen), "encoded": int(encoded)},
        metrics=metrics, metric_convention=_METRIC_CONVENTION,
        config=cell_config(cell, settings, dataset), budget=budget)
    out.mkdir(parents=True, exist_ok=True)
    path = _result_path(out, dataset.name, cell)
    tmp = path.with_suffix(f".json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(rec, indent=1, default=json_default))
    os.replace(tmp, path)
    return rec


# ------------------------------------------------------------------------------ profile
def _settings(profile: dict, **over) -> dict:
    s = {k: profile[k] for k in ("backbone", "pretrained", "input_size", "resize",
                                 "backbone_lr_mult", "amp", "channels_last", "compile",
                                 "eval_batch_size")}
    s.update({"batch_size": None, "lr": None, "loader": "device"})
    s.update({k: v for k, v in over.items() if v is not None})
    return s


def run_paper(out="book/results/gpu", *, budget_min: float | None = None, dataset=None,
              root=None, profile: dict | None = None, cells: list[Cell] | None = None,
              seeds=None, methods=None, bits=None, epochs: int | None = None,
              decisive_only: bool = False, device=None, loader: str = "device",
              compile: bool | None = None, batch_size: int | None = None,
              input_size: int | None = None, resize: int | None = None,
              rates: Rates | None = None, overwrite: bool = False, dry_run: bool = False,
              progress: bool = False, start: float | None = None, log=print) -> dict:
    """Run the paper profile into ``out`` (one JSON per cell), decisive cells first.

    Parameters
    ----------
    budget_min : stop starting cells when ``elapsed + estimate`` would pass this many
        minutes since ``start`` (default: the call; the CLI passes its own start). None: no
        limit.
    dataset : a :class:`~hashnb.data.HashingDataset`; default :func:`load_paper_dataset`
        (``root`` or ``$HASHNB_DATA``: a packed file, ``cifar10.npz``, ...).
    profile : default :data:`PAPER_PROFILE`; ``cells`` overrides its cell list.
    loader : ``"device"`` (images resident on the device, :class:`DeviceImages`) or
        ``"items"`` (the loop's per-item CPU loader, same preprocessing on the device).
    rates : throughput to plan the first cell with (default: measured in ``out`` on this
        device, else :meth:`Rates.prior`); updated after every cell.
    dry_run : print the plan (order, estimates, what fits) without training.

    Returns a dict: ``ran``, ``skipped`` (existing), ``over_budget``, ``mismatched``
    (cells whose JSON has another configuration; rerun with ``overwrite=True``), ``records``
    and ``wall_s``.
    """

    start = time.perf_counter() if start is None else start
    if loader not in ("device", "items"):
        raise ValueError(f"loader must be 'device' or 'items', got {loader!r}")
    prof = dict(PAPER_PROFILE if profile is None else profile)
    device = default_device(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    t = time.perf_counter()
    ds = dataset if dataset is not None else load_paper_dataset(root)
    data = DeviceImages(ds, device) if loader == "device" and not dry_run else ds
    _sync(device)
    data_s = time.perf_counter() - t
    settings = _settings(prof, compile=compile, batch_size=batch_size, loader=loader,
                         input_size=input_size,
                         resize=resize or (round(input_size * 8 / 7) if input_size else None))
    settings["data_seconds"] = data_s
    todo = cells if cells is not None else paper_cells(prof, seeds=seeds, methods=methods,
                                                       bits=bits, epochs=epochs,
                                                       decisive_only=decisive_only)
    out = Path(out)
    dev_name = _device_name(device)
    existing = [r for r in (load_results(out) if out.is_dir() else [])  # measured here before
                if (r.get("device") or {}).get("name") == dev_name
                and {k: (r.get("features") or {}).get(k) for k in ("backbone", "input_size")}
                == {k: settings[k] for k in ("backbone", "input_size")}]
    rates = rates or Rates.from_records(existing, prior=Rates.prior(device))
    budget_s = None if budget_min is None else 60.0 * float(budget_min)
    log(f"paper profile: {len(todo)} cells -> {out} on {dev_name} ({loader} loader); data "
        f"{ds.meta.get('source')} loaded in {data_s:.1f} s; budget "
        f"{'none' if budget_s is None else f'{budget_min:g} min'}; planning with "
        f"{rates.train_ips:,.0f} train img/s, {rates.encode_ips:,.0f} encode img/s, "
        f"{rates.fixed_s:.0f} s per cell ({'measured' if rates.measured else 'prior'})")
    summary = {"ran": [], "skipped": [], "over_budget": [], "mismatched": [], "records": [],
               "plan": []}
    done: list[dict] = []
    stop = False
    for i, cell in enumerate(todo, 1):
        path = _result_path(out, ds.name, cell)
        if path.exists():
            old = json.loads(path.read_text())
            if old.get("config") == cell_config(cell, settings, ds):
                summary["skipped"].append(cell)
                summary["records"].append(old)
                continue
            if not overwrite:
                log(f"[{i}/{len(todo)}] {cell.label}: {path.name} holds another configuration; "
                    "skipped (overwrite=True / --overwrite reruns it)")
                summary["mismatched"].append(cell)
                continue
        split = make_split(ds, cell.protocol, seed=cell.seed, **cell.split_kwargs)
        est = estimate_seconds(cell, split.sizes(), rates)
        elapsed = time.perf_counter() - start
        if stop or (budget_s is not None and elapsed + est > budget_s):
            if not stop:
                log(f"[{i}/{len(todo)}] {cell.label}: estimated {est:.0f} s, {elapsed:.0f} s "
                    f"spent of {budget_s:.0f} s: budget reached, no further cells started")
            stop = True
            summary["over_budget"].append(cell)
            continue
        summary["plan"].append((cell, est))
        if dry_run:
            log(f"[{i}/{len(todo)}] {cell.label} [{cell.role}]: estimated {est:.0f} s")
            start -= est  # the plan spends the estimate
            continue
        budget = {"budget_s": budget_s, "elapsed_before_s": elapsed, "estimate_s": est,
                  "rates": asdict(rates)}
        rec = run_cell(cell, ds, data=data, settings=settings, device=device, out=out,
                       progress=progress, budget=budget)
        done.append(rec)
        summary["ran"].append(cell)
        summary["records"].append(rec)
        rates = Rates.from_records(existing + done, prior=rates)
        log(f"[{i}/{len(todo)}] {cell.label} [{cell.role}]: mAP {rec['metrics']['map']:.3f} "
            f"(best epoch {rec['best_epoch']}/{rec['epochs']}) in "
            f"{rec['wall_seconds']['cell']:.1f} s "
            f"(estimated {est:.0f} s); train {_fmt(rec['images_per_s']['train'])} img/s, "
            f"encode {_fmt(rec['images_per_s']['encode'])} img/s")
    summary["wall_s"] = time.perf_counter() - start if not dry_run else None
    log(f"paper profile: {len(summary['ran'])} run, {len(summary['skipped'])} already there, "
        f"{len(summary['over_budget'])} left for the next invocation"
        + (f", {len(summary['mismatched'])} with another configuration"
           if summary["mismatched"] else "")
        + (f"; wall time {summary['wall_s']:.1f} s" if summary["wall_s"] is not None else ""))
    return summary


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:,.0f}"


# ------------------------------------------------------------------ published + table
#: Published CIFAR-10 mAP@all, as collected in the project's reference notes on the methods
#: (§2f DPSH, §3f HashNet, §6f ADSH, §9f MAH), each with its protocol, backbone and source.
#: P-59k = ``cifar10-1``, P-54k = ``cifar10``. CSQ and OrthoHash report no CIFAR-10 number
#: there; CRH and MLH no table at all (only their abstracts and summaries could be read).
PUBLISHED: list[dict] = [
    *[dict(method="dpsh", bits=b, map=v, protocol="cifar10-1 (P-59k)", backbone="VGG-F",
           source="DPSH paper via DPSH-pytorch README")
      for b, v in ((12, 0.713), (24, 0.727), (32, 0.744), (48, 0.757))],
    *[dict(method="dpsh", bits=b, map=v, protocol="cifar10-1 (P-59k)", backbone="AlexNet",
           source="DPSH-pytorch README (port)")
      for b, v in ((12, 0.7505), (24, 0.7724), (32, 0.7758), (48, 0.7828))],
    dict(method="dpsh", bits=48, map=0.775, protocol="cifar10 (P-54k)", backbone="AlexNet",
         source="DeepHash-pytorch README"),
    dict(method="hashnet", bits=48, map=0.782, protocol="CIFAR-10, split not stated",
         backbone="AlexNet", source="DeepHash-pytorch README"),
    *[dict(method="adsh:pool=database", bits=b, map=v, protocol="cifar10-1 (P-59k)",
           backbone="ResNet-50", source="ADSH_pytorch README")
      for b, v in ((12, 0.9473), (24, 0.9636), (32, 0.9632), (48, 0.9605))],
    *[dict(method="adsh:pool=database", bits=b, map=v, protocol="cifar10-1 (P-59k)",
           backbone="CNN-F", source="ADSH paper (from memory; 48 bits confirmed)")
      for b, v in ((12, 0.8898), (24, 0.9280), (32, 0.9310), (48, 0.9390))],
    *[dict(method="mah:pool=database", bits=b, map=v, protocol="cifar10-1 (P-59k)",
           backbone="ResNet-50", source="MAH-Pytorch README (cascade)")
      for b, v in ((4, 0.7460), (6, 0.8950), (8, 0.9429), (10, 0.9489), (12, 0.9537))],
]

#: the folders of the book's own CPU results set beside the paper profile
CPU_FOLDERS = ("book/results/cpu", "book/results/cpu-pool")  # the tuned cpu profiles
PAPER_COMMAND = ("HASHNB_DATA=data/cifar10-jpeg.npz python -m hashnb.bench paper --budget 8 "
                 "--out book/results/gpu")
PACK_COMMAND = ("python -m hashnb.bench pack-cifar10 --src /path/to/cifar10 "
                "--out data/cifar10-jpeg.npz")


class Message(str):
    """A plain-text message that a notebook shows as Markdown."""

    def _repr_markdown_(self):
        return str(self)

    def __repr__(self):
        return str(self)


def _resolve(folder) -> Path:
    """A results folder as given, else below the committed ``book/results`` (whatever the
    working directory: :func:`hashnb.matrix.results_dir`)."""
    p = Path(folder)
    if p.is_absolute() or p.exists():
        return p
    parts = p.parts[2:] if p.parts[:2] == ("book", "results") else p.parts
    return results_dir(*parts, must_exist=False)


def paper_table(folder="book/results/gpu", *, cpu_folders=CPU_FOLDERS, metric: str = "map",
                published: bool = True):
    """The paper profile's results beside the book's CPU results and the published numbers.

    Returns a pandas DataFrame indexed by (method, source, protocol, backbone) with one
    column per code length; our cells read ``mean ± std (seeds)``, published ones the
    number as published (mAP@all on CIFAR-10; see :data:`PUBLISHED`). When ``folder`` holds
    no paper-profile result yet, returns a :class:`Message` saying so and naming the command
    that makes them.
    """
    import pandas as pd


    path = _resolve(folder)
    res = [r for r in (load_results(path) if path.is_dir() else [])
           if r.get("profile") == "paper"]
    if not res:
        return Message(
            f"No paper-profile results in `{folder}` yet: the end-to-end runs need a GPU. "
            f"Pack the data once with `{PACK_COMMAND}`, then run `{PAPER_COMMAND}` "
            "(resumable: repeat it to complete the profile).")
    rows = []
    groups: dict[tuple, list] = {}
    for r in res:
        f = r.get("features") or {}
        key = (r["method"], "this book, paper profile (GPU)", r["protocol"],
               f"{f.get('backbone')} fine-tuned, {f.get('input_size')} px", r["bits"])
        groups.setdefault(key, []).append(r["metrics"][metric])
    methods = {r["method"] for r in res}
    for folder_c in cpu_folders:
        p = _resolve(folder_c)
        for r in (load_results(p) if p.is_dir() else []):
            if r.get("profile") == "paper" or r["method"] not in methods:
                continue
            f = r.get("features") or {}
            key = (r["method"], "this book, cpu profile", r["protocol"],
                   f"{f.get('backbone')} frozen, {f.get('input_size')} px", r["bits"])
            groups.setdefault(key, []).append(r["metrics"][metric])
    for (m, src, proto, bb, b), vals in groups.items():
        rows.append(dict(method=m, source=src, protocol=proto, backbone=bb, bits=b,
                         value=mean_std_text(vals)))
    if published and metric == "map":
        for p in PUBLISHED:
            if p["method"] in methods:
                rows.append(dict(method=p["method"], source="published, " + p["source"],
                                 protocol=p["protocol"], backbone=p["backbone"], bits=p["bits"],
                                 value=f"{p['map']:.3f}"))
    df = pd.DataFrame(rows)
    table = df.pivot_table(index=["method", "source", "protocol", "backbone"], columns="bits",
                           values="value", aggfunc="first").fillna("")
    table.columns = [f"{b} bits" for b in table.columns]
    order = {m: i for i, m in enumerate(SYMMETRIC + ASYMMETRIC)}
    def key(ix):
        if ix.name == "method":
            return ix.map(lambda v: order.get(v, len(order)))
        if ix.name == "source":  # ours on the GPU, ours on the CPU, then the published
            return ix.map(lambda v: f"{0 if 'paper profile' in v else 1 if 'cpu' in v else 2}{v}")
        return ix

    return table.sort_index(key=key)


# ------------------------------------------------------------------------ command line
def process_age_s() -> float:
    """Seconds since this process started (Linux /proc; 0 elsewhere): the budget counts the
    interpreter's start and the imports too."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0
