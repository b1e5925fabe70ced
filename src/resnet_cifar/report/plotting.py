"""matplotlib for files and TensorBoard only: no display is needed, or opened."""

from types import ModuleType


def pyplot() -> ModuleType:
    """``matplotlib.pyplot`` on the file-only Agg backend (imported on first use: it is slow)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
