"""CSQ: Central Similarity Quantization (Yuan et al., CVPR 2020, arXiv 1908.00347).

Each class gets a fixed hash center (:func:`hashnb.centers.csq_centers`: Hadamard rows
when K is a power of 2 and C <= 2K, balanced random codes otherwise); every image is
pulled towards its center (multi-label: the majority vote of its labels' centers) by a
bitwise BCE, plus the squared quantization term. Defaults follow the released code's
ResNet-50 commands (lambda = 0.05, no pairwise term, Adam lr 1e-3, backbone lr x0.01).
"""
from __future__ import annotations

import numpy as np
import torch

from hashnb.centers import csq_centers, multilabel_targets
from hashnb.losses.central import csq_loss
from hashnb.methods.base import HashMethod, register_method

__all__ = ["CSQ"]


@register_method("csq")
class CSQ(HashMethod):
    """Central Similarity Quantization.

    Parameters (keyword-only, beyond :class:`HashMethod`'s)
    ----------------------------------------------------
    quant_weight : 0.05 (CSQ README, ResNet-50 commands).
    centers : optional (C, K) +-1 array to use instead of the CSQ rule (chapter 3 compares
        Hadamard, random and max-distance centers this way).
    center_seed : seed of the random fallback and of the multi-label tie-fill vector.
    """

    default_epochs = 30  # peaks within ~10 epochs on frozen features (DESIGN.md)

    def __init__(self, *, bits: int, num_classes: int, quant_weight: float = 0.05,
                 centers: np.ndarray | None = None, center_seed: int = 0, **kw):
        super().__init__(bits=bits, num_classes=num_classes, **kw)
        self.fixed_centers(csq_centers(num_classes, self.bits, seed=center_seed)
                           if centers is None else centers)
        self.quant_weight = quant_weight
        self.center_seed = center_seed

    def targets(self, y: torch.Tensor) -> torch.Tensor:
        """Per-item centers; single-label rows select their class's center directly."""
        if bool((y.sum(1) == 1).all()):
            return self.centers[y.argmax(1)]
        t = multilabel_targets(y.cpu().numpy(), self.centers.cpu().numpy(), seed=self.center_seed)
        return torch.from_numpy(t).to(y.device)

    def loss(self, out, batch):
        return csq_loss(out.z.float(), self.targets(batch["y"]), quant_weight=self.quant_weight)
