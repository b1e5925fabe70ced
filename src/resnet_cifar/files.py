"""Writing files so that a reader never sees half of one, and never through a symbolic link."""

import contextlib
import json
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from resnet_cifar.errors import UsageError
from resnet_cifar.received_files import links_in


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``, renamed over it once the block succeeds (a
    symbolic link at ``path`` is replaced by the file, not written through).

    A crash, a kill or a full disk during the write leaves the previous file as it was and no
    temporary file behind (a kill can leave a hidden ``.<name>.<id>.tmp``, never ``path`` itself).
    The name is unique per writer, so concurrent writers (DDP ranks, a multirun) never share one.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(OSError):  # on a read-only mount even unlinking fails
            temporary.unlink(missing_ok=True)


def write_json_atomically(path: str | os.PathLike, data: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2) + "\n")


def refuse_links_in(folder: str | os.PathLike) -> None:
    """Refuse to write into ``folder`` while it holds symbolic links (a run folder from elsewhere):
    writing there could go through one of them to a file outside the folder."""
    links = links_in(folder) if Path(folder).is_dir() else []
    if links:
        shown = ", ".join(f"{link.relative_to(folder)} -> {os.readlink(link)}" for link in links[:3])
        more = f" and {len(links) - 3} more" if len(links) > 3 else ""
        raise UsageError(
            f"{folder} holds symbolic links ({shown}{more}), through which writing would reach files outside "
            "it; nothing was written. Remove the links (what they point to is not touched), or choose "
            "another folder (hydra.run.dir=...)"
        )


class LinkSafeFileHandler(logging.FileHandler):
    """logging's FileHandler that replaces a symbolic link at its path by a file of its own instead
    of writing through it (a run's train.log in a run folder from elsewhere)."""

    def _open(self) -> Any:
        path = Path(self.baseFilename)
        if path.is_symlink():
            path.unlink()
        return super()._open()
