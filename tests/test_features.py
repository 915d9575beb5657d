"""Tests for the frozen-feature cache (hashnb.data.features) with a tiny test backbone."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hashnb.data import (
    HashingDataset, extract_features, feature_cache_path, load_dataset, load_features,
    load_image_list, make_split, prepare_batch,
)
from hashnb.data import features as fmod
from hashnb.models import list_backbones, register_backbone

TINY = "_test_tiny_conv"
MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.5)
CALLS = {"forward": 0, "rows": 0, "fail_after": None}


class _TinyConv(nn.Module):
    """Conv3x3(3->4) + ReLU + global average pool: (n, 3, H, W) -> (n, 4)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.out_dim = 4

    def forward(self, x):
        if CALLS["fail_after"] is not None and CALLS["forward"] >= CALLS["fail_after"]:
            raise KeyboardInterrupt("simulated interruption")
        CALLS["forward"] += 1
        CALLS["rows"] += len(x)
        return F.relu(self.conv(x)).mean((2, 3))


if TINY not in list_backbones():
    @register_backbone(TINY, mean=MEAN, std=STD, input_size=8)
    def _tiny(*, pretrained=False):
        return _TinyConv()


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("HASHNB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HASHNB_DATA", raising=False)
    monkeypatch.setenv("HASHNB_DOWNLOAD", "0")
    CALLS.update(forward=0, rows=0, fail_after=None)


def _tiny_images(n=10, hw=(12, 10), seed=0, name="tiny"):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, hw[0], hw[1], 3), dtype=np.uint8)
    return HashingDataset(name=name, x=x, labels=np.arange(n) % 3, classes=["a", "b", "c"],
                          kind="image")


def _oracle(ds, size):
    """The whole dataset in one batch, by hand."""
    torch.manual_seed(0)
    model = _TinyConv().eval()
    x = torch.from_numpy(ds.x).permute(0, 3, 1, 2).float() / 255
    x = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True).clamp(0, 1)
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        return model(x).numpy()


def kw(**extra):
    return dict(backbone=TINY, pretrained=False, progress=False, **extra)


def test_features_shape_dtype_and_oracle():
    ds = _tiny_images()
    f = extract_features(ds, **kw(input_size=16, batch_size=3, chunk_size=4))
    assert f.shape == (10, 4) and f.dtype == np.float32
    CALLS["forward"] = 0
    ref = _oracle(ds, 16)
    np.testing.assert_allclose(f, ref, rtol=1e-5, atol=1e-6)  # batching does not matter


def test_cache_hit_does_not_recompute():
    ds = _tiny_images()
    f1 = extract_features(ds, **kw(input_size=16))
    assert CALLS["forward"] > 0
    path = feature_cache_path(ds, backbone=TINY, input_size=16, pretrained=False)
    assert path.is_file() and path.with_suffix(".json").is_file()
    assert not list(path.parent.glob("*.tmp")) and not path.with_suffix(".partial").exists()
    CALLS["forward"] = 0
    f2 = extract_features(_tiny_images(), **kw(input_size=16))  # a fresh, equal dataset object
    assert CALLS["forward"] == 0
    np.testing.assert_array_equal(f1, f2)
    f3 = extract_features(ds, **kw(input_size=16, cache=False))  # recomputed: same numbers
    assert CALLS["forward"] > 0
    np.testing.assert_array_equal(f1, f3)


def test_different_input_size_or_content_is_a_different_entry():
    ds = _tiny_images()
    f16 = extract_features(ds, **kw(input_size=16))
    n16 = CALLS["forward"]
    f8 = extract_features(ds, **kw(input_size=None))  # the backbone's native size: 8
    assert CALLS["forward"] > n16
    assert not np.allclose(f16, f8)
    files = sorted(p.name for p in fmod.cache_dir("features").glob("*.npy"))
    assert len(files) == 2 and any("16px" in f for f in files) and any("8px" in f for f in files)
    # same name and labels, other pixels -> other content fingerprint -> recomputed
    other = _tiny_images(seed=1)
    assert other.fingerprint == ds.fingerprint and other.content_fingerprint != ds.content_fingerprint
    n = CALLS["forward"]
    f_other = extract_features(other, **kw(input_size=16))
    assert CALLS["forward"] > n and not np.allclose(f_other, f16)


def test_resume_after_interruption():
    ds = _tiny_images(n=10)
    CALLS["fail_after"] = 3  # batch 2, chunk 4: chunk 0 (2 batches) is saved, chunk 1 dies
    with pytest.raises(KeyboardInterrupt):
        extract_features(ds, **kw(input_size=16, batch_size=2, chunk_size=4))
    path = feature_cache_path(ds, backbone=TINY, input_size=16, pretrained=False)
    assert not path.exists()  # never a half-written cache
    partial = path.with_suffix(".partial")
    assert sorted(p.name for p in partial.glob("chunk_*.npy")) == ["chunk_000000.npy"]
    CALLS.update(forward=0, rows=0, fail_after=None)
    f = extract_features(ds, **kw(input_size=16, batch_size=2, chunk_size=4))
    assert CALLS["rows"] == 6  # only the 6 images after the saved chunk
    assert path.is_file() and not partial.exists()
    np.testing.assert_allclose(f, _oracle(ds, 16), rtol=1e-5, atol=1e-6)


def test_corrupt_cache_is_recomputed():
    ds = _tiny_images()
    f1 = extract_features(ds, **kw(input_size=16))
    path = feature_cache_path(ds, backbone=TINY, input_size=16, pretrained=False)
    np.save(path, np.zeros((3, 4), np.float32))  # wrong number of rows
    CALLS["forward"] = 0
    with pytest.warns(RuntimeWarning, match=path.name):
        f2 = extract_features(ds, **kw(input_size=16))
    assert CALLS["forward"] > 0
    np.testing.assert_array_equal(f1, f2)
    path.write_bytes(path.read_bytes()[:100])  # truncated
    with pytest.warns(RuntimeWarning, match="computes those features again"):
        np.testing.assert_array_equal(extract_features(ds, **kw(input_size=16)), f1)


def test_vector_dataset_returned_as_is(monkeypatch):
    monkeypatch.setattr(fmod, "_build", lambda *a, **k: pytest.fail("built a backbone"))
    ds = load_dataset("digits")
    f = extract_features(ds)
    np.testing.assert_array_equal(f, ds.x)
    assert load_features("digits").kind == "vector"


def test_vector_backbone_rejected_for_images():
    with pytest.raises(ValueError, match="takes vectors"):
        extract_features(_tiny_images(), backbone="identity", progress=False)


def test_prepare_batch():
    imgs = np.full((2, 5, 7, 3), 51, np.uint8)  # constant 0.2 stays 0.2 after any resize
    x = prepare_batch(imgs, input_size=9, mean=MEAN, std=STD)
    assert x.shape == (2, 3, 9, 9) and x.dtype == torch.float32
    assert x.is_contiguous(memory_format=torch.channels_last)
    want = (0.2 - np.array(MEAN)) / np.array(STD)
    np.testing.assert_allclose(x[0, :, 4, 4].numpy(), want, rtol=1e-5)
    np.testing.assert_allclose(x.amax((0, 2, 3)).numpy(), x.amin((0, 2, 3)).numpy(), rtol=1e-5)
    # no resize at the native size: exact normalisation
    rnd = np.random.default_rng(0).integers(0, 256, (1, 4, 4, 3), dtype=np.uint8)
    y = prepare_batch(rnd, input_size=4, mean=MEAN, std=STD)
    ref = (rnd[0].transpose(2, 0, 1) / 255.0 - np.array(MEAN)[:, None, None]) / \
        np.array(STD)[:, None, None]
    np.testing.assert_allclose(y[0].numpy(), ref, rtol=1e-5, atol=1e-6)
    # a list of differently sized images
    z = prepare_batch([rnd[0], np.zeros((6, 2, 3), np.uint8)], input_size=4, mean=MEAN, std=STD)
    assert z.shape == (2, 3, 4, 4)
    np.testing.assert_allclose(z[0].numpy(), y[0].numpy())
    with pytest.raises(ValueError, match="uint8"):
        prepare_batch(rnd.astype(np.float32), input_size=4, mean=MEAN, std=STD)
    with pytest.raises(ValueError, match="interpolation"):
        prepare_batch(rnd, input_size=4, mean=MEAN, std=STD, interpolation="nearest")


def test_lazy_image_list_features(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    lines = []
    for i, hw in enumerate([(6, 9), (10, 4), (8, 8)]):
        Image.fromarray(rng.integers(0, 256, (*hw, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        lines.append(f"{i}.png {i % 2} {1 - i % 2}")
    (tmp_path / "list.txt").write_text("\n".join(lines))
    ds = load_image_list(tmp_path / "list.txt")
    f = extract_features(ds, **kw(input_size=8, batch_size=2))
    assert f.shape == (3, 4) and f.dtype == np.float32
    single = [extract_features(ds.subset([i], name=f"one{i}"), **kw(input_size=8))[0]
              for i in range(3)]
    np.testing.assert_allclose(f, np.stack(single), rtol=1e-5, atol=1e-6)


def test_load_features_keeps_labels_and_split():
    ds = _tiny_images(n=12, name="tinyset")
    fd = load_features(ds, **kw(input_size=16))
    assert fd.kind == "vector" and fd.name == ds.name and fd.x.shape == (12, 4)
    np.testing.assert_array_equal(fd.labels, ds.labels)
    assert fd.meta["features"]["backbone"] == TINY and fd.meta["features"]["input_size"] == 16
    a = make_split(ds, "random", n_query=3, n_train=5, seed=0)
    b = make_split(fd, "random", n_query=3, n_train=5, seed=0)
    np.testing.assert_array_equal(a.query, b.query)
    np.testing.assert_array_equal(a.train, b.train)
