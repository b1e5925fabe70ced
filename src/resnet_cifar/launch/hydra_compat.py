"""Every private internal of Hydra and its plugins that the project uses, each with its reason.
Read in hydra-core 1.3.8.

An upgrade must pass tests/launch/test_hydra_compat.py, which fails when one of them
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
"""

from typing import Any

from hydra.core.utils import JobReturn


def failed_job_error(result: JobReturn) -> Any:
    """The error a failed job ended with (item 1 above), without raising it or writing to stderr."""
    return result._return_value
