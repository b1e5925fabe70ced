"""resnet-cifar's Hydra plugins: Hydra loads launchers only from the ``hydra_plugins`` namespace.
The code is in resnet_cifar.launch.slurm; conf/hydra/launcher/slurm.yaml names this class."""

from resnet_cifar.launch import slurm


class SlurmLauncher(slurm.SlurmLauncher):
    """``hydra/launcher=slurm``: see :class:`resnet_cifar.launch.slurm.SlurmLauncher`."""
