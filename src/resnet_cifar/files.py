"""Writing files so that a reader never sees half of one."""

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``, renamed over it once the block succeeds.

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
