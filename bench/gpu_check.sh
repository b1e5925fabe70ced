#!/usr/bin/env bash
# The GPU checks of issue 3, in one run of at most 10 minutes on the H200 device machine.
#
# Prepare once, in the checkout (both folders are git-ignored):
#     mkdir -p .wheels .data
#     cp /work/shared/wheels/*.whl .wheels/
#     cp /work/shared/data/cifar10-jpeg.tar.gz .data/
# Run it through the device tool:
#     run(command="bash bench/gpu_check.sh", carry=[".wheels", ".data"], timeout_s=600)
#
# What it does, each stage capped so that the whole fits in BUDGET_S seconds:
#   1. installs the carried wheels (Hydra, OmegaConf, antlr4) into .site/, unpacks the data and
#      decodes it once into its uint8 cache;
#   2. the bench table in bf16: project / bare loop / classic pipeline for ResNet-20, 56, 110,
#      with a host-sync count of the project's training step;
#   3. the same for ResNet-20 with model.compile=true (CUDA graphs), and ResNet-1202 at batch 128;
#   4. one full 64k-step ResNet-20 paper schedule on the real data in bf16 (trainer=gpu),
#      compiled if stage 3's compiled run worked without falling back, with validation every
#      epoch and the test at the end; its metrics.json.
# Everything is printed and also written under $OUT (at most 8 files come back from there):
# summary.txt, bench.txt/json, bench_compile.txt/json, bench_1202.txt, train.out, metrics.json.
#
# DRY_RUN=1 bash bench/gpu_check.sh   walks through the same stages on the CPU with tiny settings
# (to check the script itself where no GPU is lent; its figures mean nothing).
set -u -o pipefail

BUDGET_S=${BUDGET_S:-570}          # leave the tool's 600 s limit a margin
START=$(date +%s)
OUT=${OUT:-/tmp/gpu_check_out}
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
export PYTHONUNBUFFERED=1

say() { echo "== $*" | tee -a "$SUMMARY"; }
elapsed() { echo $(( $(date +%s) - START )); }
left() { echo $(( BUDGET_S - $(elapsed) )); }
cap() {  # cap SECONDS: at most SECONDS, and never past the budget (minus a margin for the summary)
    local want=$1 room=$(( $(left) - 15 ))
    (( room < want )) && want=$room
    (( want < 1 )) && want=1
    echo "$want"
}

# --- 1. environment and data ------------------------------------------------------------------
python3 -m pip install -q --no-index --no-deps --target .site .wheels/*.whl || { say "wheel install failed"; exit 1; }
export PYTHONPATH=$PWD/.site:$PWD/src
if [ "${DRY_RUN:-0}" = 1 ]; then
    DEVICE=(--device cpu --precision bf16-mixed --batch-size 16)
    EAGER=(--depths 8 --steps 2 --warmup 1); COMPILED=(--depths 8 --steps 2 --warmup 1); BIG=(--depths 14 --steps 1 --warmup 1)
    TRAIN=(trainer=cpu trainer.precision=bf16-mixed model.depth=8 data.batch_size=16 trainer.max_steps=6 'scheduler.milestones=[3,5]')
else
    DEVICE=(--device cuda --precision bf16-mixed)
    EAGER=(--depths 20 56 110 --steps 200 --warmup 30); COMPILED=(--depths 20 --steps 300 --warmup 50)
    BIG=(--depths 1202 --steps 10 --warmup 3)
    TRAIN=(trainer=gpu)
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader | tee -a "$SUMMARY"
fi
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

# --- 2. bench table, bf16, eager ----------------------------------------------------------------
BENCH=(python3 bench/throughput.py "${DEVICE[@]}" --data-root "$DATA")
timeout "$(cap 200)" "${BENCH[@]}" "${EAGER[@]}" --pipelines project bare classic --sync-check --json "$OUT/bench.json" 2>/tmp/bench.err | tee "$OUT/bench.txt"
say "bench (eager) exit $? after $(elapsed) s"
tail -n 20 /tmp/bench.err | tee -a "$SUMMARY"

# --- 3. compiled ResNet-20; ResNet-1202 at batch 128 ----------------------------------------------
timeout "$(cap 150)" "${BENCH[@]}" "${COMPILED[@]}" --pipelines project-compile bare-compile --sync-check --json "$OUT/bench_compile.json" 2>/tmp/bench_compile.err | tee "$OUT/bench_compile.txt"
say "bench (compile) exit $? after $(elapsed) s"
tail -n 20 /tmp/bench_compile.err | tee -a "$SUMMARY"
timeout "$(cap 90)" "${BENCH[@]}" "${BIG[@]}" --pipelines project 2>/tmp/bench_1202.err | tee "$OUT/bench_1202.txt"
say "ResNet-1202 at batch 128 in bf16: exit $? after $(elapsed) s"
tail -n 5 /tmp/bench_1202.err | tee -a "$SUMMARY"
COMPILE=$(python3 - "$OUT/bench_compile.json" <<'EOF'
import json, sys
try:
    runs = [r for m in json.load(open(sys.argv[1]))["measurements"] if m["pipeline"] == "project-compile" for r in m["runs"]]
    ok = bool(runs) and all("error" not in r and r.get("compiled") and not r.get("fallback_warning") for r in runs)
except Exception:
    ok = False
print("true" if ok else "false")
EOF
)
say "the full run uses model.compile=$COMPILE"

# --- 4. the paper's full schedule: ResNet-20, 64k steps, bf16, real data --------------------------
RUN_DIR=/tmp/r20_full
FULL_CAP=$(cap 600)
say "full ResNet-20 schedule, at most $FULL_CAP s"
T0=$(date +%s)
rm -rf "$RUN_DIR"
timeout "$FULL_CAP" python3 -m resnet_cifar.train "${TRAIN[@]}" data.root="$DATA" model.compile="$COMPILE" \
    hydra.run.dir="$RUN_DIR" >"$OUT/train.out" 2>&1
STATUS=$?
say "full run exit $STATUS after $(( $(date +%s) - T0 )) s (process start to exit, including data load, compile, validation and test)"
grep -E "error|Error|Warning|test error" "$OUT/train.out" | grep -v -i "userwarning: The '" | tail -n 8 | tee -a "$SUMMARY"
if [ -f "$RUN_DIR/metrics.json" ]; then
    cp "$RUN_DIR/metrics.json" "$OUT/metrics.json"
    python3 -c "
import json; m = json.load(open('$RUN_DIR/metrics.json'))
print('steps', m['steps'], '| fit wall_s', m['wall_s'], '| images/s (training)', m['images_per_s'],
      '| test_err', m['test_err'], '| val_err', m['val_err'], '| train_err', m['train_err'])
" | tee -a "$SUMMARY"
else
    python3 -c "
import torch; c = torch.load('$RUN_DIR/checkpoints/last.ckpt', map_location='cpu', weights_only=False)
print('no metrics.json; last checkpoint at step', c['global_step'])
" 2>/dev/null | tee -a "$SUMMARY" || say "no checkpoint either"
fi

say "total $(elapsed) s"
echo
cat "$OUT/bench.txt" "$OUT/bench_compile.txt" "$OUT/bench_1202.txt" 2>/dev/null
