#!/usr/bin/env bash
# The paper's CIFAR-10 study: every depth in DEPTHS x every seed in SEEDS, one Hydra multirun.
# Extra arguments go to Hydra, e.g. ./multirun.sh trainer=gpu data.root=data hydra.sweep.dir=outputs/study
set -euo pipefail
DEPTHS=${DEPTHS:-"20 32 44 56"}
SEEDS=${SEEDS:-"0 1 2 3 4"}
comma_list() { echo "$1" | xargs | tr ' ' ','; }
exec python -m resnet_cifar.train -m "model.depth=$(comma_list "$DEPTHS")" "seed=$(comma_list "$SEEDS")" "$@"
