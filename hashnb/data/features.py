"""Frozen-backbone feature cache: images -> ``(n, d)`` float32 features, computed once.

Most chapters train hash heads on features of a frozen ImageNet backbone (the
"deep features + shallow head" setting of e.g. ITQ/CSQ baselines), so the expensive forward
pass is done once per (backbone, weights, dataset, input size) and cached on disk.

Pipeline per batch of ``batch_size`` uint8 HWC images: to float in [0, 1], channels first,
resize to ``input_size`` x ``input_size`` with ``torch.nn.functional.interpolate``
(``interpolation="bicubic"`` by default, ``antialias=True``; clamped to [0, 1]), normalise with
:func:`hashnb.models.backbone_preprocess` ``mean``/``std``, ``channels_last``, then the backbone
in ``eval()`` under ``torch.inference_mode()``. Images are resized whole (no crop).
On 2 CPU cores ``tf_efficientnet_lite0`` at 128 px with batch 16 runs ~290 img/s
(measured on this project's machine): about 4 minutes for CIFAR-10's 60,000 images.

Cache format: ``cache_dir("features")/<dataset>-<content fingerprint>-<backbone>-<weights>-
<size>px-<interpolation>-v1.npy``, **float32** (exact: a cache hit returns bit-identical
features; CIFAR-10 x 1280-d = 307 MB), plus a ``.json`` sidecar with provenance and timing.
The final file is written to a temporary name and renamed, so an interrupted run never leaves
a corrupt cache. While running, finished chunks of ``chunk_size`` images are saved (also
atomically) in ``<key>.partial/``; a rerun after an interruption resumes from them.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from ..models import backbone_preprocess, create_backbone
from ..utils import cache_dir, default_device, provenance
from .datasets import HashingDataset, load_dataset

__all__ = ["extract_features", "load_features", "feature_cache_path", "prepare_batch",
           "ResizeNormalize", "image_transform"]

_VERSION = 1
_INTERPOLATIONS = ("bilinear", "bicubic")


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(s))


def _weights_id(pretrained: bool) -> str:
    # pretrained=False: the backbone is initialised under torch.manual_seed(0) (see _build)
    return "pretrained" if pretrained else "init-seed0"


def feature_cache_path(dataset: HashingDataset, *, backbone: str = "tf_efficientnet_lite0",
                       input_size: int = 128, pretrained: bool = True,
                       interpolation: str = "bicubic") -> Path:
    """Where :func:`extract_features` caches these features (``.npy``; may not exist yet)."""
    key = (f"{_safe(dataset.name)}-{dataset.content_fingerprint}-{_safe(backbone)}-"
           f"{_weights_id(pretrained)}-{int(input_size)}px-{interpolation}-v{_VERSION}")
    return cache_dir("features") / f"{key}.npy"


class ResizeNormalize:
    """Float images in [0, 1], ``(3, H, W)`` or ``(b, 3, H, W)`` -> resized to
    ``size`` x ``size`` (antialiased; no resize when ``size`` is None or already met,
    optionally clamped back to [0, 1]) and normalised by ``mean`` and ``std`` per channel.

    The one resize-and-normalise of hashnb: frozen features (:func:`prepare_batch`,
    bicubic, clamped), the loop's image inputs and fine-tuning
    (:func:`image_transform`, bilinear). Its ``repr`` is stable: it is part of a cached
    run's key.
    """

    def __init__(self, size: int | None, mean: Sequence[float], std: Sequence[float], *,
                 interpolation: str = "bilinear", clamp: bool = False):
        if interpolation not in _INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {_INTERPOLATIONS}, "
                             f"got {interpolation!r}")
        self.size = None if size is None else int(size)
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.interpolation, self.clamp = interpolation, bool(clamp)

    def __repr__(self):
        return (f"ResizeNormalize(size={self.size}, mean={self.mean}, std={self.std}, "
                f"interpolation={self.interpolation!r}, clamp={self.clamp})")

    def __call__(self, t):
        import torch
        import torch.nn.functional as F

        single = t.ndim == 3
        t = t[None] if single else t
        if self.size is not None and tuple(t.shape[-2:]) != (self.size, self.size):
            t = F.interpolate(t, size=(self.size, self.size), mode=self.interpolation,
                              antialias=True, align_corners=False)
            if self.clamp:
                t = t.clamp_(0.0, 1.0)
        m = torch.tensor(self.mean, dtype=t.dtype, device=t.device).view(1, 3, 1, 1)
        s = torch.tensor(self.std, dtype=t.dtype, device=t.device).view(1, 3, 1, 1)
        t = (t - m) / s
        return t[0] if single else t


def image_transform(backbone: str, size: int | None = None) -> ResizeNormalize:
    """:class:`ResizeNormalize` for a backbone of :mod:`hashnb.models`: its mean and std
    (0.5 when it has none, e.g. a custom module), resized to ``size`` (default: the
    backbone's input size; no resize when it has none)."""
    try:
        pre = backbone_preprocess(backbone)
    except (ValueError, KeyError):
        pre = {}
    return ResizeNormalize(size or pre.get("input_size"), pre.get("mean") or (0.5,) * 3,
                           pre.get("std") or (0.5,) * 3)


def prepare_batch(images, *, input_size: int, mean: Sequence[float], std: Sequence[float],
                  interpolation: str = "bicubic", device=None):
    """uint8 HWC images -> normalised float tensor ``(b, 3, input_size, input_size)``.

    Parameters
    ----------
    images : np.ndarray uint8 ``(b, H, W, 3)`` or list of uint8 ``(H_i, W_i, 3)`` arrays
    input_size : int
        Output side in pixels (the whole image is resized, no crop).
    mean, std : sequence of 3 floats
        Normalisation for inputs scaled to [0, 1].
    interpolation : {"bicubic", "bilinear"}
        ``torch.nn.functional.interpolate`` mode, ``antialias=True``; result clamped to [0, 1].
    device : torch device, optional

    Returns
    -------
    torch.Tensor float32, channels_last memory format.
    """
    import torch

    tf = ResizeNormalize(input_size, mean, std, interpolation=interpolation, clamp=True)
    if isinstance(images, np.ndarray) and images.ndim == 4:
        groups = [images]
    else:
        groups = [np.asarray(im)[None] for im in images]
    out = []
    for g in groups:
        if g.dtype != np.uint8 or g.ndim != 4 or g.shape[-1] != 3:
            raise ValueError(f"images must be uint8 (b, H, W, 3), got {g.dtype} {g.shape}")
        t = torch.from_numpy(np.ascontiguousarray(g)).to(device)
        out.append(tf(t.permute(0, 3, 1, 2).float().div_(255.0)))
    x = torch.cat(out) if len(out) > 1 else out[0]
    return x.contiguous(memory_format=torch.channels_last)


def _build(backbone: str, pretrained: bool, device):
    import torch

    if pretrained:
        model = create_backbone(backbone, pretrained=True)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = create_backbone(backbone, pretrained=False)
    return model.eval().to(device).to(memory_format=torch.channels_last)


def _save_npy_atomic(path: Path, arr: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, arr)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; the cache is meant to be shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load_valid(path: Path, n: int) -> np.ndarray | None:
    try:
        arr = np.load(path, allow_pickle=False)
        if arr.ndim != 2 or arr.shape[0] != n or arr.dtype != np.float32:
            raise ValueError(f"holds {arr.dtype} {arr.shape}, expected float32 ({n}, dim)")
    except (OSError, ValueError, EOFError) as e:
        warnings.warn(f"feature cache file {path} is unreadable ({e}); hashnb computes those "
                      "features again", RuntimeWarning, stacklevel=3)
        return None
    return arr


def extract_features(dataset: HashingDataset, *, backbone: str = "tf_efficientnet_lite0",
                     input_size: int | None = 128, batch_size: int = 16, device=None,
                     cache: bool = True, pretrained: bool = True,
                     interpolation: str = "bicubic", chunk_size: int = 4096,
                     progress: bool = True) -> np.ndarray:
    """Features of every item of ``dataset`` from a frozen backbone, cached on disk.

    Parameters
    ----------
    dataset : HashingDataset
        ``kind="image"`` (in memory or a lazy image list). ``kind="vector"`` datasets
        (digits, already-extracted features) are returned as they are, float32, no backbone.
    backbone : str
        A name registered in :mod:`hashnb.models` with image normalisation
        (``backbone_preprocess(name)["mean"]`` not None).
    input_size : int, optional
        Square side the images are resized to; ``None``: the backbone's native size.
    batch_size : int
        16 is fastest on small CPUs with ``channels_last`` (toolchain.md §6); raise it on GPU.
    device : str or torch.device, optional
        Default :func:`hashnb.utils.default_device` (CUDA, MPS, else CPU).
    cache : bool
        Read/write the ``.npy`` cache (:func:`feature_cache_path`) and resume partial runs.
    pretrained : bool
        Pretrained weights (default). ``False`` uses a fixed ``torch.manual_seed(0)`` init, so
        the features are reproducible and cacheable.
    interpolation : {"bicubic", "bilinear"}
    chunk_size : int
        Images per resumable chunk.
    progress : bool
        Show a ``tqdm.auto`` progress bar.

    Returns
    -------
    np.ndarray
        float32 ``(n, d)``; ``d = create_backbone(backbone).out_dim``.
    """
    if dataset.kind == "vector":
        return np.asarray(dataset.x, dtype=np.float32)
    import torch

    prep = backbone_preprocess(backbone)
    if prep.get("mean") is None or prep.get("std") is None:
        raise ValueError(f"backbone {backbone!r} takes vectors, not images: pick an image "
                         "backbone such as 'tf_efficientnet_lite0' or 'resnet18'")
    size = int(input_size or prep["input_size"])
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {_INTERPOLATIONS}, got {interpolation!r}")
    if batch_size < 1 or chunk_size < 1:
        raise ValueError("batch_size and chunk_size must be >= 1")
    n = len(dataset)
    path = feature_cache_path(dataset, backbone=backbone, input_size=size, pretrained=pretrained,
                              interpolation=interpolation)
    if cache and path.is_file():
        arr = _load_valid(path, n)
        if arr is not None:
            return arr

    dev = default_device(device)
    model = _build(backbone, pretrained, dev)
    partial = path.with_suffix(".partial")
    if cache:
        partial.mkdir(parents=True, exist_ok=True)
        meta_file = partial / "chunks.json"
        want = {"n": n, "chunk_size": int(chunk_size)}
        try:
            same = json.loads(meta_file.read_text()) == want
        except (OSError, ValueError):  # absent or damaged: the chunks cannot be trusted
            same = False
        if not same:
            for f in partial.glob("chunk_*.npy"):
                f.unlink()
            meta_file.write_text(json.dumps(want))

    from tqdm.auto import tqdm

    n_chunks = (n + chunk_size - 1) // chunk_size
    chunks: list[np.ndarray | None] = [None] * n_chunks
    if cache:
        for c in range(n_chunks):
            f = partial / f"chunk_{c:06d}.npy"
            if f.is_file():
                lo, hi = c * chunk_size, min(n, (c + 1) * chunk_size)
                chunks[c] = _load_valid(f, hi - lo)
    done = sum(len(a) for a in chunks if a is not None)
    computed = 0
    t0 = time.perf_counter()
    bar = tqdm(total=n, initial=done, disable=not progress, unit="img",
               desc=f"{backbone} {size}px features of {dataset.name}")
    try:
        with torch.inference_mode():
            for c in range(n_chunks):
                if chunks[c] is not None:
                    continue
                lo, hi = c * chunk_size, min(n, (c + 1) * chunk_size)
                parts = []
                for b in range(lo, hi, batch_size):
                    idx = np.arange(b, min(hi, b + batch_size))
                    x = prepare_batch(dataset.get_images(idx), input_size=size,
                                      mean=prep["mean"], std=prep["std"],
                                      interpolation=interpolation, device=dev)
                    f = model(x)
                    if f.ndim != 2 or f.shape[0] != len(idx):
                        raise ValueError(f"backbone {backbone!r} returned shape {tuple(f.shape)}; "
                                         f"expected ({len(idx)}, out_dim)")
                    parts.append(f.float().cpu().numpy())
                    bar.update(len(idx))
                chunks[c] = np.concatenate(parts).astype(np.float32, copy=False)
                computed += hi - lo
                if cache:
                    _save_npy_atomic(partial / f"chunk_{c:06d}.npy", chunks[c])
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    feats = np.ascontiguousarray(np.concatenate(chunks) if n_chunks else
                                 np.zeros((0, model.out_dim), np.float32))
    if cache:
        _save_npy_atomic(path, feats)
        info = dict(dataset=dataset.name, content_fingerprint=dataset.content_fingerprint,
                    n=n, dim=int(feats.shape[1]), backbone=backbone,
                    weights=_weights_id(pretrained), input_size=size,
                    interpolation=interpolation, batch_size=batch_size, device=str(dev),
                    dtype="float32", computed_images=computed, seconds=round(seconds, 2),
                    images_per_second=round(computed / seconds, 1) if seconds > 0 else None,
                    source=dataset.meta.get("source"))
        try:
            info["provenance"] = provenance()
        except Exception:  # provenance is a nicety; never fail the cache for it
            pass
        path.with_suffix(".json").write_text(json.dumps(info, indent=1, default=str))
        shutil.rmtree(partial, ignore_errors=True)
    return feats


def load_features(name: str | HashingDataset = "cifar10", *,
                  backbone: str = "tf_efficientnet_lite0", input_size: int | None = 128,
                  root=None, download: bool | None = None, batch_size: int = 16, device=None,
                  pretrained: bool = True, cache: bool = True,
                  progress: bool = True) -> HashingDataset:
    """A dataset with its images replaced by frozen-backbone features (``kind="vector"``).

    Parameters
    ----------
    name : str or HashingDataset
        Dataset name for :func:`hashnb.data.load_dataset` (``root``/``download`` are passed
        on) or an already loaded dataset (e.g. from :func:`load_image_list`).
    backbone, input_size, batch_size, device, pretrained, cache, progress
        As in :func:`extract_features`.

    Returns
    -------
    HashingDataset
        Same ``name``, labels and classes as the images (so :func:`make_split` gives the same
        split, from the same cache file), ``x`` float32 ``(n, d)``, ``meta["features"]``
        naming backbone, size and cache file. Vector datasets (digits) come back unchanged.
    """
    ds = name if isinstance(name, HashingDataset) else load_dataset(name, root=root,
                                                                    download=download)
    if ds.kind == "vector":
        return ds
    feats = extract_features(ds, backbone=backbone, input_size=input_size, batch_size=batch_size,
                             device=device, cache=cache, pretrained=pretrained, progress=progress)
    size = int(input_size or backbone_preprocess(backbone)["input_size"])
    meta = {k: v for k, v in ds.meta.items()}
    meta["features"] = dict(
        backbone=backbone, input_size=size, pretrained=pretrained,
        cache_file=str(feature_cache_path(ds, backbone=backbone, input_size=size,
                                          pretrained=pretrained)) if cache else None)
    return HashingDataset(name=ds.name, x=feats, labels=ds.labels, classes=list(ds.classes),
                          kind="vector", meta=meta)
