#!/usr/bin/env bash
# The GPU checks of issue 3, in one run of at most 10 minutes on the H200 device machine.
#
# Prepare the carried folders as bench/gpu_setup.sh says.
# Run it through the device tool:
#     run(command="bash bench/gpu_check.sh", carry=[".wheels", ".data"], timeout_s=600)
#
# Stages, each capped so that the whole stays within BUDGET_S seconds (default 570):
#   1. install the carried wheels (Hydra, OmegaConf, antlr4) into .site/; unpack the data and
#      decode it once into its uint8 cache;
#   2. the headline: one full 64k-step ResNet-20 paper schedule on the real data, bf16
#      (trainer=gpu), model.compile=true with model.compile_scope=$COMPILE_SCOPE (default step:
#      the whole step as one CUDA graph; network for the network alone) (it falls back to eager with a warning,
#      and if the compiled run dies early it is rerun uncompiled), validation every epoch and
#      the test at the end; wall time from process start to exit, and its metrics.json;
#   3. the bench table in bf16: project / bare loop / classic pipeline for ResNet-20, 56, 110,
#      with the host syncs per timed step of the project's training step;
#   4. the same for ResNet-20 compiled: the network alone (project-compile, bare-compile) and the
#      whole step as one graph (project-step, bare-step; CUDA-graph skips noted in the table);
#   5. ResNet-1202 at batch 128 in bf16;
#   6. the host time per step (bench --host-overhead: ResNet-8, batch 8, project vs bare loop,
#      3 interleaved rounds, eager: the compiled pair would compile 6 times, beyond the budget),
#      the figure that bounds a small ResNet's step rate on a GPU (docs/benchmarks.md).
# Printed, and written under $OUT (at most 8 files come back from there): summary.txt,
# train.out, metrics.json, bench.txt/json, bench_compile.txt/json, bench_1202.txt; stage 6 goes
# into summary.txt.
#
# Other depths: FULL_DEPTH=56 bash bench/gpu_check.sh (the issue's ResNet-56 target).
# DRY_RUN=1 bash bench/gpu_check.sh walks through the same stages on the CPU with tiny settings,
# to check the script itself where no GPU is lent (its figures mean nothing).
set -u -o pipefail

# --- 1. environment and data ------------------------------------------------------------------
source "$(dirname "$0")/gpu_setup.sh"
FULL_DEPTH=${FULL_DEPTH:-20}
COMPILE_SCOPE=${COMPILE_SCOPE:-step}
if [ "$DRY_RUN" = 1 ]; then
    DEVICE=(--device cpu --precision bf16-mixed --batch-size 16)
    EAGER=(--depths 8 --steps 2 --warmup 1); COMPILED=(--depths 8 --steps 2 --warmup 1); BIG=(--depths 14 --steps 1 --warmup 1)
    TRAIN=(trainer=cpu trainer.precision=bf16-mixed model.depth=8 data.batch_size=16 trainer.max_steps=6 'scheduler.milestones=[3,5]')
else
    DEVICE=(--device cuda --precision bf16-mixed)
    EAGER=(--depths 20 56 110 --steps 100 --warmup 20); COMPILED=(--depths 20 --steps 200 --warmup 30)
    BIG=(--depths 1202 --steps 5 --warmup 3)
    TRAIN=(trainer=gpu model.depth="$FULL_DEPTH")
fi

# --- 2. the paper's full schedule: 64k steps, bf16, real data -------------------------------------
RUN_DIR=/tmp/full_run
full_run() {  # full_run COMPILE CAP
    rm -rf "$RUN_DIR"
    local t0=$(date +%s)
    timeout "$2" python3 -m resnet_cifar.train "${TRAIN[@]}" data.root="$DATA" model.compile="$1" model.compile_scope="$COMPILE_SCOPE" \
        hydra.run.dir="$RUN_DIR" >"$OUT/train.out" 2>&1
    local status=$?
    RUN_S=$(( $(date +%s) - t0 ))
    say "full run (model.compile=$1 model.compile_scope=$COMPILE_SCOPE): exit $status after $RUN_S s, process start to exit (data load, compile, 64k steps, validation every epoch, test)"
    return $status
}
full_run true "$(cap 330 200)"
if [ $? -ne 0 ] && [ "$RUN_S" -lt 120 ]; then
    tail -n 15 "$OUT/train.out" | tee -a "$SUMMARY"
    say "the compiled run failed early: again without compile"
    cp "$OUT/train.out" /tmp/train_compiled.out
    full_run false "$(cap 330 200)"
fi
grep -E "CompileFallbackWarning|Error|error:|test error" "$OUT/train.out" | tail -n 6 | tee -a "$SUMMARY"
if [ -f "$RUN_DIR/metrics.json" ]; then
    cp "$RUN_DIR/metrics.json" "$OUT/metrics.json"
    python3 -c "
import json; m = json.load(open('$RUN_DIR/metrics.json'))
print('steps', m['steps'], '| fit wall_s', m['wall_s'], '| steady training images/s', m['images_per_s'], '| compile_s', m['compile_s'],
      '| test_err', m['test_err'], '| val_err', m['val_err'], '| train_err', m['train_err'])
" | tee -a "$SUMMARY"
else
    python3 -c "
import torch; c = torch.load('$RUN_DIR/checkpoints/last.ckpt', map_location='cpu', weights_only=False)
print('no metrics.json (stopped by the time cap); last checkpoint at step', c['global_step'])
" 2>/dev/null | tee -a "$SUMMARY" || say "no checkpoint either"
fi

# --- 3. bench table, bf16, eager ------------------------------------------------------------------
BENCH=(python3 bench/throughput.py "${DEVICE[@]}" --data-root "$DATA")
timeout "$(cap 150 80)" "${BENCH[@]}" "${EAGER[@]}" --pipelines project bare classic --sync-check \
    --json "$OUT/bench.json" 2>/tmp/bench.err | tee "$OUT/bench.txt"
say "bench (eager) exit $? after $(elapsed) s"
grep -E "^\[round|failed|Error" /tmp/bench.err | tail -n 20 | tee -a "$SUMMARY"

# --- 4. compiled ResNet-20; 5. ResNet-1202 at batch 128 ---------------------------------------------
timeout "$(cap 150 40)" "${BENCH[@]}" "${COMPILED[@]}" --pipelines project-compile bare-compile project-step bare-step --sync-check \
    --json "$OUT/bench_compile.json" 2>/tmp/bench_compile.err | tee "$OUT/bench_compile.txt"
say "bench (compile) exit $? after $(elapsed) s"
grep -E "^\[round|failed|Error|Warning|skipping cudagraphs" /tmp/bench_compile.err | tail -n 12 | tee -a "$SUMMARY"
timeout "$(cap 60 5)" "${BENCH[@]}" "${BIG[@]}" --pipelines project 2>/tmp/bench_1202.err | tee "$OUT/bench_1202.txt"
say "ResNet-1202 at batch 128 in bf16: exit $? after $(elapsed) s"
grep -E "^\[round|failed|Error" /tmp/bench_1202.err | tail -n 5 | tee -a "$SUMMARY"

# --- 6. host time per step: the framework's share of a step that costs the GPU almost nothing ----
if [ "$DRY_RUN" = 1 ]; then HOST=(--device cpu --steps 2 --warmup 1); else HOST=(--device cuda); fi
timeout "$(cap 150 5)" python3 bench/throughput.py --host-overhead "${HOST[@]}" 2>/tmp/bench_host.err \
    | grep -E "^host ms/step|^\| 8 " | tee -a "$SUMMARY"
say "host overhead: exit $? after $(elapsed) s"
grep -E "failed|Error" /tmp/bench_host.err | tail -n 5 | tee -a "$SUMMARY"

say "total $(elapsed) s"
