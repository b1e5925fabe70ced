"""conf/'s resolvers, registered by whoever composes it: the commands (train, evaluate), Hydra's
launcher workers (they import the train command), and code that uses Hydra's compose API."""

from resnet_cifar.launch import cluster_jobs, external, job_names
from resnet_cifar.training import precision, trackers


def register_resolvers() -> None:
    """``${job_dirname:...}``, ``${default_precision:...}`` and ``${job_gpus:...}`` (idempotent)."""
    job_names.register_resolvers()
    precision.register_resolvers()
    trackers.register_resolvers()
    cluster_jobs.register_resolvers()
    external.register_resolvers()
