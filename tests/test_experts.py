"""Mixture of hash experts (hashnb.models.experts): shapes, top-k routing, gradients, E = 1."""
import pytest
import torch

from hashnb.models import HashExperts, topk_gate


def _module(e=4, k=2, d_in=6, d_out=5, seed=0):
    torch.manual_seed(seed)
    return HashExperts(d_in, d_out, experts=e, top_k=k)


@pytest.mark.parametrize("e,k", [(1, 1), (2, 1), (4, 2), (8, 2), (8, 1)])
def test_shapes_and_exactly_k_experts(e, k):
    m = _module(e, k)
    x = torch.randn(32, 6)
    for branch in ("center", "pairwise"):
        h, info = m(x, branch)
        assert h.shape == (32, 5)
        assert info["weights"].shape == info["probs"].shape == (32, e)
        nz = (info["weights"] > 0).sum(1)
        assert torch.equal(nz, torch.full((32,), k)), "every sample routes to exactly k experts"
        assert torch.equal(info["chosen"], info["weights"] > 0)
        torch.testing.assert_close(info["weights"].sum(1), torch.ones(32))


def test_topk_gate_matches_slow_loop():
    torch.manual_seed(1)
    logits = torch.randn(10, 6)
    w, chosen = topk_gate(logits, 3)
    for i in range(10):
        order = sorted(range(6), key=lambda j: -float(logits[i, j]))[:3]
        ex = torch.exp(logits[i, order] - logits[i, order].max())
        ref = torch.zeros(6)
        ref[order] = ex / ex.sum()
        torch.testing.assert_close(w[i], ref)
        assert set(torch.nonzero(chosen[i]).flatten().tolist()) == set(order)


def test_output_is_weighted_sum_of_chosen_experts():
    m = _module(4, 2)
    x = torch.randn(7, 6)
    h, info = m(x, "center")
    for i in range(7):
        ref = sum(info["weights"][i, e] * torch.relu(m.experts[e](x[i:i + 1]))[0]
                  for e in range(4))
        torch.testing.assert_close(h[i], ref)


def test_gradients_reach_only_chosen_experts():
    m = _module(4, 1)
    x = torch.randn(1, 6)  # one sample: one chosen expert
    h, info = m(x, "pairwise")
    h.sum().backward()
    chosen = int(info["chosen"][0].nonzero())
    for e, ex in enumerate(m.experts):
        g = ex.weight.grad
        if e == chosen:
            assert g is not None and g.abs().sum() > 0
        else:
            assert g is None or torch.count_nonzero(g) == 0, f"expert {e} was not chosen"
    # the other branch's gate gets nothing; this gate's unchosen logits get nothing
    assert m.gates["center"].weight.grad is None
    assert m.gates["pairwise"].weight.grad is not None


def test_gate_gradient_only_through_chosen_logits():
    m = _module(4, 2)
    x = torch.randn(1, 6)
    logits = m.gates["center"](x).detach().requires_grad_(True)
    w, chosen = topk_gate(logits, 2)
    (w * torch.arange(4.0)).sum().backward()
    assert torch.all(logits.grad[~chosen] == 0)
    assert logits.grad[chosen].abs().sum() > 0


def test_one_expert_is_a_plain_layer():
    m = _module(1, 2)  # k is clipped to 1
    assert m.top_k == 1
    x = torch.randn(9, 6)
    plain = torch.nn.Linear(6, 5)
    plain.load_state_dict(m.experts[0].state_dict())
    h, info = m(x, "center")
    torch.testing.assert_close(h, torch.relu(plain(x)))
    assert torch.all(info["weights"] == 1)
    torch.testing.assert_close(info["balance"], torch.tensor(1.0))


def test_balance_term_uniform_vs_collapsed():
    m = _module(4, 1)
    with torch.no_grad():
        m.gates["center"].weight.zero_()
        m.gates["center"].bias.copy_(torch.tensor([50.0, 0, 0, 0]))
    _, info = m(torch.randn(16, 6), "center")
    assert float(info["balance"].detach()) == pytest.approx(4.0, rel=1e-4)  # one expert takes all
    with torch.no_grad():
        m.gates["center"].bias.zero_()
        m.gates["center"].weight.zero_()
        m.gates["center"].weight[:, 0] = torch.tensor([10.0, -10, 3, -3])
    x = torch.zeros(4, 6)
    x[:, 0] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    # a hand-made routing: compare with the formula E * sum f_e P_e
    _, info = m(x, "center")
    f = info["chosen"].float().mean(0)
    ref = 4 * (f * info["probs"].mean(0)).sum()
    torch.testing.assert_close(info["balance"], ref)


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="top_k"):
        HashExperts(4, 4, experts=2, top_k=3)
    with pytest.raises(ValueError, match="experts"):
        HashExperts(4, 4, experts=0)
    with pytest.raises(ValueError, match="branch"):
        _module()(torch.randn(2, 6), "nope")
