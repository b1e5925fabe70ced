"""He et al. (2016) CIFAR ResNets with PyTorch Lightning and Hydra."""
