"""ADSH / MAH (hashnb.methods.asymmetric), their loss and V-step, and the loop's hooks for
learned database codes (hashnb.train.codes_for, the epoch_items hook)."""
import itertools

import numpy as np
import pytest
import torch

from hashnb.data import make_split
from hashnb.losses.asymmetric import (adsh_loss, adsh_objective, adsh_q, dcc_update,
                                      similarity, soft_ratio)
from hashnb.methods import create_method
from hashnb.train import codes_for, encode_dataset, fit, method_from_dataset

SMALL = dict(num_samples=120, inner_epochs=1, backbone="identity")  # fast


@pytest.fixture(scope="module")
def digits_in_db(digits):
    """Train drawn from the database (the ADSH protocol shape): 200 queries, 400 train."""
    ds, _ = digits
    return ds, make_split(ds, "random", n_query=200, n_train=400, seed=0, cache=False)


def _problem(n=9, m=4, k=3, c=3, seed=0, multilabel=False):
    g = torch.Generator().manual_seed(seed)
    if multilabel:
        y = (torch.rand(n, c, generator=g) < 0.4).float()
        y[y.sum(1) == 0, 0] = 1.0
    else:
        y = torch.eye(c)[torch.randint(0, c, (n,), generator=g)]
    omega = torch.randperm(n, generator=g)[:m].sort().values
    u = torch.rand(m, k, generator=g, dtype=torch.float64) * 2 - 1
    v = torch.where(torch.rand(n, k, generator=g) < 0.5, -1.0, 1.0).double()
    return y, omega, u, v


@pytest.mark.parametrize("mode", ["soft", "pm1"])
@pytest.mark.parametrize("multilabel", [False, True])
def test_q_matches_the_dense_formula(mode, multilabel):
    y, omega, u, _ = _problem(n=30, m=7, k=5, c=4, multilabel=multilabel)
    r = soft_ratio(y[omega], y, chunk=8) if mode == "soft" else 1.0
    s = similarity(y[omega], y, r=r).double()
    ubar = torch.zeros(30, 5, dtype=torch.float64)
    ubar[omega] = u
    dense = -2 * 5 * s.T @ u - 2 * 200.0 * ubar
    q = adsh_q(u.float(), y[omega], y, omega, gamma=200.0, r=r, chunk=8)
    assert torch.allclose(q.double(), dense, rtol=1e-4, atol=1e-3)
    if mode == "soft":  # r = #similar / #dissimilar, counted by hand
        sim = [(y[i] @ y[j] > 0).item() for i in omega for j in range(30)]
        assert r == pytest.approx(sum(sim) / (len(sim) - sum(sim)))
        assert abs(float(s.sum())) < 1e-4  # the soft weights balance the block exactly


def test_dcc_column_step_is_the_exact_minimiser_and_never_increases_J():
    y, omega, u, v = _problem(n=7, m=3, k=3)
    s = similarity(y[omega], y, r=soft_ratio(y[omega], y)).double()
    q = adsh_q(u, y[omega], y, omega, gamma=2.0, r=soft_ratio(y[omega], y)).double()
    for k in range(3):
        before = adsh_objective(u, v, s, omega, gamma=2.0)
        dcc_update(v, u, q, columns=[k])
        after = adsh_objective(u, v, s, omega, gamma=2.0)
        assert after <= before + 1e-9
        best = np.inf  # brute force over all 2^7 values of column k
        for col in itertools.product([-1.0, 1.0], repeat=7):
            w = v.clone()
            w[:, k] = torch.tensor(col, dtype=torch.float64)
            best = min(best, adsh_objective(u, w, s, omega, gamma=2.0))
        assert after == pytest.approx(best, rel=1e-9, abs=1e-9)


def test_dcc_sweeps_decrease_J_on_a_larger_problem():
    y, omega, u, v = _problem(n=60, m=15, k=8, c=5, seed=3)
    s = similarity(y[omega], y).double()
    q = adsh_q(u, y[omega], y, omega, gamma=200.0).double()
    js = [adsh_objective(u, v, s, omega, gamma=200.0)]
    for _ in range(4):
        dcc_update(v, u, q)
        js.append(adsh_objective(u, v, s, omega, gamma=200.0))
    assert all(b <= a + 1e-9 for a, b in zip(js, js[1:])) and js[-1] < js[0]
    assert set(v.unique().tolist()) == {-1.0, 1.0}


def test_network_loss_sums_to_the_objective():
    y, omega, u, v = _problem(n=20, m=6, k=4)
    s = similarity(y[omega], y)
    loss, logs = adsh_loss(u.float(), v.float(), s, v[omega].float(), gamma=5.0)
    j = adsh_objective(u, v, s, omega, gamma=5.0)
    assert float(loss) * 20 * 6 == pytest.approx(j, rel=1e-5)
    assert logs["square"] + logs["quant"] == pytest.approx(float(loss), rel=1e-6)


def test_bad_arguments_raise(digits):
    kw = dict(num_classes=10, in_dim=64)
    with pytest.raises(ValueError, match="similarity"):
        create_method("adsh", bits=8, similarity="cosine", **kw)
    with pytest.raises(ValueError, match="pool"):
        create_method("adsh", bits=8, pool="query", **kw)
    with pytest.raises(ValueError, match="contain bits"):
        create_method("mah", bits=8, lengths=(4, 16), **kw)
    with pytest.raises(ValueError, match="variant"):
        create_method("mah", bits=8, variant="tree", **kw)
    with pytest.raises(ValueError, match="weights"):
        create_method("mah", bits=8, weights=(1, 1), **kw)
    with pytest.raises(ValueError, match="supervised"):
        create_method("adsh", bits=8, num_classes=None, in_dim=64)


@pytest.mark.parametrize("variant", ["cascade", "flat"])
def test_mah_heads_and_evaluated_length(variant):
    torch.manual_seed(0)
    m = create_method("mah", bits=6, num_classes=10, in_dim=64, variant=variant)
    assert m.lengths == (6, 12, 24) and m.weights == (4.0, 2.0, 1.0)
    x = torch.randn(5, 64)
    out = m.eval()(x)
    assert [u.shape[1] for u in out["heads"]] == [6, 12, 24]
    assert m.encode(x).shape == (5, 6) and torch.equal(out["u"], out["heads"][0])
    f = m.model.backbone(m.input_norm(x))
    z24 = m.heads[-1].preactivation(f)
    if variant == "cascade":  # each shorter code is a linear map of the longer pre-activation
        z12 = m.heads[1](z24)
        assert torch.allclose(out["heads"][1], torch.tanh(z12), atol=1e-6)
        assert torch.allclose(out["z"], m.heads[0](z12), atol=1e-6)
        assert m.heads[0].weight.shape == (6, 12)
    else:
        assert torch.allclose(out["z"], m.heads[0].preactivation(f), atol=1e-6)
    # batch composition does not change a code (eval mode)
    assert torch.equal(m.encode(x[:1]), m.encode(x)[:1])
    # encode_heads: every head's codes, chunking-independent, the evaluated head = encode
    m.train()
    heads = m.encode_heads(x, batch_size=2)
    assert m.training  # the caller's mode is restored
    assert [tuple(h.shape) for h in heads] == [(5, 6), (5, 12), (5, 24)]
    assert torch.equal(heads[0], m.encode(x)) and set(heads[2].unique().tolist()) <= {-1.0, 1.0}
    assert [tuple(h.shape) for h in m.encode_heads(x[:0])] == [(0, 6), (0, 12), (0, 24)]


def _fit(name, ds, split, seed=0, epochs=2, **kw):
    torch.manual_seed(seed)
    m = method_from_dataset(name, ds, bits=8, **SMALL, **kw)
    return fit(m, ds, split, epochs=epochs, seed=seed, progress=False)


def test_training_is_deterministic_for_a_seed_and_samples_omega_from_the_pool(digits):
    ds, split = digits
    a, b = _fit("adsh", ds, split), _fit("adsh", ds, split)
    assert torch.equal(a.method.db_codes(), b.method.db_codes())
    assert torch.equal(a.codes("query"), b.codes("query"))
    c = _fit("adsh", ds, split, seed=1)
    assert not torch.equal(a.method.db_codes(), c.method.db_codes())
    assert set(a.method.epoch_items(0, None).tolist()) <= set(split.train.tolist())
    v = a.method.db_codes()
    assert v.shape == (len(split.train), 8) and set(v.unique().tolist()) == {-1.0, 1.0}
    assert "v_flip_8b" in a.history[0] and "val_map" in a.history[-1]


def test_asymmetric_evaluation_uses_learned_database_codes(digits_in_db, monkeypatch):
    ds, split = digits_in_db
    run = _fit("mah", ds, split, pool="database")
    m = run.method
    pool = np.setdiff1d(split.database, split.val)
    assert torch.equal(m.pool_index.cpu(), torch.as_tensor(pool))
    calls = []
    real = type(m).encode
    monkeypatch.setattr(type(m), "encode", lambda self, x, **kw: (calls.append(len(x)),
                                                                  real(self, x, **kw))[1])
    db = run.codes("database")
    in_pool = np.isin(split.database, pool)
    assert torch.equal(db[torch.as_tensor(in_pool)], m.db_codes())  # V, not forward passes
    assert sum(calls) == (~in_pool).sum() == len(np.intersect1d(split.val, split.database))
    fwd = encode_dataset(m, ds, split.database[in_pool])
    assert not torch.equal(fwd, m.db_codes())  # the two really differ after training
    # queries are never in the pool: forward passes
    assert torch.equal(run.codes("query"), encode_dataset(m, ds, split.query))


def test_disjoint_database_falls_back_to_forward_passes(digits):
    ds, split = digits  # protocol digits: database disjoint from train
    run = _fit("adsh", ds, split)
    assert run.method.stored_codes(split.database) is None
    assert torch.equal(run.codes("database"), encode_dataset(run.method, ds, split.database))
    assert torch.equal(run.codes("train"), run.method.db_codes())


def test_learned_codes_are_saved_with_the_run(digits, tmp_path):
    ds, split = digits
    torch.manual_seed(0)
    m = method_from_dataset("mah", ds, bits=4, **SMALL)
    run = fit(m, ds, split, epochs=3, progress=False, run_dir=tmp_path / "r")
    torch.manual_seed(5)
    fresh = method_from_dataset("mah", ds, bits=4, **SMALL)
    again = fit(fresh, ds, split, epochs=3, progress=False, run_dir=tmp_path / "r")
    for h in range(3):
        assert torch.equal(fresh.db_codes(h).cpu(), m.db_codes(h).cpu())
    assert torch.equal(again.codes("train"), run.codes("train"))
    assert again.evaluate()["map"] == pytest.approx(run.evaluate()["map"])


def test_codes_for_fills_unstored_rows_by_forward_passes(digits):
    ds, split = digits
    torch.manual_seed(0)
    m = method_from_dataset("csq", ds, bits=8).eval()
    idx = split.database[:10]
    fwd = encode_dataset(m, ds, idx)
    assert torch.equal(codes_for(m, ds, idx), fwd)  # no hook: forward passes
    fake = torch.zeros(10, 8)
    fake[::2] = -1.0  # stored rows; odd rows unknown (zeros)
    m.stored_codes = lambda indices: fake.clone()
    out = codes_for(m, ds, idx)
    assert torch.equal(out[::2], fake[::2]) and torch.equal(out[1::2], fwd[1::2])


def test_epoch_items_hook_feeds_the_given_items(digits):
    ds, split = digits
    torch.manual_seed(0)
    m = method_from_dataset("csq", ds, bits=8)
    chosen = np.array(split.database[:7].tolist() + split.train[:5].tolist())
    seen = []
    m.epoch_items = lambda epoch, ctx: chosen
    real = m.loss

    def loss(out, batch):
        seen.append((batch["index"].cpu(), batch["idx"].cpu(), batch["y"].cpu()))
        return real(out, batch)

    m.loss = loss
    fit(m, ds, split, epochs=1, batch_size=4, progress=False)
    index = torch.cat([s[0] for s in seen])
    assert index.tolist() == chosen.tolist()  # in the given order
    pos = torch.cat([s[1] for s in seen])
    assert (pos[:7] == -1).all() and split.train[pos[7:]].tolist() == chosen[7:].tolist()
    assert torch.equal(torch.cat([s[2] for s in seen]), torch.as_tensor(ds.labels[chosen]))


@pytest.mark.parametrize("r", [1.0, 0.37])
def test_factored_loss_equals_the_dense_loss_in_value_and_gradient(r):
    from hashnb.losses.asymmetric import adsh_loss_factored, pool_statistics

    y, omega, u, v = _problem(n=40, m=6, k=5, c=4, seed=2)
    u = u.float().requires_grad_(True)
    dense, _ = adsh_loss(u, v.float(), similarity(y[omega], y, r=r), v[omega].float(), gamma=7.0)
    (g_dense,) = torch.autograd.grad(dense, u)
    fact, _ = adsh_loss_factored(u, y[omega], pool_statistics(v, y), v[omega].float(),
                                 gamma=7.0, r=r)
    (g_fact,) = torch.autograd.grad(fact, u)
    assert float(fact.detach()) == pytest.approx(float(dense.detach()), rel=1e-5)
    assert torch.allclose(g_fact, g_dense, rtol=1e-4, atol=1e-6)
