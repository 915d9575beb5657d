"""MLH (hashnb.losses.mlh, hashnb.methods.mlh): each loss against a slow reference, the
switches (branches, stop_grad, experts), codes and the expert-usage history."""
import math

import numpy as np
import pytest
import torch

from hashnb.centers import center_report, gilbert_varshamov_distance, hadamard_centers
from hashnb.losses.mlh import center_softmax_bce_loss, mlh_loss, mutual_loss
from hashnb.losses.pairwise import dpsh_loss
from hashnb.methods import create_method
from hashnb.analysis import evaluate_branches
from hashnb.methods.mlh import gv_centers


def _data(n=12, k=16, c=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.tanh(torch.randn(n, k, generator=g))
    y = torch.nn.functional.one_hot(torch.randint(0, c, (n,), generator=g), c).float()
    centers = torch.from_numpy(hadamard_centers(c, k))
    return u, y, centers


def test_center_loss_matches_slow_loop():
    u, y, centers = _data()
    y[0, 1] = 1.0  # one multi-label row
    loss, logs = center_softmax_bce_loss(u, y, centers, quant_weight=0.0)
    n, c = y.shape
    total = 0.0
    for j in range(n):
        cos = [float(u[j] @ centers[i]) / (float(u[j].norm()) * math.sqrt(16)) for i in range(c)]
        ex = [math.exp(4.0 * v) for v in cos]  # sqrt(K) = 4
        for i in range(c):
            p = ex[i] / sum(ex)
            yji = float(y[j, i])
            total += yji * math.log(p) + (1 - yji) * math.log(1 - p)
    assert float(loss) == pytest.approx(-total / (n * c), rel=1e-5)
    assert logs["center"] == pytest.approx(float(loss), rel=1e-6)


def test_center_loss_quantization_and_stability():
    u, y, centers = _data()
    l0, _ = center_softmax_bce_loss(u, y, centers, quant_weight=0.0)
    l1, logs = center_softmax_bce_loss(u, y, centers, quant_weight=0.5)
    assert float(l1 - l0) == pytest.approx(0.5 * float(((u.abs() - 1) ** 2).mean()), rel=1e-5)
    # a code on its center with a huge scale: P -> 1, finite loss and gradient
    u2 = centers[y.argmax(1)].clone().requires_grad_(True)
    loss, _ = center_softmax_bce_loss(u2, y, centers, scale=1e3, quant_weight=0.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(u2.grad).all()
    assert float(loss.detach()) < 1e-6
    with pytest.raises(ValueError, match="multi-hot"):
        center_softmax_bce_loss(u, y[:, :3], centers)


def test_mutual_loss_values_and_stop_grad():
    u, _, _ = _data()
    assert float(mutual_loss(u, u)[0]) == pytest.approx(0.0, abs=1e-6)
    assert float(mutual_loss(u, -u)[0]) == pytest.approx(2.0, abs=1e-6)
    assert mutual_loss(u, -u)[1]["agree"] == 0.0
    for stop in (False, True):
        a = u.clone().requires_grad_(True)
        b = torch.tanh(torch.randn_like(u)).requires_grad_(True)
        mutual_loss(a, b, stop_grad=stop)[0].backward()
        assert a.grad.abs().sum() > 0
        if stop:
            assert b.grad is None, "stop_grad: the pairwise side gets no gradient"
        else:
            assert b.grad.abs().sum() > 0


def test_total_is_weighted_sum_and_branches_drop_terms():
    u, y, centers = _data()
    v = torch.tanh(torch.randn_like(u))
    total, logs = mlh_loss(u, v, y, centers, lambdas=(4, 1, 1), n_train=100)
    lc, _ = center_softmax_bce_loss(u, y, centers)
    lp, _ = dpsh_loss(v, y, n_train=100)  # chapter 2's loss, reused
    lm, _ = mutual_loss(u, v)
    assert float(total) == pytest.approx(float(4 * lc + lp + lm), rel=1e-6)
    only_c, logs_c = mlh_loss(u, None, y, centers)
    assert float(only_c) == pytest.approx(float(4 * lc), rel=1e-6)
    assert "L_M" not in logs_c and "L_P" not in logs_c
    only_p, _ = mlh_loss(None, v, y, None, n_train=100)
    assert float(only_p) == pytest.approx(float(lp), rel=1e-6)
    with pytest.raises(ValueError):
        mlh_loss(None, None, y, centers)


@pytest.mark.parametrize("bits", [8, 16, 32])
def test_gv_centers_reach_the_bound(bits):
    c = gv_centers(10, bits)
    assert c.shape == (10, bits) and np.isin(c, (-1, 1)).all()
    assert center_report(c)["min"] >= gilbert_varshamov_distance(10, bits)


def _mlh(**kw):
    torch.manual_seed(0)
    kw.setdefault("in_dim", 20)
    kw.setdefault("backbone_kwargs", {"hidden": (32,)})
    kw.setdefault("expert_dim", 24)
    return create_method("mlh", bits=16, num_classes=5, **kw)


@pytest.mark.parametrize("experts,top_k", [(0, 2), (1, 2), (4, 2), (4, 1)])
def test_forward_shapes_and_batch_independent_codes(experts, top_k):
    m = _mlh(experts=experts, top_k=top_k)
    x = torch.randn(40, 20)
    out = m(x)
    center, pair = out.branches["center"], out.branches["pairwise"]
    assert out.u.shape == center.u.shape == pair.u.shape == (40, 16)
    torch.testing.assert_close(out.u, center.u)  # retrieval = center branch
    if experts:
        assert center.gates.shape == (40, experts)
        assert torch.equal((pair.gates > 0).sum(1), torch.full((40,), min(top_k, experts)))
    else:
        assert center.gates is None and pair.gates is None
    m.train()  # encode must switch to eval itself
    one = torch.cat([m.encode(x[i:i + 1]) for i in range(40)])
    torch.testing.assert_close(one, m.encode(x, batch_size=256))
    assert set(m.encode(x, branch="pairwise").unique().tolist()) <= {-1.0, 1.0}


def test_stop_grad_switch_controls_pairwise_head_gradient():
    x, y = torch.randn(16, 20), torch.nn.functional.one_hot(torch.arange(16) % 5, 5).float()
    for stop in (False, True):
        m = _mlh(experts=0, lambda_pair=0.0, stop_grad=stop)
        m.n_train = 16
        loss, _ = m.loss(m(x), {"x": x, "y": y, "idx": torch.arange(16)})
        loss.backward()
        g = m.pair_head.fc.weight.grad
        if stop:
            assert g is None or torch.count_nonzero(g) == 0
        else:
            assert g.abs().sum() > 0


def test_branch_switches_and_errors():
    x = torch.randn(8, 20)
    c = _mlh(branches="center")
    assert c.active == ("center",) and set(c(x).branches) == {"center"}
    p = _mlh(branches="pairwise")
    assert p.encode_branch == "pairwise" and set(p(x).branches) == {"pairwise"}
    torch.testing.assert_close(p(x).u, p(x).branches["pairwise"].u)
    with pytest.raises(ValueError, match="branches"):
        _mlh(branches="neither")
    with pytest.raises(ValueError, match="encode_branch"):
        _mlh(branches="center", encode_branch="pairwise")
    with pytest.raises(ValueError, match="unknown argument"):
        _mlh(lambdas=(4, 1, 1))
    with pytest.raises(ValueError, match="no expert module"):
        _mlh(experts=0).gate_weights(x)


def test_expert_activation_switch():
    """expert_activation=None makes the expert layer affine: with one expert the mixture is
    then exactly W x + b (checked on x, 2x and 0), which ReLU experts are not."""
    x = torch.randn(30, 20)
    for act in ("relu", None):
        m = _mlh(experts=1, expert_activation=act)
        assert m.moe.activation == act and m.hparams()["expert_activation"] == act
        f = m.model.backbone(m.input_norm(x))
        f0 = torch.zeros_like(f)
        h = lambda v: m.moe(v, "center")[0]
        affine = torch.allclose(h(2 * f) - h(f0), 2 * (h(f) - h(f0)), atol=1e-5)
        assert affine == (act is None)
        assert bool((h(f) < 0).any()) == (act is None)  # ReLU outputs are never negative
    with pytest.raises(ValueError, match="activation"):
        _mlh(experts=2, expert_activation="gelu")


def test_training_records_expert_usage_and_both_branches_evaluate():
    from hashnb.data import load_dataset, make_split
    from hashnb.train import run_method

    ds = load_dataset("digits")
    split = make_split(ds, seed=0)
    run = run_method("mlh", ds, split, bits=16, seed=0, epochs=3, cache=False, progress=False,
                     method_kwargs={"experts": 4, "top_k": 2, "expert_dim": 32,
                                    "backbone_kwargs": {"hidden": (64,)}})
    h = run.history[-1]
    for b in ("center", "pair"):
        usage = [h[f"usage_{b}_e{e}"] for e in range(4)]
        assert sum(usage) == pytest.approx(1.0, abs=1e-5)  # mean routing weights sum to 1
    assert {"L_C", "L_P", "L_M", "balance"} <= set(h)
    res = evaluate_branches(run)
    assert set(res) == {"center", "pairwise"}
    assert all(0.0 <= r["map"] <= 1.0 for r in res.values())
    assert res["center"]["map"] == pytest.approx(run.evaluate()["map"])
