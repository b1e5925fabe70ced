"""Errors the user can fix. Entry points print their message alone, without a traceback."""

import pickle
import sys
from collections.abc import Callable


class UsageError(Exception):
    """A problem in the user's input; the message says what is wrong and how to fix it."""


class ConfigError(UsageError, ValueError):
    """A configuration value that is not allowed."""


class DataError(UsageError):
    """Missing, unreadable or corrupt data files."""


class CheckpointError(UsageError):
    """A checkpoint that is missing, unreadable or does not fit the configuration."""


class UntrustedConfig(UsageError):
    """A config read from a file names a target or holds an interpolation that the user has not allowed."""


class TrainingDiverged(UsageError):
    """The loss became NaN or infinite; the run stops before it saves anything worse."""


# Lines of torch's message that are advice (some of it to load unsafely), not the reason.
TORCH_ADVICE = ("Weights only load failed", "Please file an issue", "Check the documentation", "(1)", "(2)")


def unpickler_reason(error: pickle.UnpicklingError) -> str:
    """The weights-only unpickler's own reason, without torch's advice around it."""
    lines = [line.strip() for line in str(error).splitlines()]
    reasons = [
        line.removeprefix("WeightsUnpickler error:").strip()
        for line in lines
        if line and not line.startswith(TORCH_ADVICE)
    ]
    reason = reasons[-1] if reasons else lines[0] if lines else type(error).__name__
    return reason.split(" Please use `torch.serialization")[0]


def error_line(error: UsageError) -> str:
    """What a command prints for ``error``: ``error: <what is wrong and how to fix it>``."""
    return f"error: {error}"


def exit_status(action: Callable[[], str], output: str) -> int:
    """Run a plain command's ``action`` (the report, the export) and print the line it returns;
    a UsageError, or an OSError while writing ``output``, is printed as one ``error:`` line
    instead. Returns the command's exit status: 0, or 2."""
    try:
        print(action())
    except UsageError as error:
        print(error_line(error), file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: cannot write {output}: {error.strerror or error}", file=sys.stderr)
        return 2
    return 0
