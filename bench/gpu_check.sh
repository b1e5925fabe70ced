#!/usr/bin/env bash
# The GPU check: what this project does on one CUDA GPU, in one command of about 10 minutes.
#
#     bash bench/gpu_check.sh --data PATH [--out DIR] [--budget SECONDS] [--wheels DIR] [--dry-run]
#
# Run it from a checkout with the project installed (pip install -e .), on a machine with a CUDA
# GPU, with CIFAR-10 at PATH. Stages, each capped so that the whole ends within the budget:
#   1. the full paper schedule: ResNet-20 (FULL_DEPTH), 64k steps on the real data in bf16
#      (trainer=gpu), with MODULE (default whole_step: the whole step as one CUDA graph;
#      classifier: the network compiled), validation every epoch and the test at the end; the
#      wall time from process start to exit, and the run's metrics.json (steady images/s,
#      compile time, test error). A compiled run that fails in its first two minutes is rerun
#      uncompiled (module=classifier module.compile=false);
#   2. the bench table in bf16: the project's path, a bare PyTorch loop and the classic
#      torchvision pipeline, for ResNet-20, 56 and 110, with the host syncs per step;
#   3. ResNet-20 compiled: the network alone (project-compile, bare-compile) and the whole step
#      (project-step, bare-step), noting any step where CUDA graphs were skipped;
#   4. ResNet-1202 at batch 128 in bf16: whether it fits and trains, and its memory;
#   5. the host time per step (bench/throughput.py --host-overhead): the framework's share of a
#      step that costs the GPU almost nothing.
# It prints a summary and writes it with the tables to the output folder: summary.txt, train.out,
# metrics.json, bench.txt/json, bench_compile.txt/json, bench_1202.txt. The full run's directory
# (checkpoints, TensorBoard events) stays in WORK (default $TMPDIR/resnet-cifar-gpu-check).
# Environment: FULL_DEPTH (20), MODULE (whole_step or classifier), WORK.
set -u -o pipefail
source "$(dirname "$0")/gpu_setup.sh" "$@"
FULL_DEPTH=${FULL_DEPTH:-20}
MODULE=${MODULE:-whole_step}
WORK=${WORK:-${TMPDIR:-/tmp}/resnet-cifar-gpu-check}
mkdir -p "$WORK"
if [ "$DRY_RUN" = 1 ]; then
    DEVICE=(--device cpu --precision bf16-mixed --batch-size 16)
    EAGER=(--depths 8 --steps 2 --warmup 1); COMPILED=(--depths 8 --steps 2 --warmup 1); BIG=(--depths 14 --steps 1 --warmup 1)
    TRAIN=(trainer=cpu trainer.precision=bf16-mixed model.depth=8 data.batch_size=16 trainer.max_steps=6 'scheduler.milestones=[3,5]')
    HOST=(--device cpu --steps 2 --warmup 1)
else
    DEVICE=(--device cuda --precision bf16-mixed)
    EAGER=(--depths 20 56 110 --steps 100 --warmup 20); COMPILED=(--depths 20 --steps 200 --warmup 30)
    BIG=(--depths 1202 --steps 5 --warmup 3)
    TRAIN=(trainer=gpu model.depth="$FULL_DEPTH")
    HOST=(--device cuda)
fi

# --- 1. the paper's full schedule ----------------------------------------------------------------
RUN_DIR=$WORK/full_run
full_run() {  # full_run CAP MODULE_OVERRIDES...
    local cap=$1; shift
    rm -rf "$RUN_DIR"
    local t0=$(date +%s)
    timeout "$cap" python3 -m resnet_cifar.train "${TRAIN[@]}" data.root="$DATA" "$@" hydra.run.dir="$RUN_DIR" >"$OUT/train.out" 2>&1
    local status=$?
    RUN_S=$(( $(date +%s) - t0 ))
    say "full run ($*): exit $status after $RUN_S s, process start to exit (data, compile, steps, validation every epoch, test)"
    return $status
}
if [ "$MODULE" = classifier ]; then FIRST=(module=classifier module.compile=true); else FIRST=(module="$MODULE"); fi
full_run "$(cap 330 200)" "${FIRST[@]}"
if [ $? -ne 0 ] && [ "$RUN_S" -lt 120 ]; then
    tail -n 15 "$OUT/train.out" | tee -a "$SUMMARY"
    say "the compiled run failed early: again without compiling"
    cp "$OUT/train.out" "$WORK/train_compiled.out"
    full_run "$(cap 330 200)" module=classifier module.compile=false
fi
grep -E "CompileFallbackWarning|Error|error:|test error" "$OUT/train.out" | tail -n 6 | tee -a "$SUMMARY"
if [ -f "$RUN_DIR/metrics.json" ]; then
    cp "$RUN_DIR/metrics.json" "$OUT/metrics.json"
    python3 -c "
import json, sys; m = json.load(open(sys.argv[1]))
print('steps', m['steps'], '| fit wall_s', m['wall_s'], '| steady training images/s', m['images_per_s'], '| compile_s', m['compile_s'],
      '| test_err', m['test_err'], '| val_err', m['val_err'], '| train_err', m['train_err'])
" "$RUN_DIR/metrics.json" | tee -a "$SUMMARY"
else
    python3 -c "
import sys, torch; c = torch.load(sys.argv[1], map_location='cpu', weights_only=True)
print('no metrics.json (stopped by the time cap); last checkpoint at step', c['global_step'])
" "$RUN_DIR/checkpoints/last.ckpt" 2>/dev/null | tee -a "$SUMMARY" || say "no checkpoint either"
fi

# --- 2. bench table, bf16, eager ------------------------------------------------------------------
BENCH=(python3 bench/throughput.py "${DEVICE[@]}" --data-root "$DATA")
timeout "$(cap 150 80)" "${BENCH[@]}" "${EAGER[@]}" --pipelines project bare classic --sync-check \
    --json "$OUT/bench.json" 2>"$WORK/bench.err" | tee "$OUT/bench.txt"
say "bench (eager) exit $? after $(elapsed) s"
grep -E "^\[round|failed|Error" "$WORK/bench.err" | tail -n 20 | tee -a "$SUMMARY"

# --- 3. compiled ResNet-20; 4. ResNet-1202 at batch 128 -------------------------------------------
timeout "$(cap 150 40)" "${BENCH[@]}" "${COMPILED[@]}" --pipelines project-compile bare-compile project-step bare-step --sync-check \
    --json "$OUT/bench_compile.json" 2>"$WORK/bench_compile.err" | tee "$OUT/bench_compile.txt"
say "bench (compiled) exit $? after $(elapsed) s"
grep -E "^\[round|failed|Error|Warning|skipping cudagraphs" "$WORK/bench_compile.err" | tail -n 12 | tee -a "$SUMMARY"
timeout "$(cap 60 5)" "${BENCH[@]}" "${BIG[@]}" --pipelines project 2>"$WORK/bench_1202.err" | tee "$OUT/bench_1202.txt"
say "ResNet-1202 at batch 128 in bf16: exit $? after $(elapsed) s"
grep -E "^\[round|failed|Error" "$WORK/bench_1202.err" | tail -n 5 | tee -a "$SUMMARY"

# --- 5. host time per step ------------------------------------------------------------------------
timeout "$(cap 150 5)" python3 bench/throughput.py --host-overhead "${HOST[@]}" 2>"$WORK/bench_host.err" \
    | grep -E "^host ms/step|^\| 8 " | tee -a "$SUMMARY"
say "host time per step: exit $? after $(elapsed) s"
grep -E "failed|Error" "$WORK/bench_host.err" | tail -n 5 | tee -a "$SUMMARY"

say "total $(elapsed) s; results in $OUT"
