"""He et al. (2016) CIFAR ResNets with PyTorch Lightning and Hydra: the entry points and the basics every part uses."""

from resnet_cifar.launch import job_names, slurm

# conf/train.yaml's and conf/hydra/launcher/slurm.yaml's resolvers, for whoever composes them:
# the train command, launcher workers, Hydra's compose API.
job_names.register_resolvers()
slurm.register_resolvers()
