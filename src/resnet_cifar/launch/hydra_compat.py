"""Every private internal of Hydra and its plugins that the project uses, each with its reason.
Read in hydra-core 1.3.8 and hydra-ray-launcher 1.2.2.

An upgrade of either must pass tests/launch/test_hydra_compat.py, which fails when one of them
changes. What Hydra offers publicly is used where it suffices: a failed job's result is built
with ``JobReturn``'s ``return_value`` setter, and a Ray task runs its job with the calls that
Hydra's own launchers make (``hydra.core.utils.run_job`` and friends), not the Ray plugin's
private helpers.

1. A failed job's error, ``JobReturn._return_value``. The public ``return_value`` property of a
   job whose status is FAILED raises that error and first writes ``Error executing job with
   overrides: ...`` to stderr. Hydra's sweeper reads it that way once, at the sweep's end, for the
   first failed job; the cluster launchers (:mod:`resnet_cifar.launch.slurm`,
   :mod:`resnet_cifar.launch.ray`) read every failed job's error to report each one, and that
   read must neither raise nor write (:func:`failed_job_error`).
2. hydra-ray-launcher's stored ``hydra/launcher=ray`` schema. The plugin's private module
   ``hydra_plugins.hydra_ray_launcher._config`` stores, when imported, a schema of that name
   (``ray.init`` and ``ray.remote`` only) in Hydra's ConfigStore. Hydra would validate the
   project's conf/hydra/launcher/ray.yaml against it because the names match (a deprecated
   automatic match, with a warning at every start) and refuse the launcher's own keys. ConfigStore
   has no public way to remove an entry: :func:`drop_ray_launcher_schema` imports that module (so
   that it stores the schema once, now) and deletes the entry from ConfigStore's ``repo``, the
   nested dict of groups and ``<name>.yaml`` entries, so that the yaml alone defines the launcher.
"""

from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn

RAY_LAUNCHER_SCHEMA = ("hydra", "launcher", "ray.yaml")


def failed_job_error(result: JobReturn) -> Any:
    """The error a failed job ended with (item 1 above), without raising it or writing to stderr."""
    return result._return_value


def drop_ray_launcher_schema() -> None:
    """Remove hydra-ray-launcher's ``hydra/launcher=ray`` schema from Hydra's ConfigStore (item 2
    above). Needs hydra-ray-launcher installed."""
    import hydra_plugins.hydra_ray_launcher._config  # noqa: F401  (stores the schema; imported once)

    *groups, name = RAY_LAUNCHER_SCHEMA
    node = ConfigStore.instance().repo
    for group in groups:
        node = node[group]
    node.pop(name, None)
