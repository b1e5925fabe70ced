"""The CIFAR networks of He et al. (2016), as plain ``torch.nn`` modules, and exported ones loaded
again (:func:`load_pretrained`)."""

from resnet_cifar.models.pretrained import load_pretrained, save_pretrained
from resnet_cifar.models.resnet import SHORTCUTS, cifar_resnet, valid_depths

__all__ = ["SHORTCUTS", "cifar_resnet", "load_pretrained", "save_pretrained", "valid_depths"]
