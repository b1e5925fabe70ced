"""The CIFAR networks of He et al. (2016), as plain ``torch.nn`` modules."""

from resnet_cifar.models.resnet import SHORTCUTS, cifar_resnet, valid_depths

__all__ = ["SHORTCUTS", "cifar_resnet", "valid_depths"]
