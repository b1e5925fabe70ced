"""The stand-in interpreter of the tests' command server (forked_commands.py), which the DDP,
sweep and launcher tests rely on when a command starts ``python -m resnet_cifar.<module>`` itself:
it passes signals on, exits as its fork did, and takes its fork with it when it is killed."""

import re
import signal
import subprocess
import time
from pathlib import Path

from conftest import TINY_SYNTHETIC_RUN, command_environment
from forked_commands import python_for_commands, running_commands


def start_waiting_run(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    """A tiny run through the stand-in, held at step 2 (probes.WaitAtStep) until ``tmp_path/release``."""
    python, env = python_for_commands(command_environment(WAIT_AT_STEP="2", WAIT_RELEASE=str(tmp_path / "release")))
    run_dir = tmp_path / "run"
    stand_in = subprocess.Popen(
        [
            python,
            "-m",
            "resnet_cifar.train",
            *TINY_SYNTHETIC_RUN,
            "trainer.max_steps=4",
            "+callbacks.wait._target_=probes.WaitAtStep",
            "+callbacks.wait.output_dir=${paths.output_dir}",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (run_dir / "waiting_at_step").exists():
        assert stand_in.poll() is None and time.monotonic() < deadline, stand_in.communicate()[0]
        time.sleep(0.1)
    return stand_in, run_dir


def forks_of(run_dir: Path) -> list[str]:
    return [command for command in running_commands() if str(run_dir) in command]


def test_a_killed_stand_in_takes_its_listed_fork_with_it(tmp_path: Path) -> None:
    stand_in, run_dir = start_waiting_run(tmp_path)
    (fork,) = forks_of(run_dir)
    assert fork.startswith("python -m resnet_cifar.train ")
    stand_in.kill()
    stand_in.communicate()
    deadline = time.monotonic() + 30
    while forks_of(run_dir):
        assert time.monotonic() < deadline, "the fork outlived its stand-in"
        time.sleep(0.05)


def test_a_stand_in_passes_sigterm_on_and_exits_as_its_fork(tmp_path: Path) -> None:
    stand_in, run_dir = start_waiting_run(tmp_path)
    stand_in.send_signal(signal.SIGTERM)
    time.sleep(0.5)  # the fork's handler notes it; it acts at the end of the step held here
    (tmp_path / "release").touch()
    output, _ = stand_in.communicate(timeout=120)
    assert stand_in.returncode == 128 + signal.SIGTERM, output
    assert re.search(r"SIGTERM: saved .*last\.ckpt at step \d+; stopping", output), output
    assert not forks_of(run_dir)
