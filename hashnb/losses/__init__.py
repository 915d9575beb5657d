"""Hashing losses, one file per family (pairwise, central, ...). Each takes relaxed outputs
and targets and returns ``(loss, logs)`` where ``logs`` is a dict of floats for the history."""
from hashnb.losses.central import csq_loss, quantization_loss

__all__ = ["csq_loss", "quantization_loss"]
