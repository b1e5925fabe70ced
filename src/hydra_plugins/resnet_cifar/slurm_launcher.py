"""``hydra/launcher=slurm``: hydra-submitit-launcher's SLURM launcher, made to talk
(resnet_cifar.launch.slurm, imported when a sweep uses it)."""

from hydra_plugins.resnet_cifar import _deferred


class SlurmLauncher(_deferred.DeferredLauncher):
    """One SLURM job per job of the sweep; the keys are those of conf/hydra/launcher/slurm.yaml."""

    IMPLEMENTATION = "resnet_cifar.launch.slurm:SlurmLauncher"
