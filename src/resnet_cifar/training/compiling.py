"""torch.compile for the modules, falling back to the uncompiled function where compiling fails."""

import warnings
from collections.abc import Callable
from typing import Any

import torch


class CompileFallbackWarning(UserWarning):
    """Compiling was asked for but could not be done; the function runs uncompiled (eagerly)."""


def default_compile_mode(device: torch.device) -> str:
    """torch.compile's mode when none is configured: CUDA graphs on a GPU (they remove the
    per-kernel launch cost that dominates a small network's step), the plain mode elsewhere."""
    return "reduce-overhead" if device.type == "cuda" else "default"


class CompiledOrEager:
    """``function`` compiled with ``torch.compile``, or ``function`` itself once compiling fails.

    Compiling happens at the first call of every new input shape (``dynamic=False``: one static
    graph per shape, e.g. the training batch, the epoch's short last batch, the evaluation
    batch). A failure there (no C compiler, no Triton, a platform Dynamo lacks) raises before the
    function has run, so falling back leaves nothing half done; it is reported once with a
    :class:`CompileFallbackWarning`. With CUDA graphs (``reduce-overhead`` on a GPU) every call
    starts a new step for torch's graph trees.
    """

    def __init__(self, function: Callable[..., Any], mode: str | None, device: torch.device, **options: Any) -> None:
        self.function = function
        self.mode = mode or default_compile_mode(device)
        self.cuda_graphs = device.type == "cuda" and self.mode in ("reduce-overhead", "max-autotune")
        self.compiled: Callable[..., Any] | None = None
        try:
            self.compiled = torch.compile(function, mode=self.mode, dynamic=False, **options)
        except Exception as error:  # e.g. a Python version that Dynamo does not support
            self._fall_back(error)

    def __call__(self, *args: Any) -> Any:
        if self.compiled is not None:
            try:
                if self.cuda_graphs:
                    torch.compiler.cudagraph_mark_step_begin()
                return self.compiled(*args)
            except torch.OutOfMemoryError:
                raise
            except Exception as error:
                self._fall_back(error)
        return self.function(*args)

    def _fall_back(self, error: BaseException) -> None:
        self.compiled = None
        self.cuda_graphs = False
        # Dynamo wraps a backend's error (BackendCompilerFailed: "backend='inductor' raised:"):
        # name the error underneath, which says what is missing.
        cause = getattr(error, "inner_exception", None) or error.__cause__ or error
        first_line = (str(cause).strip().splitlines() or [""])[0][:300]
        warnings.warn(
            f"compiling was asked for (module.compile=true) but torch.compile is unavailable or failed "
            f"here ({type(cause).__name__}: {first_line}); the model runs uncompiled, with the same "
            "results, only slower. Set module.compile=false to silence this.",
            CompileFallbackWarning,
            stacklevel=3,
        )
