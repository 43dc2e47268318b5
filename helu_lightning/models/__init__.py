"""Backbones whose activations come only from an activation factory; vision ones are built by name with
:func:`build_backbone`."""

from .plain import PlainCNN, PlainMLP
from .registry import TIMM_PREFIX, TORCHVISION_PREFIX, available_backbones, build_backbone, register_backbone
from .resnet import CifarResNet, resnet18_cifar
from .small_cnn import SmallCNN
from .timm_models import timm_classifier
from .torchvision_models import torchvision_classifier, torchvision_classifiers
from .wide_resnet import WideResNet

__all__ = [
    "TIMM_PREFIX",
    "TORCHVISION_PREFIX",
    "CifarResNet",
    "PlainCNN",
    "PlainMLP",
    "SmallCNN",
    "WideResNet",
    "available_backbones",
    "build_backbone",
    "register_backbone",
    "resnet18_cifar",
    "timm_classifier",
    "torchvision_classifier",
    "torchvision_classifiers",
]
