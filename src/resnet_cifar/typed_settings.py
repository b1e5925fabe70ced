"""Settings read from a file, checked as the keyword arguments of the function they are for.

What crosses from a received file into a network, a data module or a LightningModule is a plain
value (None, a bool, number or string, or a list of them), under the name of one of the
function's parameters, of the type its annotation says. Anything else is refused with the key and
the reason. A string may not hold ``${``: where a value passes through OmegaConf it would be read
as an interpolation.
"""

from __future__ import annotations

import collections.abc
import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

PLAIN_SCALARS = (type(None), bool, int, float, str)
MAX_LIST_LENGTH = 1024
SHOWN_CHARACTERS = 80  # of a value from a file, in a message


class BadSetting(ValueError):
    """A setting that does not fit: the message names the key and what is wrong."""


def shown(value: Any, limit: int = SHOWN_CHARACTERS) -> str:
    """A value from a file, quoted and with control characters escaped, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def plain_value(value: Any, key: str) -> Any:
    """``value`` if it is a plain value (lists as lists), else :class:`BadSetting`."""
    if isinstance(value, (list, tuple)):
        if len(value) > MAX_LIST_LENGTH:
            raise BadSetting(f"{key} is a list of {len(value):,} values, over {MAX_LIST_LENGTH}")
        items = [plain_value(item, f"{key}[{index}]") for index, item in enumerate(value)]
        if any(isinstance(item, list) for item in items):
            raise BadSetting(f"{key} holds a list of lists, which no setting takes")
        return items
    if not isinstance(value, PLAIN_SCALARS):
        raise BadSetting(f"{key} is a {type(value).__name__}, not a plain value (a number, string, bool or list)")
    if isinstance(value, str) and "${" in value:
        raise BadSetting(f"{key}={shown(value)} holds '${{', which would be read as an interpolation")
    return value


def fits(value: Any, hint: Any) -> bool:
    """Whether the plain ``value`` fits the annotation ``hint`` (unknown kinds of hint: any plain value)."""
    if hint is inspect.Parameter.empty or hint is Any:
        return True
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, argument) for argument in arguments)
    if hint is None or hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is typing.Literal:
        return any(type(value) is type(choice) and value == choice for choice in arguments)
    if origin is collections.abc.Callable:
        return False
    if origin in (list, tuple, Sequence, collections.abc.Iterable) or hint in (list, tuple):
        if not isinstance(value, list):
            return False
        if origin is tuple and arguments and arguments[-1] is not Ellipsis:
            return len(value) == len(arguments) and all(fits(v, a) for v, a in zip(value, arguments))
        return not arguments or all(fits(v, arguments[0]) for v in value)
    if isinstance(hint, type):  # a class (a tensor, a module, a callable's type): no plain value is one
        return False
    return True


def keyword_arguments(function: Callable[..., Any], settings: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``settings`` as keyword arguments of ``function``: each key one of its named parameters,
    each value a plain value of the parameter's annotated type. ``where`` names the settings
    in messages (``network setting`` -> ``network setting depth='8' ...``)."""
    signature = inspect.signature(function)
    named = {
        name: parameter
        for name, parameter in signature.parameters.items()
        if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY) and name != "self"
    }
    arguments = {}
    for key, value in settings.items():
        if not isinstance(key, str) or key not in named:
            accepted = ", ".join(named) or "none"
            raise BadSetting(f"{where} {shown(key)} is not a parameter of {qualified_name(function)} ({accepted})")
        value = plain_value(value, f"{where} {key}")
        hint = annotation(function, named[key])
        if not fits(value, hint):
            raise BadSetting(f"{where} {key}={shown(value)} is not {described(hint)}")
        arguments[key] = value
    return arguments


def annotation(function: Callable[..., Any], parameter: inspect.Parameter) -> Any:
    """The parameter's annotation, evaluated where it is a string (``from __future__ import
    annotations``) in the function's own module; one that does not evaluate there (a name imported
    only for type checkers) counts as no annotation."""
    hint = parameter.annotation
    if isinstance(hint, str):
        try:
            hint = typing.get_type_hints(function).get(parameter.name, hint)
        except Exception:
            try:
                hint = eval(hint, getattr(function, "__globals__", {}))  # noqa: S307 - the library's own source
            except Exception:
                return inspect.Parameter.empty
    return hint


def described(hint: Any) -> str:
    """An annotation as a message says it: ``an int``, ``one of 'min', 'max'``."""
    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(repr(choice) for choice in typing.get_args(hint))
    name = getattr(hint, "__name__", None) if isinstance(hint, type) else None
    return f"of the type {name or str(hint).replace('typing.', '')}"


def qualified_name(function: Callable[..., Any]) -> str:
    return f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', '?')}"


# resolve_references(..., unresolved=AS_WRITTEN) keeps a string it cannot resolve as it is.
AS_WRITTEN = object()


def resolve_references(config: Any, unresolved: Any = None, max_hops: int = 8) -> Any:
    """A copy of a plain config in which every string that is exactly one node interpolation
    (``seed: ${seed}``, ``num_classes: ${data.num_classes}``, as Hydra saves a run's config) is
    replaced by the value it names, following at most ``max_hops`` references; any other string
    holding ``${`` (a resolver call, text built around a reference, a reference to a container)
    becomes ``unresolved`` (or stays as written with AS_WRITTEN). No resolver runs, no string is
    built from others and no container is copied, so the work is bounded by the file's size."""

    missing = object()

    def lookup(path: str) -> Any:
        node = config
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return missing
            node = node[part]
        return node

    def followed(value: Any) -> Any:
        written = value
        for _ in range(max_hops + 1):
            if not isinstance(value, str) or "${" not in value:
                return value
            reference = value[2:-1] if value.startswith("${") and value.endswith("}") else ""
            if not reference or not all(part.isidentifier() for part in reference.split(".")):
                break
            value = lookup(reference)
            if value is missing or isinstance(value, (dict, list)):  # a container is not copied in
                break
        return written if unresolved is AS_WRITTEN else unresolved

    def resolved(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: resolved(child) for key, child in node.items()}
        if isinstance(node, list):
            return [resolved(child) for child in node]
        return followed(node)

    return resolved(config)
