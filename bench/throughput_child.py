"""One measurement, in the child process that bench/throughput.py starts for each configuration.

The child trains the pipeline named by ``--child`` at ``--depth`` and prints its measurement as
one line, ``RESULT`` and a JSON object, for the parent to collect. With ``--host-overhead`` it
first wraps the work shared by the project and bare pipelines (``SharedWork``) in a clock.
"""

from __future__ import annotations

import argparse
import json
import warnings

from throughput_clock import SharedWork
from throughput_pipelines import compile_scope_of
from throughput_plain import measure_bare, measure_classic
from throughput_project import measure_project


def run_child(args: argparse.Namespace) -> None:
    """Measure ``args.child`` at ``args.depth`` and print the ``RESULT`` line."""
    import logging

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    if args.host_overhead:
        SharedWork.install(whole_step=compile_scope_of(args.child) == "step")
    if args.child == "classic":
        result = measure_classic(args)
    elif args.child.startswith("bare"):
        result = measure_bare(args, compile_scope_of(args.child))
    else:
        result = measure_project(args, compile_scope_of(args.child))
    print("RESULT " + json.dumps(result), flush=True)
