"""He et al. (2016) CIFAR ResNets with PyTorch Lightning and Hydra: the entry points and the basics every part uses."""

from resnet_cifar.launch.job_names import register_resolvers

# conf/train.yaml's resolvers, for whoever composes it: the train command, launcher workers,
# Hydra's compose API.
register_resolvers()
