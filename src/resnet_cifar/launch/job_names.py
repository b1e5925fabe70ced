"""Names of a sweep's job directories: Hydra's ``override_dirname``, made one valid directory name.

Hydra names each job after its overrides (``model.depth=20,seed=0``). A value with a "/" (such
as ``data.root=/datasets/cifar``) would nest directories, and many overrides outgrow the 255
bytes a file system allows for a name, which fails the sweep with an OSError. The same
overrides always give the same name, so a relaunched sweep finds its jobs' directories again.
"""

import hashlib

from omegaconf import OmegaConf

MAX_NAME_BYTES = 200


def job_dirname(override_dirname: str) -> str:
    """``override_dirname`` with "/" as "_", shortened with a digest of the whole when too long."""
    name = override_dirname.replace("/", "_") or "default"
    if len(name.encode()) <= MAX_NAME_BYTES:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:12]
    kept = name.encode()[: MAX_NAME_BYTES - len(digest) - 3].decode(errors="ignore")
    return f"{kept}...{digest}"


def register_resolvers() -> None:
    """``${job_dirname:...}`` for conf/train.yaml's ``hydra.sweep.subdir``."""
    OmegaConf.register_new_resolver("job_dirname", job_dirname, replace=True)
