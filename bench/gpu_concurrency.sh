#!/usr/bin/env bash
# Several study jobs on one GPU: what running JOBS (4) ResNet-20 jobs at once through the parallel
# launcher (hydra/launcher=parallel, all pinned to the one GPU) gains over one job alone.
#
#     bash bench/gpu_concurrency.sh --data PATH [--out DIR] [--budget SECONDS] [--wheels DIR] [--dry-run]
#
# Run it from a checkout with the project installed, on a machine with a CUDA GPU, with CIFAR-10
# at PATH. Each job trains ResNet-20 for STEPS (2000) steps in bf16 (trainer=gpu; lr ÷10 at half
# and three quarters of the steps): first one job alone, then JOBS jobs at once (seeds 0 to
# JOBS-1). It prints, for both, the jobs' summed training images/s (each job's metrics.json
# images_per_s) and the images/s over the whole command's wall time (start-up, data, validation
# and test included), and the ratios of together to alone. Written to the output folder:
# summary.txt, alone.out, together.out, concurrency.json. The runs stay in WORK (default
# $TMPDIR/resnet-cifar-gpu-concurrency).
# Environment: JOBS (4), STEPS (2000), MODULE (classifier or whole_step; default classifier), WORK.
set -u -o pipefail
source "$(dirname "$0")/gpu_setup.sh" "$@"

JOBS=${JOBS:-4}
MODULE=${MODULE:-classifier}
WORK=${WORK:-${TMPDIR:-/tmp}/resnet-cifar-gpu-concurrency}
if [ "$DRY_RUN" = 1 ]; then
    STEPS=${STEPS:-6}
    RUN=(trainer=cpu model.depth=8 data.batch_size=16 'scheduler.milestones=[3,5]')
else
    STEPS=${STEPS:-2000}
    RUN=(trainer=gpu model.depth=20 "scheduler.milestones=[$((STEPS / 2)),$((STEPS * 3 / 4))]")
fi
RUN+=(data.root="$DATA" module="$MODULE" trainer.max_steps="$STEPS" "~callbacks.progress_bar")
rm -rf "$WORK"
mkdir -p "$WORK"

t0=$(date +%s.%N)
timeout "$(cap 200 200)" python3 -m resnet_cifar.train "${RUN[@]}" seed=0 hydra.run.dir="$WORK/alone" >"$OUT/alone.out" 2>&1
say "one job alone: exit $? after $(elapsed) s"
t1=$(date +%s.%N)
seeds=$(seq -s, 0 $((JOBS - 1)))
timeout "$(cap 330 5)" python3 -m resnet_cifar.train -m "${RUN[@]}" "seed=$seeds" hydra/launcher=parallel \
    hydra.launcher.n_jobs="$JOBS" hydra.sweep.dir="$WORK/together" >"$OUT/together.out" 2>&1
say "$JOBS jobs at once: exit $? after $(elapsed) s"
t2=$(date +%s.%N)
grep -E "Error|error:" "$OUT/alone.out" "$OUT/together.out" | tail -n 6 | tee -a "$SUMMARY"

python3 - "$WORK" "$t0" "$t1" "$t2" "$OUT/concurrency.json" <<'PY' | tee -a "$SUMMARY"
import json, sys
from pathlib import Path
import yaml

work, t0, t1, t2, out = Path(sys.argv[1]), *map(float, sys.argv[2:5]), sys.argv[5]
def finished_runs(paths):
    """metrics.json of each finished run, with the global batch size of its config."""
    runs = []
    for path in paths:
        if path.is_file():
            config = yaml.safe_load((path.parent / ".hydra" / "config.yaml").read_text())
            runs.append({**json.loads(path.read_text()), "batch_size": config["data"]["batch_size"]})
    return runs
alone = finished_runs([work / "alone" / "metrics.json"])
together = finished_runs(sorted((work / "together").glob("*/metrics.json")))
def figures(runs, wall):
    images = sum(r["steps"] * r["batch_size"] for r in runs)
    return {
        "jobs_finished": len(runs),
        "training_images_per_s_summed": round(sum(r["images_per_s"] or 0 for r in runs), 1),
        "images_per_s_over_command_wall": round(images / wall, 1),
        "command_wall_s": round(wall, 1),
        "per_job_images_per_s": [r["images_per_s"] for r in runs],
        "test_err": [r["test_err"] for r in runs],
    }
result = {"alone": figures(alone, t1 - t0), "together": figures(together, t2 - t1)}
for key in ("training_images_per_s_summed", "images_per_s_over_command_wall"):
    if result["alone"][key]:
        result[f"ratio_{key}"] = round(result["together"][key] / result["alone"][key], 2)
print(json.dumps(result, indent=1))
Path(out).write_text(json.dumps(result, indent=1))
PY
say "total $(elapsed) s; results in $OUT"
