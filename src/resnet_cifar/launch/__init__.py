"""How runs are started: DDP jobs and their processes (ddp), preemption and time limits
(preemption), the SLURM launcher (slurm), GPU pinning, job and study names."""
