"""The Ray cluster as a ``hydra/launcher=ray_cluster`` sweep sees it: connecting to it (one
``error:`` line where no cluster answers), and how the sweep's jobs are doing on it (Ray's state
API) for the progress line."""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from typing import Any

import ray
from omegaconf import DictConfig, OmegaConf

from resnet_cifar.launch.cluster_jobs import progress_line, refuse
from resnet_cifar.launch.ray_resources import describe_resources, resource_request

log = logging.getLogger(__name__)
RUNNING_STATES = ("SUBMITTED_TO_WORKER", "RUNNING")


def connect(init: DictConfig) -> None:
    """Connect to the cluster at ``init.address`` (``auto``, ``host:port``, ``ray://host:10001``),
    or start one on this machine when it is null; one ``error:`` line if that fails."""
    fix = (
        "Start one with `ray start --head` or give its address: hydra.launcher.ray.init.address=auto "
        "(a cluster started on this machine), HOST:6379 or ray://HOST:10001; null starts one here"
    )
    address = init.get("address")
    if address and address not in ("auto", "local"):
        # ray.init waits minutes for an address where nothing listens: look first.
        host, _, port = str(address).removeprefix("ray://").rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=10).close()
        except (OSError, ValueError) as error:
            refuse(f"no Ray cluster answers at hydra.launcher.ray.init.address={address} ({error}). {fix}")
    try:
        if not ray.is_initialized():  # this process may have connected for an earlier sweep
            log.info("Initializing Ray with hydra.launcher.ray.init: %s", OmegaConf.to_container(init))
            ray.init(**(OmegaConf.to_container(init, resolve=True) or {}))
    except (ConnectionError, ValueError, TypeError, RuntimeError) as error:
        said = " ".join(str(error).split())
        refuse(
            f"cannot start or reach the Ray cluster (hydra.launcher.ray.init: {OmegaConf.to_container(init)}): "
            f"{said}. {fix}"
        )
    nodes = [describe_resources(node["Resources"]) for node in ray.nodes() if node["Alive"]]
    log.info("Ray cluster of %d nodes: %s", len(nodes), "; ".join(nodes))


def progress(waiting: Sequence[Any], options: Sequence[dict[str, Any]], done: int, total: int) -> str:
    """How the jobs not done yet (their task refs ``waiting``, with their Ray ``options``) are
    doing, from Ray's state API; where it does not answer (say a ``ray://`` client without the
    dashboard), only how many are not done."""
    from ray.util.state import list_tasks

    try:
        tasks = list_tasks(
            filters=[("job_id", "=", ray.get_runtime_context().get_job_id())],
            limit=10_000,
            raise_on_missing_output=False,
            timeout=30,
        )
    except Exception as error:  # the state API lives in the dashboard, which a cluster may not run
        line = progress_line("Ray", len(waiting), 0, done, total)
        return f"{line} (pending and running not told apart: Ray's state API: {error})"
    latest: dict[str, Any] = {}
    for task in tasks:
        if task.task_id not in latest or task.attempt_number > latest[task.task_id].attempt_number:
            latest[task.task_id] = task
    states = [latest.get(ref.task_id().hex()) for ref in waiting]
    running = sum(task is not None and task.state in RUNNING_STATES for task in states)
    line = progress_line("Ray", len(waiting) - running, running, done, total)
    pending = {
        describe_resources(resource_request(job_options))
        for job_options, task in zip(options, states)
        if task is None or task.state not in RUNNING_STATES
    }
    if pending:
        line += f"; pending jobs wait for a node with {' or '.join(sorted(pending))} free"
    retried = sum(task is not None and task.attempt_number > 0 for task in states)
    if retried:
        line += f"; {retried} retried (node or process lost, or preempted)"
    return line
