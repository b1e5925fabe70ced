"""resnet-cifar's Hydra plugins: ``hydra/launcher=slurm``, ``hydra/launcher=ray_cluster`` and
``hydra/sweeper=optuna_study`` (chosen by ``hparams_search=...``).

Hydra imports every module of the ``hydra_plugins`` namespace at the start of every Hydra app in
the environment, the user's own apps too. So these modules import Hydra only and change nothing
in Hydra's global state; each plugin imports its implementation (resnet_cifar.launch.slurm,
resnet_cifar.launch.ray, resnet_cifar.search.sweeper: torch, Lightning, Optuna, Ray) when Hydra
sets it up for a sweep of the project's own command.
"""
