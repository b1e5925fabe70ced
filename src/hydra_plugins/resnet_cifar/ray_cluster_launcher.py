"""``hydra/launcher=ray_cluster``: hydra-ray-launcher's Ray launcher, made to report and to resume
(resnet_cifar.launch.ray, imported when a sweep uses it). hydra-ray-launcher's own
``hydra/launcher=ray`` stays as it is, for every app."""

from hydra_plugins.resnet_cifar import _deferred


class RayClusterLauncher(_deferred.DeferredLauncher):
    """One Ray task per job of the sweep; the keys are those of conf/hydra/launcher/ray_cluster.yaml."""

    IMPLEMENTATION = "resnet_cifar.launch.ray:RayLauncher"
