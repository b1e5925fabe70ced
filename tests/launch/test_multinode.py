"""One job over two "nodes" of this machine, as a user without SLURM starts it: the same command
twice, with NODE_RANK 0 and 1, MASTER_ADDR/MASTER_PORT and one explicit hydra.run.dir."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from commands import command_environment
from tiny_runs import TINY_SYNTHETIC_RUN


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_node_job_writes_one_directory_and_global_batch(tmp_path: Path) -> None:
    run_dir = tmp_path / "shared" / "run"
    command = [
        sys.executable,
        "-m",
        "resnet_cifar.train",
        *TINY_SYNTHETIC_RUN,
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.num_nodes=2",
        "trainer.devices=1",
        "trainer.max_steps=6",
        "~callbacks.progress_bar",
        "+callbacks.probe._target_=probes.RecordTrainingImages",
        f"+callbacks.probe.output_dir={run_dir}",
        f"hydra.run.dir={run_dir}",
    ]
    port = str(free_port())
    nodes = [
        subprocess.Popen(
            command,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=command_environment(MASTER_ADDR="127.0.0.1", MASTER_PORT=port, NODE_RANK=str(node)),
        )
        for node in (0, 1)
    ]
    outputs = [node.communicate(timeout=300)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], "\n\n".join(o[-3000:] for o in outputs)
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in outputs[0] and "GLOBAL_RANK: 1, MEMBER: 2/2" in outputs[1]
    records = [json.loads((run_dir / f"probe_rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["world_size"] for r in records] == [2, 2] and [r["steps"] for r in records] == [6, 6]
    # The global batch stays data.batch_size (32): each node's process takes 16 different images.
    for rank0, rank1 in zip(records[0]["batches"]["0"], records[1]["batches"]["0"]):
        assert len(rank0) == len(rank1) == 16 and not set(rank0) & set(rank1)
    assert json.loads((run_dir / "metrics.json").read_text())["steps"] == 6
    # One directory, written by global rank 0 alone: its TensorBoard files come from one process.
    writers = {path.name.split(".")[-2] for path in run_dir.glob("events.out.tfevents.*")}
    assert len(writers) == 1
    assert sorted(p.name for p in run_dir.iterdir() if p.is_dir()) == [".hydra", "checkpoints"]
