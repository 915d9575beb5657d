"""Pairwise losses (DPSH, HashNet) and their methods: values by hand, stability, the DPSH
memory bank, HashNet's balancing weights and continuation, and training on digits."""
import math
from types import SimpleNamespace

import pytest
import torch

from hashnb.losses import dpsh_loss, hashnet_loss, hashnet_pair_weights
from hashnb.methods import create_method
from hashnb.train import fit, method_from_dataset
from hashnb.utils import binarize, to_multihot


def onehot(ids, c=None):
    ids = torch.as_tensor(ids)
    return torch.as_tensor(to_multihot(ids.numpy(), c or int(ids.max()) + 1))


def softplus(t):  # by hand, for the oracle values
    return math.log(1 + math.exp(t))


def ctx_for(x, y, device="cpu"):
    return SimpleNamespace(train_x=x, train_y=y, device=torch.device(device), epoch=0, epochs=1,
                           extras={})


LOSSES = {"dpsh": dpsh_loss, "hashnet": hashnet_loss}


# ------------------------------------------------------------------ shapes and gradients
@pytest.mark.parametrize("name", ["dpsh", "hashnet"])
def test_loss_scalar_logs_and_gradients(name):
    g = torch.Generator().manual_seed(0)
    u = torch.randn(16, 12, generator=g).tanh().requires_grad_()
    y = onehot(torch.arange(16) % 4)
    loss, logs = LOSSES[name](u, y)
    assert loss.shape == () and torch.isfinite(loss)
    assert logs and all(isinstance(v, float) for v in logs.values())
    loss.backward()
    assert torch.isfinite(u.grad).all() and u.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["dpsh", "hashnet"])
def test_method_forward_shapes_and_parameter_gradients(name):
    torch.manual_seed(0)
    m = create_method(name, bits=8, num_classes=3, in_dim=5)
    x, y = torch.randn(6, 5), onehot([0, 1, 2, 0, 1, 2])
    m.train()
    out = m(x)
    assert out["z"].shape == out["u"].shape == (6, 8)
    loss, _ = m.loss(out, {"x": x, "y": y, "idx": torch.arange(6)})
    loss.backward()
    grads = [p.grad for p in m.parameters() if p.requires_grad]
    assert all(gr is not None and torch.isfinite(gr).all() for gr in grads)
    assert sum(float(gr.abs().sum()) for gr in grads) > 0
    codes = m.encode(x)
    assert codes.shape == (6, 8) and set(codes.unique().tolist()) <= {-1.0, 1.0}


# ------------------------------------------------------------------ values by hand
def test_dpsh_two_codes_by_hand():
    # u1 = (0.5, 1), u2 = (1, -1), different classes: theta = 1/2 u u^T
    u = torch.tensor([[0.5, 1.0], [1.0, -1.0]])
    y = onehot([0, 1])
    t11, t12, t22 = 0.5 * 1.25, 0.5 * (0.5 - 1.0), 0.5 * 2.0
    pair = (softplus(t11) - t11 + 2 * softplus(t12) + softplus(t22) - t22) / 4  # s = I
    quant = (0.5 - 1.0) ** 2 / 4  # ||u - sign u||^2 summed over items, / (n * M) pairs
    loss, logs = dpsh_loss(u, y, eta=10.0)
    assert logs["pair"] == pytest.approx(pair, rel=1e-6)
    assert logs["quant"] == pytest.approx(quant, rel=1e-6)
    assert float(loss) == pytest.approx(pair + 10.0 * quant, rel=1e-6)


def test_dpsh_quantization_weight_is_eta_over_n_train():
    u = torch.tensor([[0.5, 1.0], [1.0, -0.25]])
    y = onehot([0, 1])
    sq = (0.5 - 1.0) ** 2 + (-0.25 + 1.0) ** 2
    assert dpsh_loss(u, y)[1]["quant"] == pytest.approx(sq / (2 * 2), rel=1e-6)
    assert dpsh_loss(u, y, n_train=50)[1]["quant"] == pytest.approx(sq / (2 * 50), rel=1e-6)
    # the method passes the training-set size, in batch mode too
    torch.manual_seed(0)
    x, yy = torch.randn(12, 5), onehot(torch.arange(12) % 3)
    m = create_method("dpsh", bits=4, num_classes=3, in_dim=5)
    m.on_train_start(ctx_for(x, yy))
    out = m(x[:3])
    _, logs = m.loss(out, {"x": x[:3], "y": yy[:3], "idx": torch.arange(3)})
    u3 = out["u"].detach()
    assert logs["quant"] == pytest.approx(float((u3 - binarize(u3)).pow(2).sum()) / (3 * 12),
                                          rel=1e-5)


def test_hashnet_three_codes_by_hand():
    u = torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, -1.0]])
    y = onehot([0, 0, 1])
    # i != j: 2 similar pairs with a = 0.5 * 2 = 1, 4 dissimilar pairs with a = 0
    loss, logs = hashnet_loss(u, y, alpha=0.5)
    sim, dis = softplus(1.0) - 1.0, math.log(2.0)
    assert logs["similar"] == pytest.approx(sim, rel=1e-6)
    assert logs["dissimilar"] == pytest.approx(dis, rel=1e-6)
    assert logs["frac_similar"] == pytest.approx(2 / 6)
    # weights |S|/|S1| = 3 and |S|/|S0| = 1.5; (2*3*sim + 4*1.5*dis) / 6 = sim + dis
    assert float(loss) == pytest.approx(sim + dis, rel=1e-6)


def test_hashnet_default_alpha_is_ten_over_k():
    u = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    y = onehot([0, 1])  # one dissimilar pair each way: loss = softplus(10/4 * 4)
    loss, _ = hashnet_loss(u, y)
    assert float(loss) == pytest.approx(softplus(10.0), rel=1e-6)


@pytest.mark.parametrize("name", ["dpsh", "hashnet"])
def test_similar_pair_prefers_identical_codes_dissimilar_prefers_opposite(name):
    b = torch.tensor([1.0, -1.0, 1.0, 1.0])
    same, opposite = torch.stack([b, b]), torch.stack([b, -b])
    fn = LOSSES[name]
    sim_y, dis_y = onehot([0, 0], 2), onehot([0, 1])
    assert fn(same, sim_y)[0] < fn(opposite, sim_y)[0]
    assert fn(opposite, dis_y)[0] < fn(same, dis_y)[0]


# ------------------------------------------------------------------ stability
@pytest.mark.parametrize("theta", [1e3, -1e3, 3e3])
@pytest.mark.parametrize("similar", [True, False])
def test_dpsh_stable_at_large_theta(theta, similar):
    # one pair through the bank: theta = 1/2 u . v with u = v * sign = sqrt(|theta|) (1, 1)
    a = math.sqrt(abs(theta))
    u = torch.tensor([[a, a]], requires_grad=True)
    v = torch.tensor([[a, a]]) * (1 if theta > 0 else -1)
    y, yv = onehot([0], 2), onehot([0 if similar else 1], 2)
    loss, logs = dpsh_loss(u, y, u_bank=v, y_bank=yv, eta=0.0)
    expected = max(theta, 0.0) - (theta if similar else 0.0)  # softplus asymptote
    assert torch.isfinite(loss)
    assert logs["pair"] == pytest.approx(expected, abs=1e-3)
    loss.backward()
    assert torch.isfinite(u.grad).all()


@pytest.mark.parametrize("a", [1e3, -1e3])
@pytest.mark.parametrize("similar", [True, False])
def test_hashnet_stable_at_large_inner_product(a, similar):
    u = torch.ones(1, 8, requires_grad=True)
    v = torch.ones(1, 8) * (1 if a > 0 else -1)
    y, yv = onehot([0], 2), onehot([0 if similar else 1], 2)
    loss, _ = hashnet_loss(u, y, u_bank=v, y_bank=yv, alpha=abs(a) / 8)
    expected = max(a, 0.0) - (a if similar else 0.0)
    assert torch.isfinite(loss) and float(loss.detach()) == pytest.approx(expected, abs=1e-3)
    loss.backward()
    assert torch.isfinite(u.grad).all()


# ------------------------------------------------------------------ DPSH memory bank
def test_dpsh_batch_only_equals_bank_holding_exactly_the_batch():
    g = torch.Generator().manual_seed(1)
    u = torch.randn(10, 6, generator=g)
    y = onehot(torch.randint(0, 3, (10,), generator=g), 3)
    a, la = dpsh_loss(u, y)
    b, lb = dpsh_loss(u, y, u_bank=u.detach().clone(), y_bank=y)
    assert float(a) == pytest.approx(float(b), rel=1e-6) and la == pytest.approx(lb)
    # a bank with other rows changes the loss
    c, _ = dpsh_loss(u, y, u_bank=torch.cat([u, -u]), y_bank=torch.cat([y, y]))
    assert float(c) != pytest.approx(float(a), rel=1e-3)


def test_dpsh_bank_rows_follow_the_batch_and_equal_batch_mode():
    torch.manual_seed(0)
    n, k = 12, 8
    x, y = torch.randn(n, 5), onehot(torch.arange(n) % 3)
    m = create_method("dpsh", bits=k, num_classes=3, in_dim=5, memory_bank=True)
    m.on_train_start(ctx_for(x, y))
    assert m.bank_u.shape == (n, k) and torch.equal(m.bank_y, y)
    assert float(m.bank_u.abs().sum()) == 0
    idx = torch.tensor([7, 2, 9])
    m.train()
    out = m(x[idx])
    m.loss(out, {"x": x[idx], "y": y[idx], "idx": idx})
    assert float(m.bank_u.abs().sum()) == 0  # the loss is pure; the bank moves after the step
    m.on_batch_end(out, {"x": x[idx], "y": y[idx], "idx": idx})
    assert torch.equal(m.bank_u[idx], out["u"].detach())
    rest = torch.ones(n, dtype=torch.bool)
    rest[idx] = False
    assert float(m.bank_u[rest].abs().sum()) == 0
    # bank of exactly this batch (n_train = batch, idx = all) == the batch-only method
    plain = create_method("dpsh", bits=k, num_classes=3, in_dim=5)
    plain.load_state_dict(m.state_dict())
    m.on_train_start(ctx_for(x, y))
    plain.on_train_start(ctx_for(x, y))
    batch = {"x": x, "y": y, "idx": torch.arange(n)}
    lb, _ = m.loss(m(x), batch)
    lp, _ = plain.loss(plain(x), batch)
    assert float(lb.detach()) == pytest.approx(float(lp.detach()), rel=1e-6)


def test_dpsh_bank_state_roundtrip_and_errors():
    x, y = torch.randn(4, 3), onehot([0, 1, 0, 1])
    m = create_method("dpsh", bits=4, num_classes=2, in_dim=3, memory_bank=True)
    with pytest.raises(RuntimeError, match="on_train_start"):
        m.loss(m(x), {"x": x, "y": y, "idx": torch.arange(4)})
    m.on_train_start(ctx_for(x, y))
    m.bank_u[1] = 3.0
    m2 = create_method("dpsh", bits=4, num_classes=2, in_dim=3, memory_bank=True)
    m2.load_extra_state(m.extra_state())
    assert torch.equal(m2.bank_u, m.bank_u) and torch.equal(m2.bank_y, m.bank_y)
    with pytest.raises(ValueError, match="supervised"):
        create_method("dpsh", bits=4, num_classes=None, in_dim=3)
    with pytest.raises(ValueError, match="relax"):
        create_method("dpsh", bits=4, num_classes=2, in_dim=3, relax="sigmoid")
    with pytest.raises(ValueError, match="both u_bank and y_bank"):
        dpsh_loss(torch.zeros(2, 4), y[:2], u_bank=torch.zeros(3, 4))
    with pytest.raises(ValueError, match="u_bank must be"):
        dpsh_loss(torch.zeros(2, 4), y[:2], u_bank=torch.zeros(3, 5), y_bank=y[:3])


# ------------------------------------------------------------------ HashNet weights
def test_hashnet_weights_balance_similar_and_dissimilar_in_total():
    g = torch.Generator().manual_seed(0)
    y = onehot(torch.randint(0, 10, (40,), generator=g), 10)  # ~10% similar pairs
    s = ((y @ y.T) > 0).float()
    mask = ~torch.eye(40, dtype=torch.bool)
    w = hashnet_pair_weights(s, mask)
    n = float(mask.sum())
    pos, neg = (s > 0) & mask, (s == 0) & mask
    assert 0 < pos.sum() < neg.sum() / 4  # really imbalanced
    assert float(w[pos].sum()) == pytest.approx(n) and float(w[neg].sum()) == pytest.approx(n)
    assert float(w[~mask].abs().sum()) == 0
    u = torch.randn(40, 16, generator=g).tanh()
    loss, logs = hashnet_loss(u, y)
    assert float(loss) == pytest.approx(logs["similar"] + logs["dissimilar"], rel=1e-5)


def test_hashnet_single_group_and_errors():
    u = torch.tensor([[1.0, -1.0], [1.0, 1.0]])
    loss, logs = hashnet_loss(u, onehot([0, 0]), alpha=1.0)  # only similar pairs: their mean
    assert float(loss) == pytest.approx(softplus(0.0), rel=1e-6) and logs["dissimilar"] == 0.0
    with pytest.raises(ValueError, match="at least one pair"):
        hashnet_loss(u[:1], onehot([0]))


# ------------------------------------------------------------------ HashNet continuation
def test_hashnet_beta_follows_schedule_and_eval_codes_are_sign():
    torch.manual_seed(0)
    x, y = torch.randn(8, 5), onehot(torch.arange(8) % 2)
    m = create_method("hashnet", bits=6, num_classes=2, in_dim=5, beta_step=3)
    m.on_train_start(ctx_for(x, y))
    m.train()
    batch = {"x": x, "y": y, "idx": torch.arange(8)}
    betas = []
    for _ in range(10):
        out = m(x)
        z = m.model.head.preactivation(m.model.backbone(m.input_norm(x)))
        assert torch.allclose(out["u"], torch.tanh(float(m.beta) * z))
        betas.append(float(m.beta))
        m.loss(out, batch)[0].backward()
        m.on_batch_end(out, batch)  # one optimizer step done
    expect = [(1 + 0.005 * (t // 3 * 3)) ** 0.5 for t in range(10)]
    assert betas == pytest.approx(expect)
    assert betas[-1] > betas[0] and all(b1 >= b0 for b0, b1 in zip(betas, betas[1:]))
    default = create_method("hashnet", bits=6, num_classes=2, in_dim=5)
    assert default.beta_at(10000) == pytest.approx(math.sqrt(51))  # released code's endpoint
    assert default.beta_at(199) == 1.0 and default.beta_at(200) == pytest.approx(math.sqrt(2))
    m.eval()
    z = m.model.head.preactivation(m.model.backbone(m.input_norm(x)))
    assert torch.equal(m(x)["u"], binarize(z))
    assert torch.equal(m.encode(x), binarize(z))


def test_binarize_of_tanh_beta_z_is_sign_z_for_any_beta():
    z = torch.tensor([[-3.0, -1e-6, 0.0, 1e-6, 2.0, -50.0, 50.0]])
    for beta in (0.1, 1.0, 4.36, 7.14, 1e3):
        assert torch.equal(binarize(torch.tanh(beta * z)), binarize(z))
    assert binarize(z)[0, 2] == 1.0  # sign(0) -> +1


# ------------------------------------------------------------------ training on digits
@pytest.fixture(scope="module")
def trained(digits):
    ds, split = digits
    runs = {"lsh": fit(method_from_dataset("lsh", ds, bits=16), ds, split, progress=False)}
    torch.manual_seed(0)
    runs["dpsh"] = fit(method_from_dataset("dpsh", ds, bits=16), ds, split, epochs=10, seed=0,
                       progress=False)
    torch.manual_seed(0)
    runs["hashnet"] = fit(method_from_dataset("hashnet", ds, bits=16, beta_step=5), ds, split,
                          epochs=6, seed=0, progress=False)
    return runs


@pytest.mark.parametrize("name", ["dpsh", "hashnet"])
def test_pairwise_methods_on_digits_beat_lsh(name, trained):
    assert trained[name].evaluate()["map"] > trained["lsh"].evaluate()["map"] + 0.2


def test_hashnet_beta_grows_during_fit(trained):
    betas = [h["beta"] for h in trained["hashnet"].history]
    assert betas[-1] > betas[0] > 0


def test_dpsh_memory_bank_trains_on_digits(digits, trained):
    ds, split = digits
    torch.manual_seed(0)
    m = method_from_dataset("dpsh", ds, bits=16, memory_bank=True)
    run = fit(m, ds, split, epochs=20, seed=0, progress=False)
    assert bool((m.bank_u != 0).any(1).all())  # every training row was written
    # the bank lags within-batch pairs on digits (4 steps per epoch: stale rows), but learns
    assert run.evaluate()["map"] > trained["lsh"].evaluate()["map"] + 0.15


@pytest.mark.parametrize("name", ["dpsh", "hashnet"])
def test_encode_does_not_depend_on_batch(name, digits, trained):
    ds, split = digits
    m = trained[name].method
    x = torch.as_tensor(ds.x[split.database[:64]])
    one = torch.cat([m.encode(x[i:i + 1], batch_size=1) for i in range(len(x))])
    assert torch.equal(one, m.encode(x, batch_size=64))
