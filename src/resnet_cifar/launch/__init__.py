"""How runs are started: DDP jobs and their processes (ddp), preemption and time limits
(preemption), the SLURM and Ray launchers (slurm, ray), GPU pinning, job and study names."""
