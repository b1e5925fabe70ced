"""What the project's plugins share: a plugin class that Hydra finds at every app's start, whose
implementation is imported only when Hydra sets the plugin up (Hydra's plugin guide: keep what
its scan imports cheap). The module's name starts with "_": Hydra's scan does not import it."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any, ClassVar

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


def build(implementation: str, params: dict[str, Any]) -> Any:
    """``module:Class`` imported and built with ``params``. A usage error on the way (an extra that
    is not installed, a bad setting) ends the command with its ``error:`` line and exit status 2."""
    from resnet_cifar.cli import exit_with_usage_error
    from resnet_cifar.errors import UsageError

    module, _, name = implementation.partition(":")
    try:
        return getattr(importlib.import_module(module), name)(**params)
    except UsageError as error:
        exit_with_usage_error(error)


class Deferred:
    """A plugin whose ``IMPLEMENTATION`` (``module:Class``, a Hydra plugin of the same kind) is
    built from the config's keys when Hydra sets it up; it then does what that one does."""

    IMPLEMENTATION: ClassVar[str]

    def __init__(self, **params: Any) -> None:
        self.params = params
        self.built: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.built = build(self.IMPLEMENTATION, self.params)
        self.built.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def implementation(self) -> Any:
        assert self.built is not None, "Hydra sets a plugin up before it uses it"
        return self.built


class DeferredLauncher(Deferred, Launcher):
    """A launcher built when Hydra sets it up (see :class:`Deferred`)."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        return self.implementation().launch(job_overrides, initial_job_idx)


class DeferredSweeper(Deferred, Sweeper):
    """A sweeper built when Hydra sets it up (see :class:`Deferred`)."""

    def sweep(self, arguments: list[str]) -> Any:
        return self.implementation().sweep(arguments)
