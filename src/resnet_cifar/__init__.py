"""He et al. (2016) CIFAR ResNets with PyTorch Lightning and Hydra: the entry points and the basics every part uses."""

from resnet_cifar.launch.job_names import register_resolvers
from resnet_cifar.training.precision import register_precision_resolver

# conf/'s resolvers, for whoever composes it: the train command, launcher workers, Hydra's
# compose API.
register_resolvers()
register_precision_resolver()
