"""Models for deep hashing: backbones (a timm-style registry) and hash heads.

``create_backbone(name, pretrained=...)`` -> features (n, out_dim);
``HashHead(in_dim, bits)`` -> relaxed codes in (-1, 1); ``HashModel(backbone, head)``.
torchvision and timm are imported only when a backbone that needs them is built.
"""
from hashnb.models.backbones import (
    IMAGENET_MEAN, IMAGENET_STD, IdentityBackbone, MLPBackbone, PretrainedWeightsUnavailable,
    SmallCNN, backbone_preprocess, convert_efficientnet_lite0_state_dict, create_backbone,
    efficientnet_lite0_weights_path, list_backbones, load_efficientnet_lite0_classifier,
    register_backbone,
)
from hashnb.models.heads import HashHead, HashModel
from hashnb.models.experts import HashExperts, topk_gate  # noqa: F401  (MoHE, MLH)

__all__ = [
    "register_backbone", "create_backbone", "list_backbones", "backbone_preprocess",
    "PretrainedWeightsUnavailable", "IdentityBackbone", "MLPBackbone", "SmallCNN",
    "convert_efficientnet_lite0_state_dict", "efficientnet_lite0_weights_path",
    "load_efficientnet_lite0_classifier", "IMAGENET_MEAN", "IMAGENET_STD",
    "HashHead", "HashModel",
]
