"""The commands under test, each in a process forked from one that has imported their heavy
dependencies once.

A fresh interpreter spends about 5 s of CPU importing torch, Lightning (which imports
torchmetrics, torchvision's models, torch._dynamo and scipy.signal) and Hydra before a command
does anything: on 2 cores, most of a tiny training run and all of a refused one. Each pytest
worker starts one server process that imports them (``PRELOADED``), then forks it for every
:func:`run_forked` call. The fork is a process of its own, like ``python -m resnet_cifar.<module>``:
its own working directory, environment, arguments, standard streams, process group and exit
status; the project's own modules are imported in it, not in the server. What a fork cannot show
is what a fresh interpreter prints while importing those libraries: tests of that
(tests/training/test_quiet.py) start a fresh one.
"""

from __future__ import annotations

import atexit
import json
import os
import runpy
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path
from typing import Any

PRELOADED = ("torch", "torchvision", "lightning.pytorch", "hydra", "omegaconf", "torchmetrics", "tensorboard")
MESSAGE_BYTES = 1 << 20


class Server:
    """This pytest worker's server: started at the first command, stopped when the worker exits."""

    process: subprocess.Popen | None = None
    address = ""

    @classmethod
    def address_for(cls, env: dict[str, str]) -> str:
        if cls.process is None or cls.process.poll() is not None:
            folder = tempfile.mkdtemp(prefix="forked-commands-")
            atexit.register(shutil.rmtree, folder, True)
            cls.address = os.path.join(folder, "socket")
            cls.process = subprocess.Popen(
                [sys.executable, __file__, cls.address], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True
            )
            ready = cls.process.stdout.readline()
            if ready.strip() != "ready":
                raise RuntimeError(f"the command server did not start (exit status {cls.process.wait()})")
            atexit.register(cls.process.kill)
        return cls.address


def run_forked(module: str, args: list[str], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """``python -m <module> <args>`` in ``cwd`` with ``env``, as :func:`subprocess.run` with
    ``capture_output=True, text=True`` would run it (TimeoutExpired after killing its process group)."""
    command = [sys.executable, "-m", module, *args]
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr, open(os.devnull) as stdin:
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as connection:
            connection.connect(Server.address_for(env))
            request = json.dumps({"module": module, "args": args, "cwd": str(cwd), "env": env}).encode()
            socket.send_fds(connection, [request], [stdin.fileno(), stdout.fileno(), stderr.fileno()])
            pid = int(connection.recv(64))
            connection.settimeout(timeout)
            try:
                returncode = int(connection.recv(64))
            except TimeoutError:
                os.killpg(pid, signal.SIGKILL)
                raise subprocess.TimeoutExpired(command, timeout) from None
        outputs = []
        for stream in (stdout, stderr):
            stream.seek(0)
            outputs.append(stream.read().decode(errors="replace"))
    return subprocess.CompletedProcess(command, returncode, *outputs)


def serve(address: str) -> None:
    """Import ``PRELOADED``, then fork for each request until the pytest worker is gone; report
    each fork's exit status on its request's connection."""
    import importlib

    for name in PRELOADED:
        importlib.import_module(name)
    parent = os.getppid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(address)
    listener.listen(16)
    print("ready", flush=True)
    running: dict[int, socket.socket] = {}
    while os.getppid() == parent:
        if select.select([listener], [], [], 0.05)[0]:
            connection, _ = listener.accept()
            message, fds, _, _ = socket.recv_fds(connection, MESSAGE_BYTES, 3)
            pid = os.fork()
            if pid == 0:
                listener.close()
                connection.close()
                run_command(json.loads(message), fds)
            for fd in fds:
                os.close(fd)
            connection.send(str(pid).encode())
            running[pid] = connection
        while running:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            connection = running.pop(pid)
            connection.send(str(os.waitstatus_to_exitcode(status)).encode())
            connection.close()


def run_command(request: dict[str, Any], fds: list[int]) -> None:
    """In the fork: become the command, run its module as ``python -m`` would, and exit as the
    interpreter would (threads joined, exit functions run, streams flushed)."""
    os.setsid()  # its own process group, which a timeout kills whole
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    extra_paths = [path for path in request["env"].get("PYTHONPATH", "").split(os.pathsep) if path and path not in sys.path]
    sys.path[:0] = extra_paths
    if "OMP_NUM_THREADS" in os.environ:  # read by the OpenMP runtime when torch was imported, here
        import torch

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    sys.argv = [request["module"], *request["args"]]
    code: Any = 0
    try:
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
    except SystemExit as exit:
        code = exit.code
    except BaseException:
        traceback.print_exc()
        code = 1
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    try:
        threading._shutdown()  # as the interpreter does at exit: wait for non-daemon threads
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


if __name__ == "__main__":
    serve(sys.argv[1])
