"""Run by every interpreter that a command under test starts (this folder is on their PYTHONPATH):
outside a SLURM job it makes ``sys.executable`` the command server's stand-in interpreter
(forked_commands.py), so that ``python -m resnet_cifar.<module>`` started by, say, a joblib
worker or torchrun is forked too. Inside a SLURM job every process stays the job's own."""

import os
import sys

_stand_in = os.environ.get("FORKED_COMMANDS_PYTHON")
if _stand_in and "SLURM_JOB_ID" not in os.environ:
    sys.executable = _stand_in
