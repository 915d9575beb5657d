"""CRH (Yin et al., AAAI 2026, arXiv 2511.12162; our reconstruction): the class -> code
matching (Hungarian vs brute force, greedy vs a slow loop), the head-size rule, the
reassignment cost against a per-sample loop, the loss by hand, "reassign=none" equal to
training with frozen centers, and the cost seeing training codes only."""
import copy
import itertools

import numpy as np
import pytest
import torch

from hashnb.centers import crh_codebook, crh_head_bits, match_classes_to_codes, pairwise_hamming
from hashnb.losses.crh import crh_loss, crh_scale
from hashnb.methods import create_method, list_methods
from hashnb.analysis import center_semantics
from hashnb.methods.base import HashOutput
from hashnb.methods.crh import CRH
from hashnb.train import fit, run_method


# --------------------------------------------------------------------------- matching
def _brute_force(cost):
    C, M = cost.shape
    best = min(itertools.permutations(range(M), C),
               key=lambda p: cost[np.arange(C), list(p)].sum())
    return cost[np.arange(C), list(best)].sum()


def test_hungarian_known_matrix():
    # greedy in row order would give row 0 -> col 0 (cost 1) and row 1 -> col 2 (cost 9):
    # total 10; the optimum is 0 -> 1, 1 -> 0 with total 2 + 2 = 4
    cost = np.array([[1.0, 2.0, 9.0], [2.0, 9.0, 9.0]])
    a = match_classes_to_codes(cost, method="hungarian")
    assert a.tolist() == [1, 0]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("shape", [(4, 4), (4, 7), (5, 8)])
def test_hungarian_optimal_vs_brute_force(shape, seed):
    cost = np.random.default_rng(seed).integers(0, 20, size=shape).astype(float)
    a = match_classes_to_codes(cost, method="hungarian")
    assert len(set(a.tolist())) == shape[0] and a.min() >= 0 and a.max() < shape[1]
    assert cost[np.arange(shape[0]), a].sum() == pytest.approx(_brute_force(cost))


def _greedy_loop(cost, order):
    taken, out = set(), {}
    for c in order:
        j = min((j for j in range(cost.shape[1]) if j not in taken), key=lambda j: (cost[c, j], j))
        out[c] = j
        taken.add(j)
    return [out[c] for c in range(cost.shape[0])]


@pytest.mark.parametrize("seed", range(5))
def test_greedy_valid_and_matches_slow_loop(seed):
    cost = np.random.default_rng(100 + seed).integers(0, 5, size=(6, 9)).astype(float)
    a = match_classes_to_codes(cost, method="greedy", rng=np.random.default_rng(seed))
    assert len(set(a.tolist())) == 6 and a.min() >= 0 and a.max() < 9
    order = np.random.default_rng(seed).permutation(6)
    assert a.tolist() == _greedy_loop(cost, order)
    h = match_classes_to_codes(cost, method="hungarian")
    assert cost[np.arange(6), h].sum() <= cost[np.arange(6), a].sum()


def test_matching_bad_input():
    with pytest.raises(ValueError, match="C <= M"):
        match_classes_to_codes(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="hungarian"):
        match_classes_to_codes(np.zeros((2, 3)), method="auction")


# --------------------------------------------------------------------------- codebook/heads
@pytest.mark.parametrize("bits", [8, 16, 32, 64])
@pytest.mark.parametrize("classes", [10, 100])
def test_head_rule_and_centers(bits, classes):
    M = 2 * classes
    d = crh_head_bits(bits, M)
    oracle = min(x for x in range(1, bits + 1) if bits % x == 0 and 2 ** x >= M)
    assert d == oracle == 8  # C = 10 (M = 20) and C = 100 (M = 200) both need 8-bit heads
    m = create_method("crh", bits=bits, num_classes=classes, in_dim=4)
    assert (m.num_heads, m.head_bits, m.codebook_size) == (bits // d, d, M)
    assert m.codebook.shape == (bits // d, M, d)
    for h in range(m.num_heads):
        assert len(set(m.assignment[h].tolist())) == classes           # distinct within a head
        assert len(np.unique(m.codebook[h].numpy(), axis=0)) == M      # distinct candidates
        np.testing.assert_array_equal(m.centers[:, h * d:(h + 1) * d].numpy(),
                                      m.codebook[h][m.assignment[h]].numpy())
    one = create_method("crh", bits=bits, num_classes=classes, in_dim=4, heads=1)
    assert (one.num_heads, one.head_bits) == (1, bits)


def test_head_rule_errors():
    assert crh_head_bits(12, 20) == 6  # smallest divisor with 2^d >= 20 (not a power of 2)
    with pytest.raises(ValueError, match="codebook"):
        crh_head_bits(4, 20)
    with pytest.raises(ValueError, match="divisor"):
        create_method("crh", bits=16, num_classes=10, in_dim=4, heads=3)
    with pytest.raises(ValueError, match="too few"):
        create_method("crh", bits=16, num_classes=10, in_dim=4, heads=4)  # 4-bit heads < 20
    with pytest.raises(ValueError, match="reassign"):
        create_method("crh", bits=16, num_classes=10, in_dim=4, reassign="auction")
    assert "crh" in list_methods()


def test_codebook_distinct_and_best_of_trials():
    one = crh_codebook(20, 8, seed=3, n_trials=1)
    many = crh_codebook(20, 8, seed=3, n_trials=300)
    for cb in (one, many):
        assert cb.shape == (20, 8) and len(np.unique(cb, axis=0)) == 20
    dmin = lambda cb: pairwise_hamming(cb)[~np.eye(20, dtype=bool)].min()  # noqa: E731
    assert dmin(many) >= dmin(one)
    np.testing.assert_array_equal(crh_codebook(20, 8, seed=3), crh_codebook(20, 8, seed=3))


# --------------------------------------------------------------------------- cost and step
def test_cost_matches_per_sample_loop():
    torch.manual_seed(0)
    m = create_method("crh", bits=16, num_classes=3, in_dim=4, codebook_size=6)
    z = torch.randn(7, 16)
    y = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 1], [0, 1, 0],
                      [1, 1, 1]], dtype=torch.float32)
    m.train()
    out = HashOutput(z=z, u=torch.tanh(z))
    m.loss(out, {"y": y})  # a pure loss: the step's codes are collected after the step
    assert float(m._weight.sum()) == 0
    m.on_batch_end(out, {"y": y})  # collects sign(z) during "training"
    cost = m.reassignment_cost()
    b = torch.where(z >= 0, 1.0, -1.0).numpy()
    d = m.head_bits
    for h in range(m.num_heads):
        cb = m.codebook[h].numpy()
        for c in range(3):
            for j in range(6):
                w = [y[i, c].item() / y[i].sum().item() for i in range(7)]
                dist = [((b[i, h * d:(h + 1) * d] - cb[j]) ** 2).sum() for i in range(7)]
                assert cost[h, c, j] == pytest.approx(np.dot(w, dist) / sum(w))


def test_step_moves_classes_to_their_codes():
    m = create_method("crh", bits=16, num_classes=3, in_dim=4, codebook_size=6)
    m.train()
    assert (m.num_heads, m.head_bits) == (4, 4)  # 2^4 >= 6 codes
    # per head: class -> the code its samples produce
    target = np.stack([np.random.default_rng(h).permutation(6)[:3] for h in range(4)])
    z = torch.cat([torch.cat([m.codebook[h][target[h, c]] for h in range(4)])[None]
                   for c in range(3)]) * 0.5
    y = torch.eye(3)
    m.on_batch_end(HashOutput(z=z, u=torch.tanh(z)), {"y": y})
    old = m.assignment.numpy().copy()
    moved = m.reassign_centers()
    assert m.assignment.tolist() == target.tolist()
    assert moved == int((target != old).any(0).sum())
    np.testing.assert_array_equal(m.centers.numpy(), np.sign(z.numpy()))


def test_schedule():
    m = create_method("crh", bits=8, num_classes=3, in_dim=4)
    ran = [e + 1 for e in range(40) if m.scheduled(e)]
    assert ran == list(range(1, 21)) + [25, 30, 35, 40]
    off = create_method("crh", bits=8, num_classes=3, in_dim=4, reassign="none")
    assert not any(off.scheduled(e) for e in range(40))


# --------------------------------------------------------------------------- loss
def test_loss_by_hand():
    z = torch.tensor([[2.0, -1.0], [0.5, 0.5]], requires_grad=True)
    y = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    centers = torch.tensor([[1.0, -1.0], [1.0, 1.0]])
    s, m, lq = crh_scale(10), 0.2, 0.1
    assert s == pytest.approx(np.sqrt(2) * np.log(9))
    loss, logs = crh_loss(z, y, centers, s=s, m=m, quant_weight=lq)
    zn = z.detach().numpy()
    cos = (zn / np.linalg.norm(zn, axis=1, keepdims=True)) @ (centers.numpy() / np.sqrt(2)).T
    logits = s * (cos - m * y.numpy())
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    ce = -((y.numpy() / y.numpy().sum(1, keepdims=True)) * logp).sum(1).mean()
    quant = ((np.abs(np.tanh(zn)) - 1) ** 2).mean()
    assert loss.item() == pytest.approx(ce + lq * quant, rel=1e-5)
    loss.backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


# --------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def digits_warm(digits):
    """The shared digits split (conftest.py) after one warm-up fit."""
    ds, split = digits
    # warm-up: the first fit in a process can differ from later identical ones in the last
    # float bits (seen with OrthoHash too: a torch first-call effect, not CRH's); compare
    # runs after it
    _train(CRH, ds, split, epochs=1, reassign="none")
    return ds, split


class _Frozen(CRH):
    """The same model with its centers frozen: no collection, no epoch hooks."""

    def on_epoch_start(self, epoch, ctx):
        pass

    def on_epoch_end(self, epoch, ctx):
        pass

    def loss(self, out, batch):
        return crh_loss(out["z"].float(), batch["y"], self.centers, s=self.s, m=self.margin,
                        quant_weight=self.quant_weight)


def _train(cls, ds, split, epochs=2, **kw):
    torch.manual_seed(0)
    m = cls(bits=16, num_classes=10, in_dim=64, **kw)
    return fit(m, ds, split, epochs=epochs, seed=0, progress=False, val_every=1)


def test_reassign_none_equals_frozen_centers(digits_warm):
    ds, split = digits_warm
    a = _train(CRH, ds, split, reassign="none")
    b = _train(_Frozen, ds, split, reassign="none")
    c = _train(CRH, ds, split, reassign="hungarian")
    init = [r for r in a.history if "assignment_init" in r][0]["assignment_init"]
    assert all(r["assignment"] == init and r["centers_changed"] == 0 for r in a.history)
    torch.testing.assert_close(a.method.centers, b.method.centers, rtol=0, atol=0)
    torch.testing.assert_close(a.codes("query"), b.codes("query"), rtol=0, atol=0)
    assert [r["loss"] for r in a.history] == [r["loss"] for r in b.history]
    # the same start with reassignment on does run the step (and is recorded)
    assert c.history[0]["assignment_init"] == init
    assert all(r["reassigned"] == 1 for r in c.history)


def test_cost_uses_training_codes_only(digits_warm):
    ds, split = digits_warm
    other = np.setdiff1d(np.arange(len(ds.labels)), split.train)
    ds2 = copy.copy(ds)
    x2 = np.array(ds.x, copy=True)
    x2[other] = np.random.default_rng(1).normal(size=x2[other].shape).astype(x2.dtype) * 10
    ds2.x = x2
    runs = [run_method("crh", d, split, bits=16, seed=0, epochs=2, cache=False, progress=False,
                       val_every=1) for d in (ds, ds2)]
    hist = [[r["assignment"] for r in run.history] for run in runs]
    assert hist[0] == hist[1]
    # the perturbation did reach validation, so it was not a no-op
    assert [r["val_map"] for r in runs[0].history] != [r["val_map"] for r in runs[1].history]


def test_center_semantics_oracle():
    rng = np.random.default_rng(0)
    centers = np.sign(rng.normal(size=(4, 32)))
    x = rng.normal(size=(40, 6))
    y = np.eye(4)[np.arange(40) % 4]
    out = center_semantics(centers, x, y, ["a", "b", "c", "d"])
    xc = x - x.mean(0)
    mu = np.stack([xc[y[:, c] > 0].mean(0) for c in range(4)])
    mu /= np.linalg.norm(mu, axis=1, keepdims=True)
    np.testing.assert_allclose(out["feature_sim"], mu @ mu.T, atol=1e-12)
    iu = np.triu_indices(4, 1)
    cs = centers @ centers.T / 32
    assert out["pearson"] == pytest.approx(np.corrcoef(cs[iu], (mu @ mu.T)[iu])[0, 1])
    np.testing.assert_array_equal(np.asarray(out["hamming"])[iu], pairwise_hamming(centers)[iu])


def test_training_batch_of_one_item_uses_running_batchnorm_statistics():
    # the shared SingleItemBatchNorm mixin: a last batch of one item must not crash BatchNorm
    m = create_method("crh", bits=16, num_classes=10, in_dim=8)
    assert m.model.head.bn is not None
    m.train()
    out = m(torch.randn(1, 8))
    assert out["z"].shape == (1, 16) and m.training and m.model.head.bn.training
    with pytest.raises(ValueError):  # plain BatchNorm still refuses one item in training
        m.model.head.bn(torch.randn(1, 16))


# --------------------------------------------------------------- faithful defaults (issue 13)
@pytest.mark.parametrize("bits", [8, 16, 32, 64])
def test_max_distance_codebook_is_at_least_as_spread_as_the_best_random_draw(bits):
    md = CRH(bits=bits, num_classes=10, in_dim=8)
    rnd = CRH(bits=bits, num_classes=10, in_dim=8, codebook="random")
    assert md.hparams()["codebook"] == "max-distance"
    for h in range(md.num_heads):
        dm, dr = pairwise_hamming(md.codebook[h].numpy()), pairwise_hamming(rnd.codebook[h].numpy())
        iu = np.triu_indices(len(dm), 1)
        assert dm[iu].min() >= dr[iu].min() and dm[iu].min() >= 1  # distinct, spread
    # the greedy construction beats the old best-of-200 draws where the head is 8 bits
    d8 = pairwise_hamming(md.codebook[0].numpy())[np.triu_indices(20, 1)].min()
    r8 = pairwise_hamming(rnd.codebook[0].numpy())[np.triu_indices(20, 1)].min()
    assert d8 > r8


def test_early_reassignment_runs_after_the_given_batches_only_in_the_first_epoch(digits_warm):
    ds, split = digits_warm
    calls = []

    class Spy(CRH):
        def reassign_centers(self, epoch=0):
            calls.append((epoch, float(self._weight.sum())))
            return super().reassign_centers(epoch)

    torch.manual_seed(0)
    m = Spy(bits=16, num_classes=10, in_dim=64, first_reassign=2, reassign_until=1,
            reassign_every=0)
    run = fit(m, ds, split, epochs=3, batch_size=64, seed=0, progress=False, val_every=1)
    # the early step saw exactly two batches' codes, then the end of epoch 1 the rest
    assert calls[0][0] == 2 ** 31 - 1 and calls[0][1] == 2 * 64
    assert calls[1][0] == 0 and calls[1][1] == len(split.train) - 2 * 64
    assert len(calls) == 2  # reassign_until=1, reassign_every=0: nothing after epoch 1
    assert "early_centers_changed" in run.history[0]
    assert all("early_centers_changed" not in r for r in run.history[1:])
    off = fit(Spy(bits=16, num_classes=10, in_dim=64, first_reassign=0), ds, split, epochs=1,
              seed=0, progress=False)
    assert "early_centers_changed" not in off.history[0]


@pytest.mark.parametrize("kw, match", [({"codebook": "hadamard"}, "codebook must be one of"),
                                       ({"first_reassign": -1}, "first_reassign"),
                                       ({"first_reassign": 1.5}, "first_reassign")])
def test_new_switches_refuse_bad_values(kw, match):
    with pytest.raises(ValueError, match=match):
        CRH(bits=16, num_classes=10, in_dim=8, **kw)
