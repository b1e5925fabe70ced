"""What entry points share: user errors as one message without a traceback, run files."""

import functools
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hydra.errors import InstantiationException

from resnet_cifar.errors import UsageError

Task = TypeVar("Task", bound=Callable[..., Any])
USAGE_ERROR_EXIT_CODE = 2


def usage_error_in(exception: BaseException) -> UsageError | None:
    """The UsageError behind ``exception``, also when Hydra's instantiate wrapped it."""
    while exception is not None:
        if isinstance(exception, UsageError):
            return exception
        if not isinstance(exception, InstantiationException):
            return None
        exception = exception.__cause__
    return None


def exit_on_usage_error(task: Task) -> Task:
    """Print a UsageError as ``error: <message>`` and exit with status 2; other errors propagate."""

    @functools.wraps(task)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return task(*args, **kwargs)
        except Exception as exception:
            usage_error = usage_error_in(exception)
            if usage_error is None:
                raise
            print(f"error: {usage_error}", file=sys.stderr, flush=True)
            raise SystemExit(USAGE_ERROR_EXIT_CODE) from None

    return wrapper  # type: ignore[return-value]


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    """Write JSON so that readers see the old file or the whole new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as file:
        json.dump(data, file, indent=2)
        file.write("\n")
    os.chmod(file.name, 0o644)
    os.replace(file.name, path)
