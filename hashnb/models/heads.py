"""Hash heads: features -> relaxed binary codes in (-1, 1).

The standard deep-hashing head (DPSH, Li et al. arXiv:1511.03855; HashNet, Cao et al.
arXiv:1702.00758; CSQ, Yuan et al. arXiv:1908.00347): a linear layer to ``bits`` units and a
``tanh`` relaxation; codes are ``sign`` of the output at test time (``hashnb.utils.binarize``,
0 -> +1). Optional hidden MLP layers and a BatchNorm on the pre-activation (used by e.g.
OrthoHash, Hoe et al. arXiv:2109.14449, to balance bits). In eval mode BatchNorm uses its
running statistics, so a code never depends on the other items in the batch.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from hashnb.utils import check_bits

__all__ = ["HashHead", "HashModel", "mlp_stack"]


def mlp_stack(in_dim: int, hidden: Sequence[int] = (), *,
              dropout: float = 0.0) -> tuple[nn.Sequential, int]:
    """``[Linear -> ReLU (-> Dropout)]`` per hidden width, and its output width.

    The one MLP builder behind :class:`HashHead`'s hidden layers and the ``mlp`` backbone.
    """
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    layers: list[nn.Module] = []
    prev = int(in_dim)
    for h in hidden:
        if int(h) < 1:
            raise ValueError(f"hidden widths must be >= 1, got {tuple(hidden)}")
        layers += [nn.Linear(prev, int(h)), nn.ReLU(inplace=True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        prev = int(h)
    return nn.Sequential(*layers), prev


class HashHead(nn.Module):
    """MLP hash head: ``[Linear -> ReLU (-> Dropout)] * len(hidden) -> Linear(bits) [-> BN]``.

    Parameters
    ----------
    in_dim : int
        Feature dimension (the backbone's ``out_dim``).
    bits : int
        Code length, >= 1.
    hidden : sequence of int, default ()
        Widths of hidden layers before the final linear layer; () = a single linear layer
        (the usual DPSH/HashNet/CSQ head).
    batchnorm : bool, default False
        ``BatchNorm1d(bits)`` on the pre-activation.
    dropout : float, default 0.0
        Dropout after each hidden ReLU (no effect when ``hidden`` is empty).

    ``preactivation(x)`` returns ``z`` (n, bits); ``forward(x)`` returns ``tanh(z)`` in (-1, 1).
    """

    def __init__(self, in_dim: int, bits: int, *, hidden: Sequence[int] = (),
                 batchnorm: bool = False, dropout: float = 0.0):
        super().__init__()
        bits = check_bits(bits)
        if int(in_dim) < 1:
            raise ValueError(f"in_dim must be >= 1, got {in_dim}")
        self.hidden, prev = mlp_stack(in_dim, hidden, dropout=dropout)
        self.fc = nn.Linear(prev, bits)
        self.bn = nn.BatchNorm1d(bits) if batchnorm else None
        self.in_dim = int(in_dim)
        self.bits = bits

    def preactivation(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-activation ``z`` (n, bits) float, before the tanh."""
        z = self.fc(self.hidden(x.flatten(1)))
        if self.bn is not None:
            z = self.bn(z)
        return z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Relaxed codes ``tanh(z)`` (n, bits) in (-1, 1)."""
        return torch.tanh(self.preactivation(x))


class HashModel(nn.Module):
    """``head(backbone(x))``: input batch (n, ...) -> relaxed codes (n, bits) in (-1, 1).

    Checks that ``backbone.out_dim == head.in_dim`` when both are known.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        b_out, h_in = getattr(backbone, "out_dim", None), getattr(head, "in_dim", None)
        if b_out is not None and h_in is not None and int(b_out) != int(h_in):
            raise ValueError(f"backbone.out_dim={b_out} does not match head.in_dim={h_in}; "
                             f"build the head with in_dim=backbone.out_dim")
        if getattr(head, "bits", None) is None:
            raise ValueError("head must have a .bits attribute (the code length)")
        self.backbone = backbone
        self.head = head

    @property
    def bits(self) -> int:
        return int(self.head.bits)

    def preactivation(self, x: torch.Tensor) -> torch.Tensor:
        """Head pre-activation ``z`` (n, bits)."""
        return self.head.preactivation(self.backbone(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))
