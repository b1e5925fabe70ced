"""Settings from a file cross only as plain values of the types a function's signature names."""

from __future__ import annotations

from typing import Literal

import pytest
from omegaconf import OmegaConf

from resnet_cifar.typed_settings import AS_WRITTEN, BadSetting, keyword_arguments, plain_value, resolve_references


def network(depth: int, shortcut: Literal["A", "B"] = "A", width: float = 1.0, sizes: tuple[int, int] = (1, 2)):
    return depth, shortcut, width, sizes


def test_plain_values_of_the_annotated_types_cross() -> None:
    settings = {"depth": 20, "shortcut": "B", "width": 2, "sizes": [3, 4]}
    assert keyword_arguments(network, settings, "setting") == settings


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({"depth": True}, "depth=True is not of the type int"),
        ({"depth": "20"}, "depth='20' is not of the type int"),
        ({"shortcut": "C"}, "shortcut='C' is not one of 'A', 'B'"),
        ({"sizes": [1, 2, 3]}, "sizes=[1, 2, 3] is not of the type tuple[int, int]"),
        ({"depth": {"_target_": "builtins.open"}}, "depth is a dict, not a plain value"),
        ({"depth": [[1]]}, "depth holds a list of lists"),
        ({"colour": 1}, "'colour' is not a parameter of"),
        ({"_target_": "os.system"}, "'_target_' is not a parameter of"),
        ({"shortcut": "${oc.env:HOME}"}, "holds '${', which would be read as an interpolation"),
    ],
)
def test_anything_else_is_refused_naming_the_key(settings: dict, reason: str) -> None:
    with pytest.raises(BadSetting, match=reason.replace("[", r"\[").replace("(", r"\(").replace("$", r"\$")):
        keyword_arguments(network, settings, "setting")


def test_lists_are_bounded() -> None:
    with pytest.raises(BadSetting, match="over 1024"):
        plain_value(list(range(2000)), "milestones")


def test_references_resolve_without_running_a_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("A_SECRET", "hunter2")
    calls = []
    OmegaConf.register_new_resolver("recorded", lambda value: calls.append(value) or value, replace=True)
    config = {
        "seed": 3,
        "data": {"seed": "${seed}", "num_classes": 10},
        "model": {"num_classes": "${data.num_classes}", "chain": "${model.num_classes}"},
        "secret": "${oc.env:A_SECRET}",
        "called": "${recorded:x}",
        "nested": "${${oc.env:A_SECRET}}",
        "built": "a/${seed}/b",
        "loop": "${loop}",
        "nowhere": "${no.such.key}",
        "container": "${data}",
    }
    resolved = resolve_references(config, unresolved="?")
    assert resolved["data"]["seed"] == 3 and resolved["model"] == {"num_classes": 10, "chain": 10}
    unresolvable = ("secret", "called", "nested", "built", "loop", "nowhere", "container")
    assert [resolved[key] for key in unresolvable] == ["?"] * len(unresolvable)
    assert "hunter2" not in str(resolved) and not calls


def test_string_references_cannot_multiply() -> None:
    """Each level doubling the previous one's text would take 2**60 characters to build."""
    config = {"l0": "x"} | {f"l{n}": f"${{l{n - 1}}}${{l{n - 1}}}" for n in range(1, 61)}
    assert resolve_references(config)["l60"] is None


def test_what_cannot_be_resolved_can_stay_as_written() -> None:
    config = {"a": "${b}", "b": 1, "c": "${oc.env:HOME}", "d": "${nowhere}"}
    assert resolve_references(config, unresolved=AS_WRITTEN) == {
        "a": 1,
        "b": 1,
        "c": "${oc.env:HOME}",
        "d": "${nowhere}",
    }
