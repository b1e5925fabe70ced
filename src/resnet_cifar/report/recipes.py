"""The paper's CIFAR-10 training recipe (He et al. 2016, Sec. 4.2) and how a run differs from it.

A run's test error is comparable with the paper's Table 6 only when it was trained the paper's
way; a study of 704 steps is not. The report groups runs by their differences from the recipe
(runs trained differently are never averaged together), states them above each table, and
writes "not comparable" in the paper column where the recipe was not followed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, order=True)
class Difference:
    """One way a run's training differs from the paper's, as the report states it."""

    text: str
    # False where results can no longer be set beside the paper's (fewer steps, other data, ...);
    # True for what changes only the arithmetic (mixed precision keeps fp32 weights).
    breaks_comparison: bool = True


Recipe = tuple[Difference, ...]  # () is the paper's recipe
NOT_RECORDED = object()


def number(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def steps_list(values: Any) -> str:
    return " and ".join(number(v) for v in values) if isinstance(values, (list, tuple)) else str(values)


# (config key, the paper's value, how a different value reads).
PAPER_RECIPE: tuple[tuple[str, Any, Callable[[Any], str]], ...] = (
    ("trainer.max_steps", 64000, lambda v: f"{number(v)} steps (paper 64,000)"),
    ("scheduler.milestones", [32000, 48000], lambda v: f"lr ÷10 at {steps_list(v)} (paper 32,000 and 48,000)"),
    ("scheduler.gamma", 0.1, lambda v: f"lr × {v} at each milestone (paper × 0.1)"),
    ("data.batch_size", 128, lambda v: f"batch {v} (paper 128)"),
    ("optimizer.lr", 0.1, lambda v: f"lr {v} (paper 0.1)"),
    ("optimizer.momentum", 0.9, lambda v: f"momentum {v} (paper 0.9)"),
    ("optimizer.weight_decay", 1e-4, lambda v: f"weight decay {v} (paper 0.0001)"),
    ("data.dataset", "cifar10", lambda v: f"data: {v} (paper CIFAR-10)"),
    ("data.val_size", 5000, lambda v: f"{number(v)} training images held out for validation (paper 5,000)"),
    ("data.padding", 4, lambda v: f"crops padded by {v} px (paper 4)"),
)
# Mixed precision is stated but keeps results comparable (README, "Speed").
PAPER_PRECISION = ("32-true", "32", 32)
WARMUP_DEPTH = 110  # the paper warms up ResNet-110 only (lr 0.01 until the training error < 80 %)


def one_line(text: str, limit: int = 120) -> str:
    """A run's value as the report states it: one line, cut to ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def lookup(config: dict[str, Any], key: str) -> Any:
    """The value at the dotted ``key`` of a run's config (plain, its references resolved by
    :func:`resnet_cifar.typed_settings.resolve_references` with NOT_RECORDED), or NOT_RECORDED."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return NOT_RECORDED
        node = node[part]
    return node


def recipe_of(cfg: dict[str, Any], depth: int) -> Recipe:
    """How the run of ``cfg`` (a network of ``depth`` layers) was trained unlike the paper."""
    differences = []
    for key, paper, describe in PAPER_RECIPE:
        value = lookup(cfg, key)
        if value is NOT_RECORDED:
            differences.append(Difference(f"{key} not recorded"))
        elif value != paper:
            differences.append(Difference(one_line(describe(value))))
    precision = lookup(cfg, "trainer.precision")
    if precision is not NOT_RECORDED and precision not in PAPER_PRECISION:
        differences.append(Difference(one_line(f"{precision} precision (paper fp32)"), breaks_comparison=False))
    warmup = lookup(cfg, "callbacks.lr_warmup") not in (None, NOT_RECORDED)
    if warmup != (depth == WARMUP_DEPTH):
        differences.append(
            Difference("lr warm-up" if warmup else f"no lr warm-up (paper warms up ResNet-{WARMUP_DEPTH})")
        )
    return tuple(differences)  # in PAPER_RECIPE's order, so equal recipes are equal tuples


def comparable(recipe: Recipe) -> bool:
    return not any(difference.breaks_comparison for difference in recipe)


def describe_recipe(recipe: Recipe) -> str:
    """One line for the report: what differs from the paper's recipe, or that nothing does."""
    if not recipe:
        return "the paper's (Sec. 4.2): 64,000 steps, lr 0.1 ÷10 at 32,000 and 48,000, batch 128, CIFAR-10 45k/5k"
    return "differs from the paper's: " + "; ".join(difference.text for difference in recipe)


def recipe_numbers(recipes: set[Recipe]) -> dict[Recipe, int]:
    """1, 2, ... for the recipes of a report, the paper's first: how tables and figures name them."""
    return {recipe: n for n, recipe in enumerate(sorted(recipes), start=1)}


def recipe_labels(recipes: set[Recipe]) -> dict[Recipe, str]:
    """ ", recipe N" for figure legends and titles; "" when the report has a single recipe."""
    numbers = recipe_numbers(recipes)
    return {recipe: f", recipe {n}" if len(numbers) > 1 else "" for recipe, n in numbers.items()}
