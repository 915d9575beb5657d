"""OrthoHash (Hoe et al., NeurIPS 2021, arXiv 2109.14449): loss values by hand, gradients,
the BatchNorm hash layer's batch independence at test time, and a small end-to-end run."""
import math

import numpy as np
import pytest
import torch

from hashnb.centers import bernoulli_centers, hadamard_centers, max_distance_centers
from hashnb.losses import orthohash_loss
from hashnb.losses.orthohash import orthohash_logits
from hashnb.methods import create_method, list_methods
from hashnb.utils import binarize

T2 = torch.tensor([[1.0, 1.0], [1.0, -1.0]])  # two 2-bit targets


def _rand_problem(n=12, c=5, k=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, k, generator=g)
    y = torch.nn.functional.one_hot(torch.randint(0, c, (n,), generator=g), c).float()
    targets = torch.from_numpy(bernoulli_centers(c, k, seed=seed))
    return z, y, targets


# --------------------------------------------------------------------------- loss
def test_loss_shapes_and_logs():
    z, y, t = _rand_problem()
    logits = orthohash_logits(z, y, t, s=8, m=0.2)
    assert logits.shape == (12, 5) and logits.dtype == torch.float32
    loss, logs = orthohash_loss(z, y, t, s=8, m=0.2, quant_weight=0.1)
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert set(logs) == {"ce", "quant", "acc"} and all(isinstance(v, float) for v in logs.values())
    assert loss.item() == pytest.approx(logs["ce"] + 0.1 * logs["quant"], rel=1e-6)
    with pytest.raises(ValueError, match="multi-hot"):
        orthohash_logits(z, y[:, :3], t)
    with pytest.raises(ValueError, match="share K"):
        orthohash_logits(z[:, :8], y, t)


def test_known_values_by_hand():
    # v = (1, 0): cosine 1/sqrt2 with both targets; with s*m = 1 the true logit is 1 lower
    z, y = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]])
    loss, _ = orthohash_loss(z, y, T2, s=2.0, m=0.5)
    assert loss.item() == pytest.approx(math.log(1 + math.e), abs=1e-6)
    # v = (1, 1): cosines 1 and 0 -> logits s(1 - m) = 3 and 0
    loss, logs = orthohash_loss(torch.tensor([[1.0, 1.0]]), y, T2, s=4.0, m=0.25)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-3)), abs=1e-6)
    assert logs["acc"] == 1.0
    # multi-label: target distribution (1/2, 1/2), margin on both -> equal logits -> log 2
    loss, _ = orthohash_loss(z, torch.tensor([[1.0, 1.0]]), T2, s=3.0, m=0.4)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-6)
    # arc margin: s cos(theta + m) for the true class; theta = pi/4 for v = (1, 0)
    logits = orthohash_logits(z, y, T2, s=2.0, m=0.3, margin_type="arc")
    expect = [2 * math.cos(math.pi / 4 + 0.3), 2 * math.cos(math.pi / 4)]
    np.testing.assert_allclose(logits.numpy()[0], expect, atol=1e-5)


def test_quantization_terms_by_hand():
    z, y = torch.tensor([[2.0, -1.0]]), torch.tensor([[1.0, 0.0]])
    ce, _ = orthohash_loss(z, y, T2, s=1.0, m=0.0)
    for kind, q in [("cs", 1 - 3 / math.sqrt(10)), ("l1", 0.5), ("l2", 0.5)]:
        loss, logs = orthohash_loss(z, y, T2, s=1.0, m=0.0, quant_weight=2.0, quant_type=kind)
        assert logs["quant"] == pytest.approx(q, abs=1e-6)
        assert loss.item() == pytest.approx(ce.item() + 2 * q, abs=1e-6)
    with pytest.raises(ValueError, match="quant_type"):
        orthohash_loss(z, y, T2, quant_type="l3")


def test_gradients_match_finite_differences():
    z, y, t = _rand_problem(n=4, c=3, k=6)
    y[0, 1] = 1.0  # one multi-label row
    z = z.double().requires_grad_()
    for mt in ("cos", "arc"):
        assert torch.autograd.gradcheck(
            lambda v: orthohash_loss(v, y.double(), t.double(), s=5.0, m=0.3, margin_type=mt,
                                     quant_weight=0.5, quant_type="l2")[0], (z,))
    loss, _ = orthohash_loss(z, y, t)
    loss.backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_margin_increases_the_loss():
    z, y, t = _rand_problem(n=64)
    losses = [orthohash_loss(z, y, t, s=8, m=m)[0].item() for m in (0.0, 0.2, 0.5)]
    assert losses[0] < losses[1] < losses[2]


def test_codes_aligned_with_their_target_cost_less():
    _, y, t = _rand_problem(n=64, c=5, k=32)
    cls = y.argmax(1)
    aligned = 3 * t[cls]
    misaligned = 3 * t[(cls + 1) % 5]
    la = orthohash_loss(aligned, y, t, s=8, m=0.2)[0].item()
    lm = orthohash_loss(misaligned, y, t, s=8, m=0.2)[0].item()
    assert la < lm
    # and the loss does not depend on the length of v (cosine), only its direction
    assert orthohash_loss(0.1 * aligned, y, t)[0].item() == pytest.approx(
        orthohash_loss(aligned, y, t)[0].item(), rel=1e-5)


def test_items_without_labels_are_a_clear_error():
    z, y, t = _rand_problem(n=4)
    y[2] = 0
    with pytest.raises(ValueError, match="no label"):
        orthohash_loss(z, y, t)


# --------------------------------------------------------------------------- method
def _method(**kw):
    kw.setdefault("bits", 16)
    kw.setdefault("num_classes", 5)
    kw.setdefault("in_dim", 8)
    return create_method("orthohash", **kw)


def test_registered_with_batchnorm_hash_layer_and_targets():
    assert "orthohash" in list_methods()
    m = _method()
    assert isinstance(m.model.head.bn, torch.nn.BatchNorm1d)
    np.testing.assert_array_equal(m.centers.numpy(), bernoulli_centers(5, 16, seed=0))
    np.testing.assert_array_equal(_method(centers_kind="hadamard").centers.numpy(),
                                  hadamard_centers(5, 16))
    md = _method(centers_kind="max-distance", center_seed=3)
    np.testing.assert_array_equal(md.centers.numpy(), max_distance_centers(5, 16, seed=3))
    custom = -hadamard_centers(5, 16)
    m2 = _method(centers=custom)
    np.testing.assert_array_equal(m2.centers.numpy(), custom)
    assert m2.centers_kind == "custom"
    assert m2.hparams()["centers"] == custom.tolist()  # the array itself is in the run key
    hp = m.hparams()
    assert hp["head_batchnorm"] is True and hp["scale"] == "sqrt" and hp["margin"] == 0.2
    assert m.s == pytest.approx(4.0)  # sqrt(16), the paper's scale
    assert _method(bits=64).s == pytest.approx(8.0) and _method(scale=8).s == 8.0
    assert _method(scale="adacos").s == pytest.approx(math.sqrt(2) * math.log(4))
    assert m.center_report()["classes"] == 5


def test_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match="unknown center kind"):
        _method(centers_kind="orthogonal")
    with pytest.raises(ValueError, match="shape"):
        _method(centers=np.ones((4, 16)))
    with pytest.raises(ValueError, match="scale"):
        _method(scale="huge")
    with pytest.raises(ValueError, match="margin_type"):
        _method(margin_type="sphere")
    with pytest.raises(ValueError, match="2K"):
        _method(centers_kind="hadamard", num_classes=40)


def test_forward_outputs_and_loss():
    torch.manual_seed(0)
    m = _method()
    x = torch.randn(32, 8)
    out = m(x)
    assert out.z.shape == (32, 16) and out.u.shape == (32, 16)
    assert (out["u"].abs() <= 1).all()
    # training-mode BatchNorm: every bit has zero mean over the batch (bit balance)
    assert out["z"].mean(0).abs().max() < 1e-5
    y = torch.nn.functional.one_hot(torch.arange(32) % 5, 5).float()
    loss, logs = m.loss(out, {"x": x, "y": y, "idx": torch.arange(32)})
    loss.backward()
    assert m.model.head.fc.weight.grad.abs().sum() > 0
    # a training batch of one item does not crash BatchNorm
    assert m(torch.randn(1, 8))["z"].shape == (1, 16) and m.training


def test_eval_codes_do_not_depend_on_the_batch():
    torch.manual_seed(0)
    m = _method()
    m.train()
    for _ in range(5):  # move BatchNorm's running statistics away from their start
        m(torch.randn(64, 8) * 3 + 1)
    x = torch.randn(120, 8) * 3 + 1
    one = m.encode(x, batch_size=1)
    big = m.encode(x, batch_size=256)
    torch.testing.assert_close(one, big)
    perm = torch.randperm(120)
    torch.testing.assert_close(m.encode(x[perm], batch_size=256), big[perm])
    # codes are the sign of the BatchNorm'ed output
    m.eval()
    with torch.no_grad():
        torch.testing.assert_close(big, binarize(m(x)["z"]))
    assert set(torch.unique(big).tolist()) == {-1.0, 1.0}


def test_end_to_end_digits_beats_lsh():
    from hashnb.data import load_dataset, make_split
    from hashnb.train import fit, method_from_dataset

    ds = load_dataset("digits")
    split = make_split(ds, seed=0, cache=False)
    torch.manual_seed(0)
    run = fit(method_from_dataset("orthohash", ds, bits=16), ds, split, epochs=10,
              progress=False)
    lsh = fit(method_from_dataset("lsh", ds, bits=16), ds, split, progress=False)
    res, base = run.evaluate()["map"], lsh.evaluate()["map"]
    assert res > base + 0.25, (res, base)
    assert any("val_map" in h for h in run.history)
    assert run.history[-1]["acc"] > 0.8  # the cosine classifier fits the training set
