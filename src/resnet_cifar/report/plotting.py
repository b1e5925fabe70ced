"""matplotlib for files and TensorBoard only: no display is needed, or opened."""

from pathlib import Path
from types import ModuleType
from typing import Any

from resnet_cifar.files import atomic_write


def pyplot() -> ModuleType:
    """``matplotlib.pyplot`` on the file-only Agg backend (imported on first use: it is slow)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> str:
    """Write ``fig`` as the PNG ``path`` whole (a symbolic link there is replaced, not written
    through), close it, and return the file's name."""
    with atomic_write(path) as temporary:
        fig.savefig(temporary, dpi=120, format="png")
    pyplot().close(fig)
    return path.name
