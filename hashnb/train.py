"""The one training loop, shared by every method.

``fit(method, dataset, split)`` does, in order: seeds, device (CUDA, MPS, CPU), the method's
``on_train_start`` hook, epochs of ``method.loss`` with Adam (mixed precision on CUDA), the
method's epoch and batch hooks, validation mAP every ``val_every`` epochs, checkpoints, and
finally the best-on-validation weights. Validation queries are ``split.val`` against
``split.train`` as the database: the query set and the retrieval database are never looked at.

The steps live in their own modules: batch sources in :mod:`hashnb.batches`, run folders
and checkpoints in :mod:`hashnb.runs`; the method's hooks are declared, with their
defaults, in :class:`hashnb.methods.base.MethodBase`. ``fit`` with an existing finished
``run_dir`` loads instead of training ("load if present, else train"); an interrupted run
resumes from its checkpoint. :func:`run_method` picks that folder from the configuration.

Distributed data parallel: launch the same script with ``torchrun --nproc_per_node N``;
``fit`` sees ``WORLD_SIZE`` and initialises the process group (gloo on CPU, NCCL on CUDA),
shards every epoch's batches across ranks and writes files from rank 0 only.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from hashnb.batches import (codes_for, encode_dataset, epoch_batches, is_vector, labels,
                            vectors)
from hashnb.methods.registry import create_method
from hashnb.metrics import mean_average_precision
from hashnb.runs import (Run, RunFolder, TrainState, canonical, data_fingerprint, load_run,
                         run_dir_for)
from hashnb.utils import check_finite, default_device, seed_everything

__all__ = ["fit", "run_method", "Run", "TrainContext", "encode_dataset", "codes_for",
           "method_from_dataset", "data_fingerprint", "load_run", "run_dir_for"]

# a loss that grows by this factor over its first batch's value (at least 1) has diverged,
# even while it is still finite (lr=1e6 gives ~1e32 and one code for every item)
_DIVERGED = 1e8


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
    last: bool = False  # True in the callbacks of the epoch that ends training

    def all_reduce_(self, t: torch.Tensor) -> None:
        """Sum ``t`` over the ranks in place (a no-op in a single process)."""
        if self.world > 1:
            buf = t.to(self.device)
            dist.all_reduce(buf)
            t.copy_(buf.to(t.device))


@dataclass
class _Options:
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    val_every: int
    select: str
    scheduler: str | None
    patience: int | None


def method_from_dataset(name: str, dataset, *, bits: int, **kwargs):
    """``create_method`` with ``num_classes`` and (for vectors) ``in_dim`` taken from the data."""
    kw = dict(kwargs)
    kw.setdefault("num_classes", int(np.asarray(dataset.labels).shape[1]))
    if is_vector(dataset):
        kw.setdefault("in_dim", int(np.asarray(dataset.x).shape[1]))
    return create_method(name, bits=bits, **kw)


# ----------------------------------------------------------------------- checks, config
def _options(method, epochs, batch_size, lr, weight_decay, val_every, select,
             scheduler, patience) -> _Options:
    if select not in ("val", "last"):
        raise ValueError("select must be 'val' or 'last'")
    if patience is not None and (select != "val" or int(patience) < 1):
        raise ValueError(f"patience must be an integer >= 1 and needs select='val' (early "
                         f"stopping on validation mAP), got {patience!r} with select={select!r}")
    if scheduler not in (None, "cosine", "step"):
        raise ValueError("scheduler must be None, 'cosine' or 'step'")
    epochs = method.default_epochs if epochs is None else int(epochs)
    if method.trainable and epochs < 1:
        raise ValueError("epochs must be >= 1")
    return _Options(epochs, batch_size or method.default_batch_size,
                    method.default_lr if lr is None else lr,
                    method.default_weight_decay if weight_decay is None else weight_decay,
                    val_every or max(1, epochs // 10), select, scheduler,
                    None if patience is None else int(patience))


def _check_inputs(method, dataset, split) -> None:
    """The split, the labels and the inputs fit ``method``, before the first step."""
    for part in ("train", "val", "query", "database"):
        if not hasattr(split, part):
            raise ValueError(f"split has no {part!r} indices; build it with hashnb.data.make_split")
    if len(split.train) == 0:
        raise ValueError("the training split is empty")
    y = np.asarray(dataset.labels)
    name = method.method_name or type(method).__name__
    c = method.num_classes
    if c is not None and y.ndim == 2 and y.shape[1] != c:
        raise ValueError(f"{name} was built with num_classes={c} but the labels have "
                         f"{y.shape[1]} columns; build it with num_classes="
                         f"{y.shape[1]} (hashnb.train.method_from_dataset does)")
    d = method.in_dim
    if d is not None and is_vector(dataset):
        x = np.asarray(dataset.x)
        got = int(np.prod(x.shape[1:])) if x.ndim > 1 else 1
        if got != d:
            raise ValueError(f"{name} was built with in_dim={d} but the inputs have {got} "
                             f"features; build it with in_dim={got}")


def _config(method, dataset, split, seed: int, world: int, o: _Options) -> dict:
    return canonical({
        "method": method.method_name or type(method).__name__,
        "hparams": method.hparams(), "init_seed": method.init_seed,
        "dataset": getattr(dataset, "name", None), "data": data_fingerprint(dataset),
        "dataset_size": len(dataset.labels), "protocol": getattr(split, "protocol", None),
        "split_seed": getattr(split, "seed", None), "n_train": len(split.train),
        "n_val": len(split.val), "seed": seed, "epochs": o.epochs if method.trainable else 0,
        "batch_size": o.batch_size, "lr": o.lr, "weight_decay": o.weight_decay,
        "val_every": o.val_every, "select": o.select, "scheduler": o.scheduler,
        "patience": o.patience, "world_size": world,
    })


# ----------------------------------------------------------------------- steps
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


def _context(method, dataset, split, device, epochs, rank, world, seed) -> TrainContext:
    idx = np.asarray(split.train)
    train_y = check_finite(labels(dataset, idx), "training labels (dataset.labels[split.train])")
    train_x = (check_finite(vectors(dataset, idx), "training inputs (dataset.x[split.train])")
               if is_vector(dataset) else None)
    return TrainContext(method=method, dataset=dataset, split=split, device=device,
                        epochs=epochs, train_x=train_x, train_y=train_y, rank=rank,
                        world=world, seed=seed)


def _fit_closed_form(method, ctx, config, folder, t0) -> Run:
    if ctx.train_x is None:
        raise ValueError(f"{config['method']} works on vectors; extract features first "
                         "(hashnb.data.load_features)")
    method.fit_closed_form(ctx.train_x.to(ctx.device), ctx.train_y.to(ctx.device),
                           seed=ctx.seed)
    run = Run(method, ctx.dataset, ctx.split, [], config, folder and folder.path, None,
              time.perf_counter() - t0)
    if folder is not None:
        folder.finish(method, [], None, run.train_seconds)
    return run


def _optimizer(method, o: _Options, amp: bool):
    opt = torch.optim.Adam(method.parameter_groups(o.lr), lr=o.lr, weight_decay=o.weight_decay)
    sched = None
    if o.scheduler == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=o.epochs)
    elif o.scheduler == "step":
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.7)
    amp_dtype = torch.bfloat16 if amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp and amp_dtype == torch.float16)
    return opt, sched, scaler, amp_dtype


def _train_epoch(net, method, ctx, opt, scaler, *, epoch, batch_size, amp, amp_dtype,
                 transform, num_workers, scale) -> dict:
    """One epoch of batches; returns the epoch's record (mean loss and logs, time, samples).

    ``scale`` holds the first batch's loss magnitude, against which divergence is judged.
    """
    method.train()
    start = method.on_epoch_start(epoch, ctx)
    te = time.perf_counter()
    sums: dict[str, float] = {}
    nb = ns = 0  # batches and samples (this rank) this epoch
    for b in epoch_batches(method, ctx, epoch, batch_size=batch_size, transform=transform,
                           num_workers=num_workers):
        batch = b.to(ctx.device)
        with torch.autocast(ctx.device.type, dtype=amp_dtype, enabled=amp):
            out = net(batch["x"])
            loss, logs = method.loss(out, batch)
        value = _checked_loss(loss, epoch, scale, opt)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        method.on_batch_end(out, batch)
        for k, v in (("loss", value), *logs.items()):
            sums[k] = sums.get(k, 0.0) + float(v)
        nb += 1
        ns += len(b.x)
    end = method.on_epoch_end(epoch, ctx)
    rec = {"epoch": epoch + 1, **{k: v / max(nb, 1) for k, v in sums.items()},
           "time": time.perf_counter() - te, "samples": ns * ctx.world}
    for log in (start, end):
        if log is not None:
            rec.update(log.record())
    return rec


def _checked_loss(loss, epoch: int, scale: list, opt) -> float:
    value = float(loss.detach())
    if not scale:
        scale.append(abs(value))
    lr = opt.param_groups[0]["lr"]
    if not math.isfinite(value):
        raise FloatingPointError(f"non-finite loss at epoch {epoch + 1}; lower lr "
                                 f"(now {lr:g}) or check the inputs")
    if abs(value) > _DIVERGED * max(scale[0], 1.0):
        raise FloatingPointError(f"the loss diverged at epoch {epoch + 1}: {value:.3g}, against "
                                 f"{scale[0]:.3g} on the first batch; lower lr (now {lr:g})")
    return value


def _validate(method, dataset, split, device) -> float | None:
    """mAP@all of validation queries against the training items (learned codes if stored)."""
    if split.val is None or len(split.val) == 0:
        return None
    q = encode_dataset(method, dataset, split.val, device=device)
    db = codes_for(method, dataset, split.train, device=device)
    return float(mean_average_precision(q, db, labels(dataset, split.val),
                                        labels(dataset, split.train)))


def _select(st: TrainState, method, rec: dict, epoch: int, o: _Options, ctx) -> None:
    """Validate when due; keep the best epoch's weights (``select="val"``)."""
    if (epoch + 1) % o.val_every and epoch + 1 != o.epochs:
        return
    score = _validate(method, ctx.dataset, ctx.split, ctx.device)
    if score is None:
        return
    rec["val_map"] = score
    if o.select == "val" and score > st.best_score:
        st.best_score, st.best_epoch = score, epoch + 1
        st.best_state = {k: v.detach().cpu().clone() for k, v in method.state_dict().items()}


def _patience_spent(st: TrainState, o: _Options) -> bool:
    """Early stopping: ``patience`` validations in a row without a better score."""
    if o.patience is None:
        return False
    since = [h for h in st.history if "val_map" in h and h["epoch"] > (st.best_epoch or 0)]
    return len(since) >= o.patience


def _ddp(method, device):
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(method, device_ids=[device.index] if device.type == "cuda" else None)


def _finish(method, ctx, st: TrainState, o: _Options, config, folder, seconds,
            distributed) -> Run:
    """The best validation epoch's weights (or the last), the run folder written, a Run."""
    if o.select == "val" and st.best_state is not None:
        method.load_state_dict(st.best_state)
    else:
        st.best_epoch = o.epochs
    if distributed:
        dist.barrier()
    if folder:
        folder.finish(method, st.history, st.best_epoch, seconds)
    method.eval()
    return Run(method, ctx.dataset, ctx.split, st.history, config, folder and folder.path,
               st.best_epoch, seconds)


# ----------------------------------------------------------------------- the loop
def fit(method, dataset, split, *, epochs: int | None = None, batch_size: int | None = None,
        lr: float | None = None, weight_decay: float | None = None, seed: int = 0,
        device=None, amp: bool | None = None, val_every: int | None = None,
        select: str = "val", scheduler: str | None = None, run_dir: str | Path | None = None,
        resume: bool = True, callbacks: Iterable[Callable] = (), progress: bool = True,
        transform: Callable | None = None, num_workers: int = 0,
        checkpoint_every: int = 1, patience: int | None = None) -> Run:
    """Train ``method`` on ``split.train`` of ``dataset`` and return a :class:`Run`.

    Parameters
    ----------
    epochs, batch_size, lr, weight_decay : default to the method's ``default_*`` values.
    seed : seeds python/numpy/torch and the batch order (the initial weights are seeded
        when the method is built: ``create_method(..., seed=)``).
    amp : mixed precision; default on for CUDA (bfloat16 where supported, else float16 with
        a gradient scaler), always off on CPU/MPS.
    val_every : validation mAP@all (val queries vs train database) every this many epochs
        and after the last; default ``max(1, epochs // 10)``.
    select : ``"val"`` keeps the weights of the best validation epoch, ``"last"`` the last.
    patience : stop early after this many validations without a better score (``epochs``
        is then the most; the history shows where it stopped). None: run every epoch.
    scheduler : None, ``"cosine"`` or ``"step"`` (x0.7 every 10 epochs, CSQ's schedule).
    run_dir : folder for config/history/checkpoints. A finished run there is loaded instead
        of trained; a checkpoint there is resumed (``resume=False`` starts over). A config
        mismatch raises ``ValueError`` rather than mixing two runs.
    callbacks : called as ``cb(ctx)`` after each epoch on rank 0 (e.g. :class:`hashnb.widgets.LivePlot`).
    """
    o = _options(method, epochs, batch_size, lr, weight_decay, val_every, select, scheduler,
                 patience)
    _check_inputs(method, dataset, split)
    rank, world, device, distributed = _dist_setup(default_device(device))
    seed_everything(seed)
    amp = (device.type == "cuda") if amp is None else (amp and device.type == "cuda")
    config = _config(method, dataset, split, seed, world, o)
    folder = RunFolder(run_dir, config, main=rank == 0) if run_dir is not None else None
    done = folder.load_finished(method, dataset, split, device) if folder else None
    if done is not None:
        return done
    method.to(device)
    ctx = _context(method, dataset, split, device, o.epochs, rank, world, seed)
    t0 = time.perf_counter()
    if not method.trainable:
        return _fit_closed_form(method, ctx, config, folder, t0)

    method.on_train_start(ctx)
    net = _ddp(method, device) if distributed else method
    opt, sched, scaler, amp_dtype = _optimizer(method, o, amp)
    st = (folder.restore(method, opt, scaler, sched, device) if folder and resume else None) \
        or TrainState()
    if folder:
        folder.write_config()
    ctx.history = st.history
    bar = tqdm(range(st.start, o.epochs), desc=config["method"], initial=st.start,
               total=o.epochs, leave=True, disable=not (progress and rank == 0))
    scale: list = []  # the first batch's loss magnitude (divergence check)
    for epoch in bar:
        ctx.epoch = epoch
        rec = _train_epoch(net, method, ctx, opt, scaler, epoch=epoch,
                           batch_size=max(1, o.batch_size // world), amp=amp,
                           amp_dtype=amp_dtype, transform=transform,
                           num_workers=num_workers, scale=scale)
        if sched is not None:
            sched.step()
        _select(st, method, rec, epoch, o, ctx)
        st.history.append(rec)
        stop = _patience_spent(st, o)
        ctx.last = stop or epoch + 1 == o.epochs
        if rank == 0:
            bar.set_postfix({k: f"{rec[k]:.4f}" for k in ("loss", "val_map") if k in rec})
            for cb in callbacks:
                cb(ctx)
        if folder and ((epoch + 1) % checkpoint_every == 0 or epoch + 1 == o.epochs):
            folder.save_checkpoint(method, opt, scaler, sched, epoch, st)
        if stop:
            break
    bar.close()
    return _finish(method, ctx, st, o, config, folder, time.perf_counter() - t0, distributed)


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
