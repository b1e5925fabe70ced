# Sourced by bench/gpu_check.sh and bench/gpu_concurrency.sh, with their arguments: the options
# both take, the Python environment, the data (decoded once into its cache), the summary file and
# the time budget.
#
# Options (each also as the environment variable in brackets):
#   --data PATH       [DATA]      CIFAR-10 as data.root takes it (torchvision's cifar-10-batches-py
#                                 folder's parent, or an image folder with train/ and test/), or a
#                                 .tar.gz holding one such folder; default: data
#   --out DIR         [OUT]       where the summary and results go; default outputs/gpu_check/<date_time>
#   --budget SECONDS  [BUDGET_S]  the whole check's time, every stage capped to fit (default 570)
#   --wheels DIR      [WHEELS]    for a machine without internet where the project is not installed:
#                                 install the wheels in DIR (Hydra, OmegaConf, ...; pip --no-index
#                                 --no-deps) into .site/ and run this checkout's src/ from there
#   --dry-run         [DRY_RUN=1] the same stages on the CPU with tiny settings, to check the script
#                                 itself on a machine without a GPU (its figures mean nothing)
# Sets REPO, DATA, OUT, SUMMARY, BUDGET_S, DRY_RUN and the functions say, elapsed and cap; the
# working directory becomes the checkout's root.

usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
    echo
    awk '/^# Options/,/^# Sets/' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}
DATA=${DATA:-data}
WHEELS=${WHEELS:-}
BUDGET_S=${BUDGET_S:-570}
DRY_RUN=${DRY_RUN:-0}
while [ $# -gt 0 ]; do
    case "$1" in
        --data) DATA=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --budget) BUDGET_S=$2; shift 2 ;;
        --wheels) WHEELS=$2; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "error: unknown option $1 (see $0 --help)" >&2; exit 2 ;;
    esac
done

START=$(date +%s)
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
absolute() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
DATA=$(absolute "$DATA")
[ -n "$WHEELS" ] && WHEELS=$(absolute "$WHEELS")
OUT=$(absolute "${OUT:-$REPO/outputs/gpu_check/$(date +%Y-%m-%d_%H-%M-%S)}")
cd "$REPO" || exit 1
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

# --- the Python environment -----------------------------------------------------------------------
if [ -n "$WHEELS" ]; then
    ls "$WHEELS"/*.whl >/dev/null 2>&1 || { say "no wheels in $WHEELS"; exit 1; }
    python3 -m pip install -q --no-index --no-deps --target .site "$WHEELS"/*.whl 2>&1 | grep -v "Running pip as the 'root'"
    export PYTHONPATH=$REPO/.site:$REPO/src${PYTHONPATH:+:$PYTHONPATH}
fi
python3 -c "import resnet_cifar.train" 2>/dev/null || {
    say "the project cannot be imported: install it (pip install -e .), or give --wheels DIR on a machine without internet"
    exit 1
}
[ "$DRY_RUN" = 1 ] || nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$SUMMARY" \
    || { say "no CUDA GPU found (nvidia-smi); --dry-run checks the script on a CPU"; exit 1; }
python3 -c "import torch, lightning, hydra; print('torch', torch.__version__, 'lightning', lightning.__version__, 'hydra', hydra.__version__, 'cuda', torch.version.cuda)" | tee -a "$SUMMARY"

# --- the data -------------------------------------------------------------------------------------
case "$DATA" in
    *.tar.gz | *.tgz)
        unpacked=${TMPDIR:-/tmp}/resnet-cifar-data
        mkdir -p "$unpacked"
        top=$(tar -tzf "$DATA" | head -n 1 | cut -d/ -f1)
        [ -n "$top" ] && [ -d "$unpacked/$top" ] || tar -xzf "$DATA" -C "$unpacked" || { say "cannot unpack $DATA"; exit 1; }
        DATA=$unpacked/$top ;;
esac
[ -d "$DATA" ] || { say "no data at $DATA: give --data PATH (a CIFAR-10 folder or a .tar.gz of one)"; exit 1; }
python3 -c "
import sys, time; from resnet_cifar.data import load_cifar
t = time.perf_counter(); a = load_cifar(sys.argv[1]); print('data', sys.argv[1] + ':', len(a.train_labels), '+', len(a.test_labels), 'images in', round(time.perf_counter() - t, 1), 's')
" "$DATA" | tee -a "$SUMMARY" || { say "cannot read the data at $DATA"; exit 1; }
say "setup done after $(elapsed) s; results in $OUT"
