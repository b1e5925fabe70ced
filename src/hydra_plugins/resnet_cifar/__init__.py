"""resnet-cifar's Hydra plugins: Hydra loads launchers only from the ``hydra_plugins`` namespace.
The code is in resnet_cifar.launch.slurm and resnet_cifar.launch.ray; conf/hydra/launcher/slurm.yaml
and ray.yaml name these classes."""

from typing import Any

from hydra.plugins.launcher import Launcher

from resnet_cifar.launch import slurm
from resnet_cifar.launch.cluster_jobs import refuse

try:
    from resnet_cifar.launch import ray
except ModuleNotFoundError as missing:  # hydra-ray-launcher is an optional extra
    if not (missing.name or "").startswith("hydra_plugins.hydra_ray_launcher"):
        raise
    ray = None  # type: ignore[assignment]


class SlurmLauncher(slurm.SlurmLauncher):
    """``hydra/launcher=slurm``: see :class:`resnet_cifar.launch.slurm.SlurmLauncher`."""


if ray is not None:

    class RayLauncher(ray.RayLauncher):
        """``hydra/launcher=ray``: see :class:`resnet_cifar.launch.ray.RayLauncher`."""

    # hydra-ray-launcher stores its own hydra/launcher=ray schema (ray.init and ray.remote only).
    # Hydra would validate conf/hydra/launcher/ray.yaml against it because the names match (a
    # deprecated automatic match, with a warning at every start) and refuse this launcher's own
    # keys: the schema is dropped, and the yaml alone defines the launcher.
    from resnet_cifar.launch.hydra_compat import drop_ray_launcher_schema

    drop_ray_launcher_schema()

else:

    class RayLauncher(Launcher):  # type: ignore[no-redef]
        """``hydra/launcher=ray`` without the extra that provides it: refused with the install command.
        (Hydra instantiates only the concrete launchers it discovered, hence setup and launch.)"""

        def __init__(self, **params: Any) -> None:
            refuse("hydra/launcher=ray needs Ray and hydra-ray-launcher: pip install -e '.[ray]'")

        def setup(self, **kwargs: Any) -> None:
            raise NotImplementedError

        def launch(self, job_overrides: Any, initial_job_idx: int) -> Any:
            raise NotImplementedError
