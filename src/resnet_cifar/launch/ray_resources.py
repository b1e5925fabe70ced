"""Where the jobs of a Ray sweep can run: what each asks of one node, and the refusal, before any
job starts, of a job that no live node of the cluster can hold."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from resnet_cifar.launch.cluster_jobs import refuse

# Ray's resource names -> the key that asks for them.
REQUEST_KEYS = {
    "CPU": "hydra.launcher.ray.remote.num_cpus",
    "GPU": (
        "hydra.launcher.ray.remote.num_gpus "
        "(it follows trainer.accelerator and trainer.devices: trainer.accelerator=cpu asks for none)"
    ),
    "memory": "hydra.launcher.ray.remote.memory",
}


def resource_request(options: dict[str, Any]) -> dict[str, float]:
    """What a task with these Ray options asks of one node (Ray's default: one CPU)."""
    request = {
        "CPU": options.get("num_cpus", 1),
        "GPU": options.get("num_gpus", 0),
        "memory": options.get("memory", 0),
        **options.get("resources", {}),
    }
    return {key: float(value) for key, value in request.items() if value}


def fits(request: dict[str, float], node: dict[str, float]) -> bool:
    """Whether the node has all that is asked of it."""
    return all(node.get(key, 0) >= amount for key, amount in request.items())


def refuse_unplaceable(jobs: Sequence[tuple[str, dict[str, Any]]], nodes: list[dict[str, Any]]) -> None:
    """Refuse the sweep, before any job starts, when a job (its name and its Ray options) asks for
    more than every live node has."""
    alive = [node["Resources"] for node in nodes if node["Alive"]]
    for name, options in jobs:
        request = resource_request(options)
        if any(fits(request, node) for node in alive):
            continue
        # The largest node: the one that has the most of what the job asks for, GPUs first.
        largest = max(
            alive,
            key=lambda node: [node.get("GPU", 0), node.get("CPU", 0), *(node.get(k, 0) for k in request)],
            default={},
        )
        short = [key for key, amount in request.items() if largest.get(key, 0) < amount]
        change = ", ".join(REQUEST_KEYS.get(key, "hydra.launcher.ray.remote.resources") for key in short)
        shown = {"CPU", "GPU", *request}
        refuse(
            f"job {name} asks Ray for {describe_resources(request)} on one node, but the cluster's largest node "
            f"has {describe_resources({key: largest.get(key, 0) for key in shown})} ({len(alive)} nodes alive). "
            f"Change {change}, or add a node that has them "
            "(a cluster that adds nodes on demand: hydra.launcher.autoscaling=true)"
        )


def describe_resources(resources: dict[str, float]) -> str:
    """``2 CPUs, 1 GPU, 16.0 GiB memory`` (Ray's own names for custom resources)."""
    parts = []
    for key in ("CPU", "GPU", "memory", *sorted(k for k in resources if k not in ("CPU", "GPU", "memory"))):
        if key not in resources or key.startswith("node:") or key == "object_store_memory":
            continue
        amount = resources[key]
        if key == "memory":
            parts.append(f"{amount / 2**30:.1f} GiB memory")
        elif key in ("CPU", "GPU"):
            count = f"{amount:g}" if amount else "no"
            parts.append(f"{count} {key}{'s' if amount != 1 else ''}")
        else:
            parts.append(f"{amount:g} {key}")
    return ", ".join(parts)
