"""The search space in Hydra's sweep syntax, as Optuna distributions; a trial's values as overrides.

``hydra.sweeper.params`` (and sweeps on the command line) use Hydra's override grammar:

- ``interval(a, b)``: a float drawn uniformly from [a, b]; ``tag(log, interval(a, b))`` on a log
  scale; ``int(interval(a, b))`` an integer (also with ``tag(log, ...)``);
- ``range(a, b[, step])``: one of a, a + step, ... below b (Python's range), as integers;
- ``choice(x, y, ...)`` or ``x,y,...``: one of the values.

An override that is not a sweep (``trainer.max_steps=3000``) is passed to every trial as it is.
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
