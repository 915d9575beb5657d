"""Hashing losses, one file per family (pairwise, central, ...). Each takes relaxed outputs
and targets and returns ``(loss, logs)`` where ``logs`` is a dict of floats for the history."""
from hashnb.losses.central import csq_loss, quantization_loss
from hashnb.losses.pairwise import dpsh_loss, hashnet_loss, hashnet_pair_weights  # noqa: F401
from hashnb.losses.orthohash import orthohash_loss  # noqa: F401

__all__ = ["csq_loss", "quantization_loss"]
