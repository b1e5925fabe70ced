"""The project's commands run as a user runs them: each a fresh process, with what tests need to
check and report the outcome."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
# The exit status of a command refused with one ``error:`` line (resnet_cifar.cli).
USAGE_ERROR = 2


def command_environment(**extra: str) -> dict[str, str]:
    """The environment of the commands under test: this one without HYDRA_FULL_ERROR (Hydra's
    short error messages are part of what is tested), unbuffered output, and this folder on
    PYTHONPATH (the test-only callbacks of probes.py), plus ``extra`` (a PYTHONPATH there goes first)."""
    env = {key: value for key, value in os.environ.items() if key != "HYDRA_FULL_ERROR"}
    pythonpath = os.pathsep.join(
        filter(None, [extra.pop("PYTHONPATH", None), str(TESTS), os.environ.get("PYTHONPATH")])
    )
    env.update(PYTHONUNBUFFERED="1", PYTHONPATH=pythonpath, **extra)
    return env


def run_command(command: list[Any], cwd: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """Run ``command`` in ``cwd`` (created if need be) in :func:`command_environment` with ``env``,
    as a user would: a fresh process. The result also has ``.output``: stdout and stderr together."""
    cwd.mkdir(parents=True, exist_ok=True)
    completed = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=command_environment(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    completed.output = completed.stdout + completed.stderr
    return completed


def run_cli(module: str, *args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m resnet_cifar.<module> <args>`` in ``cwd`` with :func:`run_command`.

    Pass ``hydra.run.dir=...`` (or ``hydra.sweep.dir=...``) under a temporary folder: Hydra's
    default output folder is relative to the working directory.
    """
    return run_command([sys.executable, "-m", f"resnet_cifar.{module}", *args], cwd, timeout)


def processes_of(directory: Path) -> list[str]:
    """Command lines of the processes still running with ``directory`` in them."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(directory) in cmdline and proc.name != str(os.getpid()):
            found.append(cmdline)
    return found


def describe(completed: subprocess.CompletedProcess, tail: int = 4000) -> str:
    """The command, its exit status and the end of its output, for assertion messages."""
    return f"{' '.join(map(str, completed.args))}\nexit status {completed.returncode}\n...{completed.output[-tail:]}"


def assert_ok(completed: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """``completed`` itself, once it is known to have exited 0 without a traceback."""
    assert completed.returncode == 0, describe(completed)
    assert "Traceback" not in completed.output, describe(completed)
    return completed


def assert_usage_error(completed: subprocess.CompletedProcess, *phrases: str) -> str:
    """Exit status 2, exactly one ``error:`` line holding every phrase, and no traceback."""
    assert completed.returncode == USAGE_ERROR, describe(completed)
    assert "Traceback" not in completed.output, describe(completed)
    errors = [line for line in completed.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, describe(completed)
    assert errors[0] not in completed.stdout, "printed once, on stderr: " + describe(completed)
    for phrase in phrases:
        assert phrase in errors[0], f"{phrase!r} not in {errors[0]!r}"
    return errors[0]
