"""He et al. (2016) CIFAR ResNets with PyTorch Lightning and Hydra: the entry points and the basics every part uses."""

from resnet_cifar.launch import job_names, slurm
from resnet_cifar.training import precision

# conf/'s resolvers (train.yaml, trainer/default.yaml, hydra/launcher/slurm.yaml), for whoever
# composes it: the train command, launcher workers, Hydra's compose API.
job_names.register_resolvers()
precision.register_resolvers()
slurm.register_resolvers()
