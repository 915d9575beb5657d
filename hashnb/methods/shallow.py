"""Shallow (non-deep) baselines fitted in closed form on vectors.

* LSH -- random-hyperplane hashing (Charikar, STOC 2002): b = sign(W^T (x - mean)),
  W_{:,k} ~ N(0, I). Data-independent except for centering; the "does learning matter"
  baseline.
* ITQ -- Iterative Quantization (Gong & Lazebnik, CVPR 2011): PCA to K dimensions, then
  an orthogonal rotation R that minimises the quantization error ||B - V R||_F by
  alternating B = sign(V R) and the orthogonal Procrustes solution R = U_A U_B^T from the
  SVD of B^T V. Unsupervised: labels are ignored.
"""
from __future__ import annotations

import torch

from hashnb.methods.base import ClosedFormMethod, register_method
from hashnb.utils import binarize

__all__ = ["LSH", "ITQ"]


@register_method("lsh")
class LSH(ClosedFormMethod):
    """Random hyperplanes through the training mean. ``fit_closed_form`` draws W from ``seed``."""

    def __init__(self, *, bits: int, in_dim: int, num_classes: int | None = None):
        super().__init__(bits=bits, in_dim=in_dim, num_classes=num_classes)
        self.register_buffer("W", torch.zeros(self.in_dim, self.bits))

    def fit_closed_form(self, x, y=None, *, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        x = x.float()
        self.mean = x.mean(0).to(self.mean)
        self.W = torch.randn(self.in_dim, self.bits, generator=g).to(self.W)
        self.fitted.fill_(True)

    def project(self, x):
        return (x - self.mean) @ self.W


@register_method("itq")
class ITQ(ClosedFormMethod):
    """Iterative Quantization; ``n_iter`` = 50 as in Gong & Lazebnik's code.

    ``quantization_errors`` holds ||B - V R||_F^2 / n after each iteration; it never
    increases (each half-step is an exact minimisation), which the tests check.
    """

    def __init__(self, *, bits: int, in_dim: int, num_classes: int | None = None,
                 n_iter: int = 50):
        super().__init__(bits=bits, in_dim=in_dim, num_classes=num_classes)
        if self.bits > self.in_dim:
            raise ValueError(f"ITQ projects with PCA, so bits ({self.bits}) must be <= the "
                             f"input dimension ({self.in_dim})")
        self.n_iter = n_iter
        self.register_buffer("W", torch.zeros(self.in_dim, self.bits))
        self.register_buffer("R", torch.eye(self.bits))
        self.quantization_errors: list[float] = []

    def fit_closed_form(self, x, y=None, *, seed: int = 0) -> None:
        x = x.double()
        mean = x.mean(0)
        xc = x - mean
        # PCA: top-K eigenvectors of the d x d scatter matrix (the right singular vectors of
        # the centred data; eigh on d x d is much cheaper than an SVD of n x d when n >> d)
        _, evecs = torch.linalg.eigh(xc.T @ xc)
        w = evecs[:, -self.bits:].flip(1)  # (d, K), largest variance first
        v = xc @ w
        g = torch.Generator().manual_seed(seed)
        r, _ = torch.linalg.qr(torch.randn(self.bits, self.bits, generator=g, dtype=torch.float64))
        self.quantization_errors = []
        for _ in range(self.n_iter):
            b = binarize(v @ r)
            ub, _, uat = torch.linalg.svd(b.T @ v)
            r = uat.T @ ub.T
            self.quantization_errors.append(float(((binarize(v @ r) - v @ r) ** 2).sum() / len(v)))
        self.mean = mean.to(self.mean)
        self.W = w.to(self.W)
        self.R = r.to(self.R)
        self.fitted.fill_(True)

    def project(self, x):
        return (x - self.mean) @ self.W @ self.R
