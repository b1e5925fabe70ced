"""``hydra/sweeper=optuna_study`` (chosen by ``hparams_search=lr_wd``): a hyper-parameter search
whose Optuna study is stored and continued (resnet_cifar.search.sweeper, imported when a search
runs). hydra-optuna-sweeper's own ``hydra/sweeper=optuna``, where it is installed, stays as it is."""

from hydra_plugins.resnet_cifar import _deferred


class OptunaStudySweeper(_deferred.DeferredSweeper):
    """Rounds of trials asked from the study; the keys are those of conf/hydra/sweeper/optuna_study.yaml."""

    IMPLEMENTATION = "resnet_cifar.search.sweeper:OptunaStudySweeper"
