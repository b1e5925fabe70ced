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

Commands start such interpreters themselves (a DDP job's ranks, ``multirun.sh``'s ``$PYTHON``).
In a fork ``sys.executable`` is a stand-in for the interpreter (:func:`python_for_commands`):
given ``-m resnet_cifar.<module>`` it has the server fork the command and stands for it until it
ends (signals passed on, the same exit status or signal, and the fork killed when the stand-in is
killed); given anything else it becomes the real interpreter. The fork sees the stand-in's parent
as its own (``os.getppid``), and :func:`running_commands` lists the forks still running, whose
``/proc/<pid>/cmdline`` is the server's.
"""

from __future__ import annotations

import atexit
import contextlib
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
ADDRESS_VARIABLE = "FORKED_COMMANDS_ADDRESS"
STAND_IN_VARIABLE = "FORKED_COMMANDS_PYTHON"  # read by sitecustomize.py
# What the stand-in passes on to the fork it stands for (a real interpreter would receive them).
FORWARDED_SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)
STAND_IN = """#!{python} -IS
import sys
sys.path.insert(0, {tests!r})
from forked_commands import stand_in
stand_in({python!r})
"""


class Server:
    """This pytest worker's server: started at the first command, stopped when the worker exits.
    Its folder holds its ``socket``, the stand-in interpreter ``python``, and ``running/<pid>``:
    the command line of each fork still running."""

    process: subprocess.Popen | None = None
    folder = ""

    @classmethod
    def file(cls, name: str) -> str:
        return os.path.join(cls.folder, name)

    @classmethod
    def start(cls, env: dict[str, str]) -> None:
        if cls.process is not None and cls.process.poll() is None:
            return
        cls.folder = tempfile.mkdtemp(prefix="forked-commands-")
        atexit.register(shutil.rmtree, cls.folder, True)
        os.mkdir(cls.file("running"))
        with open(cls.file("python"), "w") as file:
            file.write(STAND_IN.format(python=sys.executable, tests=os.path.dirname(os.path.abspath(__file__))))
        os.chmod(cls.file("python"), 0o755)
        cls.process = subprocess.Popen(
            [sys.executable, __file__, cls.folder], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True
        )
        ready = cls.process.stdout.readline()
        if ready.strip() != "ready":
            raise RuntimeError(f"the command server did not start (exit status {cls.process.wait()})")
        atexit.register(cls.process.kill)


def python_for_commands(env: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The stand-in interpreter and the environment it needs: commands given it as ``$PYTHON``
    (or as ``sys.executable``) run their ``python -m resnet_cifar.<module>`` in forks."""
    Server.start(env)
    python = Server.file("python")
    return python, {**env, ADDRESS_VARIABLE: Server.file("socket"), STAND_IN_VARIABLE: python}


def running_commands() -> list[str]:
    """The command lines of this worker's forks still running."""
    if not Server.folder:
        return []
    lines = []
    for entry in Path(Server.file("running")).iterdir():
        try:
            lines.append(entry.read_text())
        except FileNotFoundError:  # it ended meanwhile
            pass
    return lines


def run_forked(
    module: str, args: list[str], cwd: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess:
    """``python -m <module> <args>`` in ``cwd`` with ``env``, as :func:`subprocess.run` with
    ``capture_output=True, text=True`` would run it (TimeoutExpired after killing its process group)."""
    command = [sys.executable, "-m", module, *args]
    python, env = python_for_commands(env)
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr, open(os.devnull) as stdin:
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as connection:
            connection.connect(env[ADDRESS_VARIABLE])
            request = json.dumps(
                {"module": module, "args": args, "cwd": str(cwd), "env": env, "python": python}
            ).encode()
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


def serve(folder: str) -> None:
    """Import ``PRELOADED``, then fork for each request until the pytest worker is gone; report
    each fork's exit status on its request's connection, and kill a fork whose client is gone."""
    import importlib

    for name in PRELOADED:
        importlib.import_module(name)
    parent = os.getppid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(os.path.join(folder, "socket"))
    listener.listen(64)
    print("ready", flush=True)
    running: dict[int, socket.socket] = {}  # pid -> its client's connection

    def finished(pid: int, status: int) -> None:
        Path(folder, "running", str(pid)).unlink()
        connection = running.pop(pid)
        with contextlib.suppress(OSError):  # its client may be gone
            connection.send(str(os.waitstatus_to_exitcode(status)).encode())
        connection.close()

    while os.getppid() == parent:
        readable = select.select([listener, *running.values()], [], [], 0.05)[0]
        for pid, connection in list(running.items()):
            if connection in readable and not connection.recv(64):  # the client died: so does its fork
                for kill in (os.killpg, os.kill):  # its process group, or itself before it made one
                    with contextlib.suppress(ProcessLookupError):
                        kill(pid, signal.SIGKILL)
                finished(*os.waitpid(pid, 0))
        if listener in readable:
            connection, _ = listener.accept()
            message, fds, _, _ = socket.recv_fds(connection, MESSAGE_BYTES, 3)
            request = json.loads(message)
            pid = os.fork()
            if pid == 0:
                listener.close()
                for other in [connection, *running.values()]:
                    other.close()
                run_command(request, fds)
            for fd in fds:
                os.close(fd)
            Path(folder, "running", str(pid)).write_text(
                " ".join(["python", "-m", request["module"], *request["args"]])
            )
            with contextlib.suppress(OSError):
                connection.send(str(pid).encode())
            running[pid] = connection
        while running:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            finished(pid, status)


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
    sys.executable = request["python"]
    if "parent" in request:  # started by the stand-in: its parent is the command's parent
        os.getppid = lambda: request["parent"]
    extra_paths = [
        path for path in request["env"].get("PYTHONPATH", "").split(os.pathsep) if path and path not in sys.path
    ]
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


def stand_in(python: str) -> None:
    """The stand-in interpreter: fork ``-m resnet_cifar.<module> ...`` from the server and wait for
    it, passing signals on; exit as it did. Anything else runs in the real ``python``."""
    args = sys.argv[1:]
    start = 1 if args[:1] == ["-u"] else 0
    address = os.environ.get(ADDRESS_VARIABLE)
    module = args[start + 1] if args[start : start + 1] == ["-m"] and len(args) > start + 1 else ""
    if not address or not module.startswith("resnet_cifar."):
        os.execv(python, [python, *args])
    fork: list[int] = []
    pending: list[int] = []

    def pass_on(signum: int, frame: object) -> None:
        if not fork:
            pending.append(signum)
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(fork[0], signum)

    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, pass_on)
    request = {
        "module": module,
        "args": args[start + 2 :],
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "python": sys.argv[0],
        "parent": os.getppid(),
    }
    streams = [fd if is_open(fd) else os.open(os.devnull, os.O_RDWR) for fd in (0, 1, 2)]
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as connection:
        connection.connect(address)
        socket.send_fds(connection, [json.dumps(request).encode()], streams)
        fork.append(int(connection.recv(64)))
        for signum in pending:
            pass_on(signum, None)
        reply = connection.recv(64)
    if not reply:
        sys.exit("error: the command server is gone")
    code = int(reply)
    if code < 0:  # killed by a signal: so is the stand-in
        if -code in FORWARDED_SIGNALS:
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        code = 128 - code
    sys.exit(code)


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


if __name__ == "__main__":
    serve(sys.argv[1])
