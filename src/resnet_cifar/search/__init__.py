"""The hyper-parameter search (``-m hparams_search=...``): Optuna behind Hydra's sweeper interface.

- :mod:`.sweeper`: the search itself, on Optuna's ask-and-tell interface (``hydra/sweeper=optuna_study``,
  whose Hydra plugin, hydra_plugins.resnet_cifar.optuna_study_sweeper, imports it when a search runs);
- :mod:`.space`: Hydra's sweep syntax (``tag(log, interval(0.01, 0.5))``) as Optuna distributions,
  a trial's values as overrides and as its folder's name, and a trial read back from the study
  checked against the space;
- :mod:`.study`: where the study is stored, and what the search leaves behind
  (``optimization_results.yaml``);
- :mod:`.trials`: a trial's job, and what the study is told when it ends;
- :mod:`.reporting`: the Lightning callback with which each trial reports its validation curve
  to the study, and stops when the pruner says so;
- :mod:`.pruned`: how a pruned trial's folder says so (read by the report too).

Optuna is an extra (``pip install -e '.[search]'``): only this package and the sweeper import it,
and only inside a search, so a run that does not search never loads it.
"""

from resnet_cifar.errors import UsageError

INSTALL_COMMAND = "pip install -e '.[search]'"


class SearchNotInstalled(UsageError):
    """Optuna, which the search needs, is not installed."""


def require_optuna() -> None:
    """Import Optuna, or raise :class:`SearchNotInstalled` naming the install command."""
    try:
        import optuna  # noqa: F401
    except ImportError as missing:
        raise SearchNotInstalled(
            f"the hyper-parameter search (hparams_search=...) needs Optuna, which is not installed "
            f"({missing}): {INSTALL_COMMAND}"
        ) from None


def chosen_on_test_set(metric: str) -> bool:
    """Whether optimising ``metric`` (a metrics.json key) would choose hyper-parameters on the test set."""
    return str(metric).startswith("test")
