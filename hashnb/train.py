"""The one training loop, shared by every method.

``fit(method, dataset, split)`` does, in order: seeds, device (CUDA, MPS, CPU), the method's
``on_train_start`` hook, epochs of ``method.loss`` with Adam (mixed precision on CUDA), the
method's epoch hooks, validation mAP every ``val_every`` epochs, checkpoints, and finally
the best-on-validation weights. Validation queries are ``split.val`` against ``split.train``
as the database: the query set and the retrieval database are never looked at.

Runs live in a folder (``config.json``, ``history.json``, ``checkpoint.pt`` while training,
``model.pt`` when done). ``fit`` with an existing finished ``run_dir`` loads instead of
training ("load if present, else train"); an interrupted run resumes from its checkpoint.

Distributed data parallel: launch the same script with ``torchrun --nproc_per_node N``;
``fit`` sees ``WORLD_SIZE`` and initialises the process group (gloo on CPU, NCCL on CUDA),
shards every epoch's batches across ranks and writes files from rank 0 only.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.distributed as dist

from hashnb.utils import as_tensor, cache_dir, check_finite, default_device, seed_everything

__all__ = ["fit", "run_method", "Run", "TrainContext", "LivePlot", "encode_dataset",
           "codes_for", "method_from_dataset", "data_fingerprint"]

# a loss that grows by this factor over its first batch's value (at least 1) has diverged,
# even while it is still finite (lr=1e6 gives ~1e32 and one code for every item)
_DIVERGED = 1e8


# ---------------------------------------------------------------------------------------
# data feeding
# ---------------------------------------------------------------------------------------
def _is_vector(dataset) -> bool:
    return getattr(dataset, "kind", "vector") == "vector"


def _vectors(dataset, idx) -> torch.Tensor:
    return torch.as_tensor(np.asarray(dataset.x[idx]), dtype=torch.float32)


def _labels(dataset, idx) -> torch.Tensor:
    return torch.as_tensor(np.asarray(dataset.labels[idx]), dtype=torch.float32)


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


def _check_shapes(method, dataset) -> None:
    """Labels and inputs must match what ``method`` was built for, before the first step."""
    labels = np.asarray(dataset.labels)
    name = getattr(method, "method_name", type(method).__name__)
    c = getattr(method, "num_classes", None)
    if c is not None and labels.ndim == 2 and labels.shape[1] != c:
        raise ValueError(f"{name} was built with num_classes={c} but the labels have "
                         f"{labels.shape[1]} columns; build it with num_classes="
                         f"{labels.shape[1]} (hashnb.train.method_from_dataset does)")
    d = getattr(method, "in_dim", None)
    if d is not None and _is_vector(dataset):
        x = np.asarray(dataset.x)
        got = int(np.prod(x.shape[1:])) if x.ndim > 1 else 1
        if got != d:
            raise ValueError(f"{name} was built with in_dim={d} but the inputs have {got} "
                             f"features; build it with in_dim={got}")


def default_image_transform(method, dataset=None) -> Callable:
    """Float CHW image in [0, 1] -> resized and normalised for the method's backbone.

    Mean, std and input size come from :func:`hashnb.models.backbone_preprocess`; a
    backbone without them (e.g. a custom module) gets mean = std = 0.5 and no resize.
    """
    from hashnb.models import backbone_preprocess

    try:
        pre = backbone_preprocess(getattr(method, "backbone_name", ""))
    except (ValueError, KeyError):
        pre = {}
    mean = torch.tensor(pre.get("mean") or (0.5, 0.5, 0.5)).view(3, 1, 1)
    std = torch.tensor(pre.get("std") or (0.5, 0.5, 0.5)).view(3, 1, 1)
    size = pre.get("input_size")

    def transform(t: torch.Tensor) -> torch.Tensor:
        if size and tuple(t.shape[-2:]) != (size, size):
            t = torch.nn.functional.interpolate(t[None], size=(size, size), mode="bilinear",
                                                antialias=True, align_corners=False)[0]
        return (t - mean) / std

    return transform


def _image_loader(dataset, idx, *, batch_size, shuffle, transform, seed, rank, world,
                  num_workers=0, epoch=0):
    from hashnb.data import TorchImageDataset

    tds = TorchImageDataset(dataset, idx, transform)
    sampler = None
    if world > 1:
        sampler = torch.utils.data.distributed.DistributedSampler(
            tds, num_replicas=world, rank=rank, shuffle=shuffle, seed=seed)
        sampler.set_epoch(epoch)
    g = torch.Generator().manual_seed(seed + epoch)
    return torch.utils.data.DataLoader(tds, batch_size=batch_size, shuffle=shuffle and sampler is None,
                                       sampler=sampler, generator=g, num_workers=num_workers,
                                       drop_last=False)


@torch.no_grad()
def encode_dataset(method, dataset, indices, *, batch_size: int = 1024, device=None,
                   transform=None) -> torch.Tensor:
    """Codes (len(indices), K) float {-1, +1} on CPU for ``dataset[indices]``."""
    indices = np.asarray(indices)
    if _is_vector(dataset) or not getattr(method, "trainable", True):
        return method.encode(_vectors(dataset, indices), batch_size=batch_size, device=device)
    transform = transform or default_image_transform(method, dataset)
    loader = _image_loader(dataset, indices, batch_size=min(batch_size, 256), shuffle=False,
                           transform=transform, seed=0, rank=0, world=1)
    return torch.cat([method.encode(xb, batch_size=len(xb), device=device) for xb, _, _ in loader])


def codes_for(method, dataset, indices, *, device=None) -> torch.Tensor:
    """Codes of ``dataset[indices]``: the method's learned codes where it stores them, else
    forward passes (:func:`encode_dataset`).

    Asymmetric methods (ADSH, MAH in :mod:`hashnb.methods.asymmetric`) learn the database
    codes directly; they expose ``stored_codes(indices) -> Tensor | None``: a float (n, K)
    tensor with the learned {-1, +1} code of every index they hold and rows of zeros for the
    others (filled here by forward passes), or None when they hold none of them. Methods
    without the hook are encoded by forward passes, as before.
    """
    indices = np.asarray(indices)
    hook = getattr(method, "stored_codes", None)
    stored = hook(indices) if hook is not None else None
    if stored is None:
        return encode_dataset(method, dataset, indices, device=device)
    stored = stored.float().cpu()
    missing = (stored == 0).all(1).numpy()
    if missing.any():
        stored[torch.as_tensor(missing)] = encode_dataset(method, dataset, indices[missing],
                                                          device=device)
    return stored


# ---------------------------------------------------------------------------------------
# run bookkeeping
# ---------------------------------------------------------------------------------------
@dataclass
class TrainContext:
    """What hooks and callbacks see: the method, data, device and the history so far."""
    method: Any
    dataset: Any
    split: Any
    device: torch.device
    epochs: int
    train_x: torch.Tensor | None
    train_y: torch.Tensor
    history: list = field(default_factory=list)
    epoch: int = 0
    rank: int = 0
    world: int = 1
    seed: int = 0
    extras: dict = field(default_factory=dict)


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
        from hashnb.metrics import evaluate

        q, db = self.codes("query"), self.codes("database")
        ql = _labels(self.dataset, self.split.query)
        dbl = _labels(self.dataset, self.split.database)
        out = evaluate(q, db, ql, dbl, R=R)
        if ties != "average":
            from hashnb.metrics import mean_average_precision
            out["map"] = mean_average_precision(q, db, ql, dbl, R=R, ties=ties)
        return out


def _tmp_name(path: Path) -> Path:
    # per-process name: two processes finishing the same run never clash on the temp file
    return path.with_suffix(f"{path.suffix}.{os.getpid()}.tmp")


def _atomic_save(obj, path: Path) -> None:
    tmp = _tmp_name(path)
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _atomic_json(obj, path: Path) -> None:
    tmp = _tmp_name(path)
    tmp.write_text(json.dumps(obj, indent=1, default=_json_default))
    os.replace(tmp, path)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (np.ndarray, torch.Tensor)):
        return np.asarray(o).tolist()
    if isinstance(o, Path):
        return str(o)
    return repr(o)


def _canonical(cfg: dict) -> dict:
    return json.loads(json.dumps(cfg, default=_json_default, sort_keys=True))


# ---------------------------------------------------------------------------------------
# live plots
# ---------------------------------------------------------------------------------------
class LivePlot:
    """Callback that redraws loss and validation mAP in a notebook after every epoch.

    In a live kernel the figure updates in place (one display slot); in a saved notebook
    only its final state remains, so the built book shows the finished curves.
    """

    def __init__(self, keys: Iterable[str] = ("loss", "val_map"), every: int = 1,
                 title: str | None = None):
        self.keys = tuple(keys)
        self.every = every
        self.title = title
        self._handle = None
        self._fig = None

    def __call__(self, ctx: TrainContext) -> None:
        last = ctx.epoch + 1 == ctx.epochs
        if ctx.rank != 0 or ((ctx.epoch + 1) % self.every and not last):
            return
        import matplotlib.pyplot as plt
        from IPython.display import display

        from hashnb.viz import plot_history

        if self._fig is None:
            self._fig, axes = plt.subplots(1, len(self.keys), figsize=(4 * len(self.keys), 3))
            plt.close(self._fig)
        axes = np.atleast_1d(self._fig.axes)
        for ax, key in zip(axes, self.keys):
            ax.clear()
            if any(key in h for h in ctx.history):  # val_map appears after val_every epochs
                plot_history(ctx.history, keys=[key], ax=ax)
            else:
                ax.set_title(f"{key}: not yet measured", fontsize=9)
        if self.title:
            self._fig.suptitle(self.title)
        self._fig.tight_layout()
        if self._handle is None:
            self._handle = display(self._fig, display_id=True)
        else:
            self._handle.update(self._fig)


# ---------------------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------------------
def _dist_setup(device):
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device, False
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    rank = dist.get_rank()
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(device)
    return rank, dist.get_world_size(), device, True


def _validate(method, dataset, split, device) -> float | None:
    from hashnb.metrics import mean_average_precision

    if split.val is None or len(split.val) == 0:
        return None
    q = encode_dataset(method, dataset, split.val, device=device)
    db = codes_for(method, dataset, split.train, device=device)  # learned codes if stored
    return float(mean_average_precision(q, db, _labels(dataset, split.val),
                                        _labels(dataset, split.train)))


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


def method_from_dataset(name: str, dataset, *, bits: int, **kwargs):
    """``create_method`` with ``num_classes`` and (for vectors) ``in_dim`` taken from the data."""
    from hashnb.methods import create_method

    kw = dict(kwargs)
    kw.setdefault("num_classes", int(np.asarray(dataset.labels).shape[1]))
    if _is_vector(dataset):
        kw.setdefault("in_dim", int(np.asarray(dataset.x).shape[1]))
    return create_method(name, bits=bits, **kw)


def fit(method, dataset, split, *, epochs: int | None = None, batch_size: int | None = None,
        lr: float | None = None, weight_decay: float | None = None, seed: int = 0,
        device=None, amp: bool | None = None, val_every: int | None = None,
        select: str = "val", scheduler: str | None = None, run_dir: str | Path | None = None,
        resume: bool = True, callbacks: Iterable[Callable] = (), progress: bool = True,
        transform: Callable | None = None, num_workers: int = 0,
        checkpoint_every: int = 1) -> Run:
    """Train ``method`` on ``split.train`` of ``dataset`` and return a :class:`Run`.

    Parameters
    ----------
    epochs, batch_size, lr, weight_decay : default to the method's ``default_*`` values.
    seed : seeds python/numpy/torch and the batch order.
    amp : mixed precision; default on for CUDA (bfloat16 where supported, else float16 with
        a gradient scaler), always off on CPU/MPS.
    val_every : validation mAP@all (val queries vs train database) every this many epochs
        and after the last; default ``max(1, epochs // 10)``.
    select : ``"val"`` keeps the weights of the best validation epoch, ``"last"`` the last.
    scheduler : None, ``"cosine"`` or ``"step"`` (x0.7 every 10 epochs, CSQ's schedule).
    run_dir : folder for config/history/checkpoints. A finished run there is loaded instead
        of trained; a checkpoint there is resumed (``resume=False`` starts over). A config
        mismatch raises ``ValueError`` rather than mixing two runs.
    callbacks : called as ``cb(ctx)`` after each epoch on rank 0 (e.g. :class:`LivePlot`).
    """
    if select not in ("val", "last"):
        raise ValueError("select must be 'val' or 'last'")
    if scheduler not in (None, "cosine", "step"):
        raise ValueError("scheduler must be None, 'cosine' or 'step'")
    for part in ("train", "val", "query", "database"):
        if not hasattr(split, part):
            raise ValueError(f"split has no {part!r} indices; build it with hashnb.data.make_split")
    if len(split.train) == 0:
        raise ValueError("the training split is empty")
    trainable = getattr(method, "trainable", True)
    epochs = method.default_epochs if epochs is None else int(epochs)
    batch_size = batch_size or method.default_batch_size
    lr = method.default_lr if lr is None else lr
    weight_decay = method.default_weight_decay if weight_decay is None else weight_decay
    val_every = val_every or max(1, epochs // 10)
    if trainable and epochs < 1:
        raise ValueError("epochs must be >= 1")

    device = default_device(device)
    rank, world, device, distributed = _dist_setup(device)
    seed_everything(seed)
    amp = (device.type == "cuda") if amp is None else (amp and device.type == "cuda")

    _check_shapes(method, dataset)
    config = _canonical({
        "method": getattr(method, "method_name", type(method).__name__),
        "hparams": method.hparams(), "init_seed": getattr(method, "init_seed", None),
        "dataset": getattr(dataset, "name", None), "data": data_fingerprint(dataset),
        "dataset_size": len(dataset.labels), "protocol": getattr(split, "protocol", None),
        "split_seed": getattr(split, "seed", None), "n_train": len(split.train),
        "n_val": len(split.val), "seed": seed, "epochs": epochs if trainable else 0,
        "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
        "val_every": val_every, "select": select, "scheduler": scheduler,
        "world_size": world,
    })
    run_dir = Path(run_dir) if run_dir is not None else None
    main = rank == 0
    if run_dir is not None:
        if main:
            run_dir.mkdir(parents=True, exist_ok=True)
        old = _read_config(run_dir)
        if old is not None:
            old_cfg = {k: v for k, v in old.items() if k in config}
            if old_cfg != config:
                diff = sorted(k for k in config if old.get(k) != config[k])
                raise ValueError(f"{run_dir} holds a run with a different config (differs in "
                                 f"{diff}); use another run_dir or delete it")
        if (run_dir / "model.pt").exists():
            loaded = _guarded_load(method, lambda: load_run(run_dir, method, dataset, split,
                                                            device=device),
                                   run_dir, ("model.pt", "history.json"), "trains it again")
            if loaded is not None:
                return loaded

    method.to(device)
    train_idx = np.asarray(split.train)
    train_y = check_finite(_labels(dataset, train_idx), "training labels (dataset.labels[split.train])")
    train_x = (check_finite(_vectors(dataset, train_idx),
                            "training inputs (dataset.x[split.train])")
               if _is_vector(dataset) else None)
    ctx = TrainContext(method=method, dataset=dataset, split=split, device=device, epochs=epochs,
                       train_x=train_x, train_y=train_y, rank=rank, world=world, seed=seed)
    t0 = time.perf_counter()

    if not trainable:
        if train_x is None:
            raise ValueError(f"{config['method']} works on vectors; extract features first "
                             "(hashnb.data.load_features)")
        method.fit_closed_form(train_x.to(device), train_y.to(device), seed=seed)
        run = Run(method, dataset, split, [], config, run_dir, None, time.perf_counter() - t0)
        if run_dir is not None and main:
            _finish(run_dir, method, config, [], None, run.train_seconds)
        return run

    method.on_train_start(ctx)
    net = method
    if distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(method, device_ids=[device.index] if device.type == "cuda" else None)
    opt = torch.optim.Adam(method.parameter_groups(lr), lr=lr, weight_decay=weight_decay)
    sched = None
    if scheduler == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    elif scheduler == "step":
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.7)
    amp_dtype = torch.bfloat16 if amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp and amp_dtype == torch.float16)

    history: list[dict] = []
    best_score, best_epoch, best_state = -math.inf, None, None
    start = 0
    ckpt_path = run_dir / "checkpoint.pt" if run_dir is not None else None
    if ckpt_path is not None and ckpt_path.exists() and resume:
        def restore():
            ck = _read_file(ckpt_path, lambda p: torch.load(p, map_location=device,
                                                            weights_only=False))
            method.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            scaler.load_state_dict(ck["scaler"])
            if sched is not None and ck.get("scheduler"):
                sched.load_state_dict(ck["scheduler"])
            if ck.get("method_extra") is not None and hasattr(method, "load_extra_state"):
                method.load_extra_state(ck["method_extra"])
            _set_rng_state(ck["rng"])
            return ck

        ck = _guarded_load(method, restore, run_dir, ("checkpoint.pt",), "starts the run over")
        if ck is not None:
            history, start = ck["history"], ck["epoch"] + 1
            best_score, best_epoch, best_state = (ck["best_score"], ck["best_epoch"],
                                                  ck["best_state"])
    if main and run_dir is not None:
        _atomic_json(config, run_dir / "config.json")
    ctx.history = history

    from tqdm.auto import tqdm

    bar = tqdm(range(start, epochs), desc=config["method"], disable=not (progress and main),
               initial=start, total=epochs, leave=True)
    n_train = len(train_idx)
    train_pos = torch.full((len(dataset.labels),), -1, dtype=torch.long)
    train_pos[torch.as_tensor(train_idx)] = torch.arange(n_train)
    per_rank_bs = max(1, batch_size // world)
    first_loss = None  # the first batch's loss: the scale against which divergence is judged
    for epoch in bar:
        ctx.epoch = epoch
        method.train()
        method.on_epoch_start(epoch, ctx)
        te = time.perf_counter()
        sums: dict[str, float] = {}
        nb = ns = 0  # batches and samples (this rank) this epoch
        # optional hook: the dataset indices this epoch trains on, in order (ADSH/MAH: the
        # sampled subset Omega, repeated for its inner epochs); batches then also carry them
        # as "index" ("idx" stays the position in split.train, -1 outside it)
        items = method.epoch_items(epoch, ctx) if hasattr(method, "epoch_items") else None
        if items is not None:
            items = torch.as_tensor(np.asarray(items), dtype=torch.long)[rank::world]
            if _is_vector(dataset):
                batches = ((_vectors(dataset, jb.numpy()), _labels(dataset, jb.numpy()), jb)
                           for jb in items.split(per_rank_bs))
            else:
                tf = transform or default_image_transform(method, dataset)
                batches = _image_loader(dataset, items.numpy(), batch_size=per_rank_bs,
                                        shuffle=False, transform=tf, seed=seed, rank=0, world=1,
                                        num_workers=num_workers, epoch=epoch)
            batches = ((xb, yb, train_pos[jb], jb) for xb, yb, jb in batches)
        elif train_x is not None:
            g = torch.Generator().manual_seed(seed * 100003 + epoch)
            perm = torch.randperm(n_train, generator=g)[rank::world]
            batches = ((train_x[b], train_y[b], b) for b in perm.split(per_rank_bs))
        else:
            tf = transform or default_image_transform(method, dataset)
            loader = _image_loader(dataset, train_idx, batch_size=per_rank_bs, shuffle=True,
                                   transform=tf, seed=seed, rank=rank, world=world,
                                   num_workers=num_workers, epoch=epoch)
            # the loader yields dataset indices; "idx" is the position in split.train
            batches = ((xb, yb, train_pos[jb]) for xb, yb, jb in loader)
        for xb, yb, ib, *jb in batches:
            batch = {"x": xb.to(device, non_blocking=True), "y": yb.to(device),
                     "idx": ib.to(device)}
            if jb:
                batch["index"] = jb[0].to(device)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
                out = net(batch["x"])
                loss, logs = method.loss(out, batch)
            value = float(loss.detach())
            first_loss = abs(value) if first_loss is None else first_loss
            if not math.isfinite(value):
                raise FloatingPointError(f"non-finite loss at epoch {epoch + 1}; lower lr "
                                         f"(now {lr:g}) or check the inputs")
            if abs(value) > _DIVERGED * max(first_loss, 1.0):
                raise FloatingPointError(
                    f"the loss diverged at epoch {epoch + 1}: {value:.3g}, against {first_loss:.3g} "
                    f"on the first batch; lower lr (now {lr:g})")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sums["loss"] = sums.get("loss", 0.0) + value
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            nb += 1
            ns += len(xb)
        if sched is not None:
            sched.step()
        method.on_epoch_end(epoch, ctx)
        rec = {"epoch": epoch + 1, **{k: v / max(nb, 1) for k, v in sums.items()},
               "time": time.perf_counter() - te, "samples": ns * world}
        rec.update(ctx.extras.pop("epoch_logs", {}))
        if (epoch + 1) % val_every == 0 or epoch + 1 == epochs:
            score = _validate(method, dataset, split, device)
            if score is not None:
                rec["val_map"] = score
                if select == "val" and score > best_score:
                    best_score, best_epoch = score, epoch + 1
                    best_state = {k: v.detach().cpu().clone() for k, v in method.state_dict().items()}
        history.append(rec)
        if main:
            bar.set_postfix({k: f"{rec[k]:.4f}" for k in ("loss", "val_map") if k in rec})
            for cb in callbacks:
                cb(ctx)
            if ckpt_path is not None and ((epoch + 1) % checkpoint_every == 0 or epoch + 1 == epochs):
                extra = method.extra_state() if hasattr(method, "extra_state") else None
                _atomic_save({"model": method.state_dict(), "optimizer": opt.state_dict(),
                              "scaler": scaler.state_dict(),
                              "scheduler": sched.state_dict() if sched else None,
                              "epoch": epoch, "history": history, "best_score": best_score,
                              "best_epoch": best_epoch, "best_state": best_state,
                              "method_extra": extra, "rng": _rng_state()}, ckpt_path)
    bar.close()
    if select == "val" and best_state is not None:
        method.load_state_dict(best_state)
    else:
        best_epoch = epochs
    seconds = time.perf_counter() - t0
    if distributed:
        dist.barrier()
    if run_dir is not None and main:
        _finish(run_dir, method, config, history, best_epoch, seconds)
    method.eval()
    return Run(method, dataset, split, history, config, run_dir, best_epoch, seconds)


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
                  RuntimeWarning, stacklevel=3)


def _read_config(run_dir: Path) -> dict | None:
    """The run folder's config.json, or None when absent. A damaged one is reported once
    and the folder's files are dropped: nothing in it can be matched to a config."""
    path = run_dir / "config.json"
    if not path.exists():
        return None
    try:
        cfg = json.loads(path.read_text())
        if not isinstance(cfg, dict):
            raise ValueError("not a JSON object")
        return cfg
    except (OSError, ValueError, UnicodeDecodeError) as e:
        _warn_corrupt(path, e, "trains the run again")
        for name in ("config.json", "history.json", "model.pt", "checkpoint.pt"):
            (run_dir / name).unlink(missing_ok=True)
        return None


def _guarded_load(method, load: Callable, run_dir: Path, files: tuple, action: str):
    """``load()``, or None after a warning when a file of the run folder is damaged.

    The damaged ``files`` are deleted and the method's weights are put back as they were,
    so the run that follows is the same as one that never saw the damaged files.
    """
    before = {k: v.detach().clone() for k, v in method.state_dict().items()}
    try:
        return load()
    except Exception as e:  # a damaged file, or a state that does not fit the method
        _warn_corrupt(e.path if isinstance(e, _DamagedFile) else run_dir / files[0], e, action)
    method.load_state_dict(before)
    for name in files:
        (run_dir / name).unlink(missing_ok=True)
    return None


def _finish(run_dir: Path, method, config, history, best_epoch, seconds) -> None:
    extra = method.extra_state() if hasattr(method, "extra_state") else None
    _atomic_json(config, run_dir / "config.json")
    _atomic_json({"history": history, "best_epoch": best_epoch, "train_seconds": seconds},
                 run_dir / "history.json")
    _atomic_save({"model": method.state_dict(), "method_extra": extra}, run_dir / "model.pt")
    ck = run_dir / "checkpoint.pt"
    if ck.exists():
        ck.unlink()


def load_run(run_dir, method, dataset, split, *, device=None) -> Run:
    """Load a finished run folder into ``method`` (which must be built with the same config)."""
    run_dir = Path(run_dir)
    device = default_device(device)
    # read every file before touching the method: a damaged one leaves it as it was
    state = _read_file(run_dir / "model.pt",
                       lambda p: torch.load(p, map_location="cpu", weights_only=False))
    h = _read_file(run_dir / "history.json", lambda p: json.loads(p.read_text()))
    config = _read_file(run_dir / "config.json", lambda p: json.loads(p.read_text()))
    method.load_state_dict(state["model"])
    if state.get("method_extra") is not None and hasattr(method, "load_extra_state"):
        method.load_extra_state(state["method_extra"])
    method.to(device).eval()
    return Run(method, dataset, split, h["history"], config, run_dir, h["best_epoch"],
               h.get("train_seconds", 0.0))


def run_dir_for(name: str, dataset, split, *, bits: int, seed: int, extra: dict | None = None,
                root: str | Path | None = None) -> Path:
    """Deterministic run folder under ``cache_dir('runs')`` for a (method, data, config)."""
    key = _canonical({"name": name, "bits": bits, "seed": seed,
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


def run_method(name: str, dataset, split, *, bits: int, seed: int = 0, epochs: int | None = None,
               lr: float | None = None, batch_size: int | None = None,
               method_kwargs: dict | None = None, cache: bool = True,
               root: str | Path | None = None, **fit_kwargs) -> Run:
    """Build ``name`` for ``dataset`` and train it, or load the cached run with this config."""
    mk = dict(method_kwargs or {})
    method = method_from_dataset(name, dataset, bits=bits, seed=seed, **mk)  # seeded init
    # the defaults a run uses are part of its key: a changed default never reuses a run
    epochs = method.default_epochs if epochs is None else epochs
    lr = method.default_lr if lr is None else lr
    batch_size = batch_size or method.default_batch_size
    run_dir = None
    if cache:
        run_dir = run_dir_for(name, dataset, split, bits=bits, seed=seed, root=root,
                              extra={"epochs": epochs, "lr": lr, "batch_size": batch_size,
                                     "method_kwargs": mk, "hparams": method.hparams(),
                                     **{k: v for k, v in fit_kwargs.items()
                                        if k not in ("callbacks", "progress", "device")}})
    return fit(method, dataset, split, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
               run_dir=run_dir, **fit_kwargs)
