"""The search space in Hydra's sweep syntax, as Optuna distributions; a trial's values as overrides
and as its folder's name; a trial read back from the study checked against the space.

``hydra.sweeper.params`` (and sweeps on the command line) use Hydra's override grammar:

- ``interval(a, b)``: a float drawn uniformly from [a, b]; ``tag(log, interval(a, b))`` on a log
  scale; ``int(interval(a, b))`` an integer (also with ``tag(log, ...)``);
- ``range(a, b[, step])``: one of a, a + step, ... below b (Python's range), as integers;
- ``choice(x, y, ...)`` or ``x,y,...``: one of the values.

An override that is not a sweep (``trainer.max_steps=3000``) is passed to every trial as it is.

A study's storage is data that anyone with access to it may have written: a trial read back
from it (one cut short, to run again; any, to report) is rebuilt from this command's space
(:func:`params_in_space`), so that only the space's parameter names, with values within its
ranges, ever reach a command line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep, Transformer
from hydra.errors import HydraException

from resnet_cifar.errors import ConfigError

# Characters a value may have unquoted in an override; anything else is quoted.
PLAIN_VALUE = re.compile(r"[\w.+\-/:@]+")
CHOICE_TYPES = (str, int, float, bool)
# Significant digits of a float in a trial's folder name.
NAME_DIGITS = 3
# At most this much of a name or value read from a study goes into a message.
SHOWN_CHARS = 80


class OutsideSpace(ValueError):
    """A trial's parameters, read back from the study, that are not of this search's space."""


@dataclass
class SearchSpace:
    """What Optuna chooses (``distributions``, by parameter name) and what every trial gets as
    it is (``fixed``: override strings such as ``trainer.max_steps=3000``)."""

    distributions: dict[str, Any] = field(default_factory=dict)
    fixed: list[str] = field(default_factory=list)

    @property
    def fixed_keys(self) -> list[str]:
        """The keys (or groups) that the fixed overrides set."""
        return [override.key_or_group for override in OverridesParser.create().parse_overrides(self.fixed)]


def search_space(params: Mapping[str, Any] | None, arguments: Iterable[str]) -> SearchSpace:
    """The space of ``hydra.sweeper.params`` (name -> sweep expression) and the command line's
    ``arguments``; a parameter in both takes the command line's."""
    lines = [f"{name}={value}" for name, value in (params or {}).items()] + list(arguments)
    try:
        overrides = OverridesParser.create().parse_overrides(lines)
    except HydraException as error:
        raise ConfigError(f"hydra.sweeper.params: {error}") from None
    space = SearchSpace()
    for override in overrides:
        name = override.get_key_element()
        space.distributions.pop(name, None)
        space.fixed = [line for line in space.fixed if line.split("=", 1)[0] != name]
        if override.is_sweep_override():
            space.distributions[name] = distribution(override)
        else:
            space.fixed.append(override.input_line)
    return space


def distribution(override: Override) -> Any:
    """The Optuna distribution of one sweep override."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    value = override.value()
    name = override.get_key_element()
    if isinstance(value, IntervalSweep):
        log = "log" in value.tags
        if log and value.start <= 0:
            raise ConfigError(f"{name}: a log-scale interval needs a start above 0, not {value.start}")
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log)
        return FloatDistribution(float(value.start), float(value.end), log=log)
    if isinstance(value, RangeSweep) and not value.shuffle:
        numbers = (value.start, value.stop, value.step)
        if all(isinstance(number, int) for number in numbers) and value.step > 0:
            count = math.ceil((value.stop - value.start) / value.step)
            if count < 1:
                raise ConfigError(f"{name}: range({value.start}, {value.stop}, {value.step}) is empty")
            return IntDistribution(value.start, value.start + (count - 1) * value.step, step=value.step)
    if isinstance(value, (ChoiceSweep, RangeSweep)):
        choices = list(override.sweep_iterator(transformer=Transformer.identity))
        unsupported = [choice for choice in choices if not isinstance(choice, CHOICE_TYPES)]
        if unsupported:
            raise ConfigError(f"{name}: a choice takes strings, numbers or booleans, not {unsupported[0]!r}")
        return CategoricalDistribution(choices)
    raise ConfigError(f"{name}: {override.input_line} is not a search space (interval, range or choice)")


def override_value(value: Any) -> str:
    """``value`` written as Hydra's override grammar reads it back (quoted where needed)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if PLAIN_VALUE.fullmatch(text) and text.lower() not in ("true", "false", "null"):
        try:
            float(text)
        except ValueError:
            return text
    return "'" + text.replace("'", "\\'") + "'"


def trial_overrides(params: Mapping[str, Any]) -> list[str]:
    """A trial's chosen values as overrides, in a fixed order (so its directory name is stable)."""
    return [f"{name}={override_value(value)}" for name, value in params.items()]


def trial_name(number: int, params: Mapping[str, Any]) -> str:
    """A trial's folder name: its number, then its values with floats to three significant
    digits (``3_optimizer.lr=0.0856,optimizer.weight_decay=0.000123``). The number alone tells
    trials apart; the values are for the reader."""
    values = ",".join(f"{name}={_readable(value)}" for name, value in params.items())
    return f"{number}_{values}" if values else str(number)


def _readable(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.{NAME_DIGITS}g}"
    if isinstance(value, bool) or value is None:
        return override_value(value)
    return str(value)


def params_in_space(space: SearchSpace, params: Mapping[str, Any], complete: bool = True) -> dict[str, Any]:
    """A trial's ``params`` read back from the study, rebuilt from ``space``: every name one of
    the space's, every value within its distribution, in the space's order; with ``complete``,
    a value for each of the space's parameters (a trial that runs again needs them all). Raises
    :class:`OutsideSpace` saying what does not fit."""
    unknown = [name for name in params if name not in space.distributions]
    if unknown:
        raise OutsideSpace(
            f"its parameter {shown(unknown[0])} is not one of this search's ({', '.join(space.distributions)})"
        )
    rebuilt = {}
    for name, distribution in space.distributions.items():
        if name not in params:
            if complete:
                raise OutsideSpace(f"it has no value of {name}")
            continue
        value = _within(distribution, params[name])
        if value is None:
            raise OutsideSpace(f"its {name}={shown(params[name])} is outside this search's {distribution}")
        rebuilt[name] = value
    return rebuilt


def _within(distribution: Any, value: Any) -> Any:
    """``value`` as ``distribution`` holds it (a choice: the space's own object), or None when
    the distribution does not hold it."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):
        return next((c for c in distribution.choices if type(c) is type(value) and c == value), None)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    if not distribution.low <= value <= distribution.high:
        return None
    if isinstance(distribution, IntDistribution):
        on_step = isinstance(value, int) and (value - distribution.low) % distribution.step == 0
        return value if on_step else None
    if isinstance(distribution, FloatDistribution):
        if distribution.step is None:
            return float(value)
        steps = (value - distribution.low) / distribution.step
        return float(value) if math.isclose(steps, round(steps), abs_tol=1e-8) else None
    return None


def shown(value: Any, limit: int = SHOWN_CHARS) -> str:
    """``value`` read from a study as a message shows it: quoted, escaped, and cut when long."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
