#!/usr/bin/env bash
# The paper's CIFAR-10 study as one command: every variant in VARIANTS x depth in DEPTHS x seed
# in SEEDS as one Hydra multirun, then the report (table and figures) in the sweep directory.
#
#   ./multirun.sh                                          # ResNet-20/32/44/56 x 5 seeds
#   VARIANTS="resnet plain" ./multirun.sh trainer=gpu      # plus the plain nets of Fig. 6
#   ./multirun.sh hydra/launcher=parallel hydra.launcher.n_jobs=8 trainer=gpu   # 8 jobs at once
#   ./multirun.sh hydra/launcher=slurm hydra.launcher.partition=gpu trainer=gpu # on SLURM
#   ./multirun.sh hydra/launcher=ray_cluster hydra.launcher.ray.init.address=auto trainer=gpu  # on a Ray cluster
#
# Extra arguments go to Hydra. The sweep goes to outputs/study/<date_time> unless
# hydra.sweep.dir=... is given; launched again with the same hydra.sweep.dir, finished jobs are
# kept and unfinished ones resume from their checkpoints/last.ckpt. Environment: DEPTHS
# (default "20 32 44 56"), SEEDS ("0 1 2 3 4"), VARIANTS ("resnet"; words: resnet, plain),
# PYTHON (the interpreter, default python).
set -uo pipefail
DEPTHS=${DEPTHS:-"20 32 44 56"}
SEEDS=${SEEDS:-"0 1 2 3 4"}
VARIANTS=${VARIANTS:-"resnet"}
PYTHON=${PYTHON:-python}
comma_list() { echo "$1" | xargs | tr ' ' ','; }

for variant in $VARIANTS; do
  case "$variant" in
    resnet | plain) ;;
    *) echo "error: VARIANTS has '$variant'; use resnet and/or plain, e.g. VARIANTS=\"resnet plain\"" >&2; exit 2 ;;
  esac
done

sweep_dir=""
for arg in "$@"; do
  case "$arg" in
    hydra.sweep.dir=*) sweep_dir=${arg#hydra.sweep.dir=} ;;
  esac
done
sweep_args=()
if [[ -z "$sweep_dir" ]]; then
  sweep_dir="outputs/study/$(date +%Y-%m-%d_%H-%M-%S)"
  sweep_args=("hydra.sweep.dir=$sweep_dir")
elif [[ "$sweep_dir" == *'$'* ]]; then
  echo "error: give hydra.sweep.dir as a plain path (not $sweep_dir): the report must find the sweep" >&2
  exit 2
fi

# Job directories are named after what tells the jobs apart (model.depth=20,model=resnet,seed=0):
# the extra arguments that every job shares are left out of the names.
exclude_shared=$("$PYTHON" -m resnet_cifar.launch.study_names "$@") || exit 1
"$PYTHON" -m resnet_cifar.train -m "model=$(comma_list "$VARIANTS")" "model.depth=$(comma_list "$DEPTHS")" \
  "seed=$(comma_list "$SEEDS")" "$exclude_shared" \
  "${sweep_args[@]}" "$@"
status=$?
if [[ -d "$sweep_dir" ]]; then
  # Also after a failed sweep: the report lists the jobs that did not finish.
  "$PYTHON" -m resnet_cifar.report "$sweep_dir" || status=$((status ? status : $?))
fi
if [[ $status -ne 0 ]]; then
  echo "the sweep did not finish (exit status $status); run the same command with hydra.sweep.dir=$sweep_dir to resume it" >&2
fi
exit $status
