"""Centers (CSQ's Hadamard and balanced random construction) and the CSQ loss."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hashnb.centers import (balanced_random_centers, center_report, csq_centers,
                            hadamard_centers, hadamard_matrix, multilabel_targets,
                            pairwise_hamming)
from hashnb.losses import csq_loss, quantization_loss


@pytest.mark.parametrize("bits", [8, 16, 32, 64])
@pytest.mark.parametrize("classes", [2, 10])
def test_hadamard_centers_exactly_half_apart(bits, classes):
    c = hadamard_centers(classes, bits)
    assert c.shape == (classes, bits)
    d = pairwise_hamming(c)
    off = d[~np.eye(classes, dtype=bool)]
    if classes <= bits:
        assert (off == bits // 2).all()
    else:  # [H; -H]: K/2 apart except a row and its own negation (K apart)
        assert set(np.unique(off)) <= {bits // 2, bits}


def test_hadamard_matrix_is_orthogonal():
    h = hadamard_matrix(16)
    np.testing.assert_array_equal(h @ h.T, 16 * np.eye(16))


def test_hadamard_two_k_uses_negated_rows():
    c = hadamard_centers(20, 16)
    np.testing.assert_array_equal(c[16:], -c[:4])
    assert center_report(c)["min"] == 8


@pytest.mark.parametrize("classes,bits", [(33, 16), (10, 12), (3, 6)])
def test_hadamard_impossible_requests_are_clear_errors(classes, bits):
    with pytest.raises(ValueError, match="balanced_random_centers"):
        hadamard_centers(classes, bits)


def test_balanced_random_centers_seeded_balanced_and_bounded():
    a = balanced_random_centers(100, 64, seed=3, min_dist=16)
    b = balanced_random_centers(100, 64, seed=3, min_dist=16)
    c = balanced_random_centers(100, 64, seed=4, min_dist=16)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert ((a == -1).sum(1) == 32).all()
    assert center_report(a)["min"] >= 16


def test_balanced_random_unreachable_bound_is_clear_error():
    with pytest.raises(ValueError, match="lower min_dist"):
        balanced_random_centers(100, 16, seed=0, min_dist=8, max_tries=5)
    with pytest.raises(ValueError, match="distinct codes"):
        balanced_random_centers(20, 4)
    with pytest.raises(ValueError, match="only 6 balanced 4-bit codes"):
        balanced_random_centers(10, 4)


def test_csq_centers_rule():
    np.testing.assert_array_equal(csq_centers(10, 16), hadamard_centers(10, 16))
    c = csq_centers(10, 12, seed=1)  # 12 is no power of 2 -> balanced random
    assert c.shape == (10, 12) and ((c == -1).sum(1) == 6).all()
    assert len({tuple(r) for r in c}) == 10


def test_multilabel_targets_majority_vote_and_tie_fill():
    centers = np.array([[1, 1, 1, -1], [1, -1, -1, -1], [-1, -1, 1, 1]], dtype=np.float32)
    labels = np.array([[1, 0, 0], [1, 1, 1], [1, 1, 0]], dtype=np.float32)
    t = multilabel_targets(labels, centers, seed=0)
    np.testing.assert_array_equal(t[0], centers[0])
    np.testing.assert_array_equal(t[1], [1, -1, 1, -1])  # majority of three
    fill = multilabel_targets(labels, centers, seed=0)[2]
    assert fill[0] == 1 and fill[3] == -1  # agreed bits; bits 1, 2 tie -> filled
    np.testing.assert_array_equal(multilabel_targets(labels, centers, seed=0), t)
    with pytest.raises(ValueError, match="no label"):
        multilabel_targets(np.zeros((1, 3)), centers)


def test_csq_loss_known_values_and_stability():
    # identical code (saturated towards the center) -> small loss; opposite -> large
    t = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    z_same = 5 * t
    z_opp = -5 * t
    l_same, logs = csq_loss(z_same, t, quant_weight=0.0)
    l_opp, _ = csq_loss(z_opp, t, quant_weight=0.0)
    assert l_same < 1e-4 and l_opp > 9.9  # BCE(sigmoid(-10)) = 10 + log(1+e^-10)
    # equals the textbook BCE on (u+1)/2 where that is finite
    z = torch.randn(6, 8)
    tt = torch.where(torch.rand(6, 8) > 0.5, 1.0, -1.0)
    ref = F.binary_cross_entropy((torch.tanh(z) + 1) / 2, (tt + 1) / 2)
    got, _ = csq_loss(z, tt, quant_weight=0.0)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
    # saturated codes (tanh == +-1 in float32) stay finite with a finite gradient
    zs = torch.full((2, 4), 40.0, requires_grad=True)
    loss, _ = csq_loss(zs, -torch.ones(2, 4))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(zs.grad).all()
    assert loss > 70  # BCE-with-logits of 80 against 0, not clamped at log(1e-12)


def test_quantization_loss_zero_only_on_binary_codes():
    assert quantization_loss(torch.tensor([[1.0, -1.0]])) == 0
    assert quantization_loss(torch.tensor([[0.0, 1.0]])) == pytest.approx(0.5)


def test_csq_loss_shape_mismatch():
    with pytest.raises(ValueError, match="must match"):
        csq_loss(torch.zeros(2, 4), torch.zeros(2, 5))
