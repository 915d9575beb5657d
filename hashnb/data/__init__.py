"""Data for hashnb: datasets, seeded retrieval protocols and a frozen-feature cache.

* :func:`load_dataset` -- ``"digits"`` (scikit-learn, offline) and ``"cifar10"``
  (Krizhevsky 2009; ``$HASHNB_DATA`` / ``root=`` / torchvision download);
  :func:`load_image_list` -- HashNet-style ``"path 0 1 0 ..."`` lists (NUS-WIDE, COCO).
* :func:`make_split` -- protocols ``"cifar10"`` (1k query / 5k train / 54k database),
  ``"cifar10-1"`` (59k database, train inside it), ``"cifar10-2"`` (10k test queries,
  50k train = database), ``"digits"``, ``"random"``; a validation set cut from train.
* :func:`extract_features` / :func:`load_features` -- frozen-backbone features cached on disk.
"""
from .datasets import (
    CIFAR10_CLASSES, DATASETS, DatasetNotFoundError, HashingDataset, TorchImageDataset,
    labels_fingerprint, load_cifar10, load_dataset, load_digits, load_image_list,
    load_packed_cifar10, pack_cifar10,
)
from .features import (ResizeNormalize, extract_features, feature_cache_path, image_transform,
                       load_features, prepare_batch)
from .protocols import PROTOCOLS, Split, default_protocol, make_split

__all__ = [
    "HashingDataset", "DatasetNotFoundError", "load_dataset", "load_digits", "load_cifar10",
    "load_image_list", "TorchImageDataset", "CIFAR10_CLASSES", "DATASETS", "labels_fingerprint",
    "Split", "make_split", "PROTOCOLS", "default_protocol",
    "extract_features", "load_features", "feature_cache_path", "prepare_batch",
    "ResizeNormalize", "image_transform", "pack_cifar10", "load_packed_cifar10",
]
