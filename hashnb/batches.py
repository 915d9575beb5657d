"""Batch sources for the training loop, and encoding a dataset's items.

One place decides how items reach a method: vectors (features, digits) are sliced from
memory; images go through a ``DataLoader`` over :class:`hashnb.data.TorchImageDataset`
(resized and normalised per item), or through ``dataset.batches(...)`` when the dataset
feeds itself (the GPU-resident images of :mod:`hashnb.paper`). Every source yields the same
:class:`Batch`, so the loop has one shape to handle.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from hashnb.data import TorchImageDataset, image_transform

__all__ = ["Batch", "epoch_batches", "encode_dataset", "codes_for", "default_image_transform",
           "is_vector", "vectors", "labels"]


def is_vector(dataset) -> bool:
    return getattr(dataset, "kind", "vector") == "vector"


def vectors(dataset, idx) -> torch.Tensor:
    """float32 inputs of ``dataset[idx]`` (vector data)."""
    return torch.as_tensor(np.asarray(dataset.x[idx]), dtype=torch.float32)


def labels(dataset, idx) -> torch.Tensor:
    """float32 multi-hot labels of ``dataset[idx]``."""
    return torch.as_tensor(np.asarray(dataset.labels[idx]), dtype=torch.float32)


@dataclass
class Batch:
    """One training batch: inputs, labels (n, C), positions in ``split.train`` (-1 outside
    it) and, when the method chose the items (``epoch_items``), their dataset indices."""
    x: torch.Tensor
    y: torch.Tensor
    idx: torch.Tensor
    index: torch.Tensor | None = None

    def to(self, device) -> dict:
        """The dict the methods' ``loss(out, batch)`` reads, on ``device``."""
        out = {"x": self.x.to(device, non_blocking=True), "y": self.y.to(device),
               "idx": self.idx.to(device)}
        if self.index is not None:
            out["index"] = self.index.to(device)
        return out


def default_image_transform(method, dataset=None) -> Callable:
    """Float CHW image in [0, 1] -> resized and normalised for the method's backbone
    (:func:`hashnb.data.image_transform` with the backbone's mean, std and input size)."""
    return image_transform(method.backbone_name or "")


def _image_batches(dataset, idx, *, batch_size, shuffle, transform, seed, rank, world,
                   num_workers=0, epoch=0) -> Iterator:
    """(x, y, dataset index) batches of images ``idx``: the dataset's own ``batches`` when
    it feeds itself (data already on the device), else a seeded ``DataLoader``."""
    own = getattr(dataset, "batches", None)
    if own is not None:
        return own(idx, batch_size=batch_size, shuffle=shuffle, seed=seed, epoch=epoch,
                   rank=rank, world=world)
    tds = TorchImageDataset(dataset, idx, transform)
    sampler = None
    if world > 1:
        sampler = torch.utils.data.distributed.DistributedSampler(
            tds, num_replicas=world, rank=rank, shuffle=shuffle, seed=seed)
        sampler.set_epoch(epoch)
    g = torch.Generator().manual_seed(seed + epoch)
    return iter(torch.utils.data.DataLoader(tds, batch_size=batch_size,
                                            shuffle=shuffle and sampler is None,
                                            sampler=sampler, generator=g,
                                            num_workers=num_workers, drop_last=False))


def epoch_batches(method, ctx, epoch: int, *, batch_size: int, transform=None,
                  num_workers: int = 0) -> Iterator[Batch]:
    """The batches of one epoch on this rank.

    The method's ``epoch_items`` (ADSH/MAH: the sampled subset, in order) when it gives
    them, else a shuffled pass over ``split.train`` seeded by ``ctx.seed`` and ``epoch``.
    """
    dataset, rank, world, seed = ctx.dataset, ctx.rank, ctx.world, ctx.seed
    train_idx = np.asarray(ctx.split.train)
    train_pos = torch.full((len(dataset.labels),), -1, dtype=torch.long)
    train_pos[torch.as_tensor(train_idx)] = torch.arange(len(train_idx))
    items = method.epoch_items(epoch, ctx)
    tf = transform or (None if is_vector(dataset) else default_image_transform(method, dataset))
    if items is not None:
        items = torch.as_tensor(np.asarray(items), dtype=torch.long)[rank::world]
        if is_vector(dataset):
            for jb in items.split(batch_size):
                yield Batch(vectors(dataset, jb.numpy()), labels(dataset, jb.numpy()),
                            train_pos[jb], jb)
        else:
            for xb, yb, jb in _image_batches(dataset, items.numpy(), batch_size=batch_size,
                                             shuffle=False, transform=tf, seed=seed, rank=0,
                                             world=1, num_workers=num_workers, epoch=epoch):
                yield Batch(xb, yb, train_pos[jb], jb)
    elif ctx.train_x is not None:
        g = torch.Generator().manual_seed(seed * 100003 + epoch)
        perm = torch.randperm(len(train_idx), generator=g)[rank::world]
        for b in perm.split(batch_size):
            yield Batch(ctx.train_x[b], ctx.train_y[b], b)
    else:  # the loader yields dataset indices; "idx" is the position in split.train
        for xb, yb, jb in _image_batches(dataset, train_idx, batch_size=batch_size,
                                         shuffle=True, transform=tf, seed=seed, rank=rank,
                                         world=world, num_workers=num_workers, epoch=epoch):
            yield Batch(xb, yb, train_pos[jb])


@torch.no_grad()
def encode_dataset(method, dataset, indices, *, batch_size: int = 1024, device=None,
                   transform=None, **encode_kw) -> torch.Tensor:
    """Codes (len(indices), K) float {-1, +1} on CPU for ``dataset[indices]`` by forward
    passes; ``encode_kw`` go to ``method.encode`` (e.g. MLH's ``branch``)."""
    indices = np.asarray(indices)
    if is_vector(dataset) or not method.trainable:
        return method.encode(vectors(dataset, indices), batch_size=batch_size, device=device,
                             **encode_kw)
    transform = transform or default_image_transform(method, dataset)
    if getattr(dataset, "batches", None) is None:  # per-item CPU loading: small batches
        batch_size = min(batch_size, 256)
    loader = _image_batches(dataset, indices, batch_size=batch_size, shuffle=False,
                            transform=transform, seed=0, rank=0, world=1)
    return torch.cat([method.encode(xb, batch_size=len(xb), device=device, **encode_kw)
                      for xb, _, _ in loader])


def codes_for(method, dataset, indices, *, device=None) -> torch.Tensor:
    """Codes of ``dataset[indices]``: the method's learned codes where it stores them
    (``stored_codes``: ADSH and MAH learn the database codes directly; rows of zeros for
    the items they do not hold), else forward passes (:func:`encode_dataset`)."""
    indices = np.asarray(indices)
    stored = method.stored_codes(indices)
    if stored is None:
        return encode_dataset(method, dataset, indices, device=device)
    stored = stored.float().cpu()
    missing = (stored == 0).all(1).numpy()
    if missing.any():
        stored[torch.as_tensor(missing)] = encode_dataset(method, dataset, indices[missing],
                                                          device=device)
    return stored
