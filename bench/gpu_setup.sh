# Sourced by the GPU check scripts (bench/gpu_check.sh, bench/gpu_concurrency.sh): the budget
# clock, the summary file, the carried wheels and the real data, decoded once into its cache.
#
# Prepare once, in the checkout (both folders are git-ignored):
#     mkdir -p .wheels .data
#     cp /work/shared/wheels/*.whl .wheels/
#     cp /work/shared/data/cifar10-jpeg.tar.gz .data/
# Sets BUDGET_S, OUT, SUMMARY, DATA, DRY_RUN and the functions say, elapsed and cap.

BUDGET_S=${BUDGET_S:-570}
START=$(date +%s)
OUT=${OUT:-/tmp/gpu_check_out}
DRY_RUN=${DRY_RUN:-0}
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
export PYTHONUNBUFFERED=1

say() { echo "== $*" | tee -a "$SUMMARY"; }
elapsed() { echo $(( $(date +%s) - START )); }
cap() {  # cap SECONDS [RESERVE]: at most SECONDS, leaving RESERVE seconds (default 15) of the budget
    local want=$1 room=$(( BUDGET_S - $(elapsed) - ${2:-15} ))
    (( room < want )) && want=$room
    (( want < 1 )) && want=1
    echo "$want"
}

python3 -m pip install -q --no-index --no-deps --target .site .wheels/*.whl 2>&1 | grep -v "Running pip as the 'root'" \
    || true
export PYTHONPATH=$PWD/.site:$PWD/src
python3 -c "import hydra, omegaconf" || { say "hydra is missing: were .wheels carried?"; exit 1; }
[ "$DRY_RUN" = 1 ] || nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$SUMMARY"
python3 -c "import torch, lightning, hydra; print('torch', torch.__version__, 'lightning', lightning.__version__, 'hydra', hydra.__version__, 'cuda', torch.version.cuda)" | tee -a "$SUMMARY"

DATA_PARENT=${DATA_PARENT:-/tmp/cifar}
DATA=$DATA_PARENT/cifar10-jpeg
mkdir -p "$DATA_PARENT"
[ -d "$DATA/train" ] || tar -xzf .data/cifar10-jpeg.tar.gz -C "$DATA_PARENT" || { say "data unpack failed"; exit 1; }
python3 -c "
import time; from resnet_cifar.data import load_cifar
t = time.perf_counter(); a = load_cifar('$DATA'); print('decoded', len(a.train_labels), '+', len(a.test_labels), 'images in', round(time.perf_counter() - t, 1), 's')
" | tee -a "$SUMMARY"
say "setup done after $(elapsed) s"
