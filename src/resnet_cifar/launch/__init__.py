"""How runs are started: DDP jobs and their processes (ddp), preemption and Lightning's per-step
SIGTERM broadcast (preemption, lightning_sigterm), the SLURM launcher (slurm), GPU pinning, job
and study names."""
