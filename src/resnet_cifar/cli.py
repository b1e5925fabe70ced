"""What entry points share: user errors as one message without a traceback."""

import errno
import functools
import logging
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from hydra.errors import InstantiationException
from lightning.fabric.utilities.exceptions import MisconfigurationException

from resnet_cifar.errors import UsageError, error_line

Task = TypeVar("Task", bound=Callable[..., Any])
USAGE_ERROR_EXIT_CODE = 2
# Writing failed for a reason the user can fix: space, permissions, a path through a file.
UNWRITABLE = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST}


def unwritable_output(error: OSError) -> UsageError:
    where = error.filename or "the output directory"
    return UsageError(
        f"cannot write {where}: {error.strerror}; free disk space or choose a writable output "
        "directory (hydra.run.dir=... or hydra.sweep.dir=...). Finished results and checkpoints "
        "are only ever replaced whole, so what is there is complete"
    )


def usage_error_in(exception: BaseException) -> UsageError | None:
    """The UsageError behind ``exception``, also when Hydra's instantiate wrapped it."""
    while exception is not None:
        if isinstance(exception, UsageError):
            return exception
        if isinstance(exception, OSError) and exception.errno in UNWRITABLE:
            return unwritable_output(exception)
        if isinstance(exception, MisconfigurationException):  # Lightning's word on a Trainer option
            return UsageError(f"{exception} (a Trainer or module setting: see conf/trainer/ and conf/module/)")
        if not isinstance(exception, InstantiationException):
            return None
        exception = exception.__cause__
    return None


def raises_usage_errors(function: Task) -> Task:
    """The Python API's side (``train``, ``evaluate``): where :func:`usage_error_in` finds a
    UsageError behind a failure, that error is raised in its place, with the message the command
    would print (not Hydra's InstantiationException around it, nor Lightning's own exception)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except Exception as exception:
            error = usage_error_in(exception)
            if error is None or error is exception:
                raise
            if error.__traceback__ is not None:  # raised inside, then wrapped: as it was raised
                raise error from error.__cause__
            raise error from exception  # made here from Lightning's or the system's, which is its cause

    return wrapper  # type: ignore[return-value]


def log_to_run_files(message: str) -> None:
    """``message`` as an ERROR record in the files of the root logger's handlers (Hydra's job
    logging: the run's train.log), not on its console: the command prints it there itself."""
    root = logging.getLogger()
    record = logging.getLogger(__name__).makeRecord(__name__, logging.ERROR, __file__, 0, message, None, None)
    for handler in root.handlers:
        if isinstance(handler, logging.FileHandler) and record.levelno >= handler.level:
            handler.handle(record)


def exit_with_usage_error(error: UsageError) -> NoReturn:
    """Print ``error: <message>`` and exit with status 2."""
    print(error_line(error), file=sys.stderr, flush=True)
    raise SystemExit(USAGE_ERROR_EXIT_CODE) from None


def exit_on_usage_error(task: Task) -> Task:
    """Print a UsageError as ``error: <message>`` and exit with status 2; other errors propagate.
    The line goes to the run's log file too (train.log), so that the run folder says why it
    holds no results."""

    @functools.wraps(task)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return task(*args, **kwargs)
        except Exception as exception:
            usage_error = usage_error_in(exception)
            if usage_error is None:
                raise
            log_to_run_files(error_line(usage_error))
            exit_with_usage_error(usage_error)

    return wrapper  # type: ignore[return-value]
