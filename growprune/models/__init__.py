"""Models written for growprune (torchvision does not run beside the CPU torch build).

All are plain ``torch.nn`` modules with no device assumptions; build them by name with
:func:`build_model`.
"""

from growprune.models.cnn import SmallCNN
from growprune.models.mlp import MLP
from growprune.models.pointnet2 import PointNet2PartSeg
from growprune.models.registry import build_model, list_models, model_builder, register_model
from growprune.models.resnet_cifar import CifarResNet, resnet20, resnet32, resnet56
from growprune.models.resnet_imagenet import ImageNetResNet, resnet50
from growprune.models.ssd import SSD
from growprune.models.transformer import Seq2SeqTransformer

__all__ = [
    "MLP",
    "SSD",
    "PointNet2PartSeg",
    "CifarResNet",
    "ImageNetResNet",
    "Seq2SeqTransformer",
    "SmallCNN",
    "build_model",
    "list_models",
    "model_builder",
    "register_model",
    "resnet20",
    "resnet32",
    "resnet50",
    "resnet56",
]
