"""How runs are started: DDP inside Hydra multiruns, GPU pinning, job directory names, the study."""
