"""Files from others are read bounded: no link followed, size and nesting limited, no YAML aliases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crafted_checkpoints import alias_bomb
from resnet_cifar.received_files import MAX_NESTING, UnreadableFile, links_in, read_json, read_text, read_yaml


def test_a_link_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("hunter2")
    (tmp_path / "metrics.json").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(UnreadableFile, match="metrics.json is a symbolic link, which is not followed"):
        read_text(tmp_path / "metrics.json")
    assert links_in(tmp_path) == [tmp_path / "metrics.json"]


def test_a_large_file_is_not_read(tmp_path: Path) -> None:
    (tmp_path / "big.json").write_text(" " * 2000 + "{}")
    with pytest.raises(UnreadableFile, match="is 2,002 bytes, over the 1,000 read"):
        read_text(tmp_path / "big.json", max_bytes=1000)


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(UnreadableFile, match=f"nests deeper than {MAX_NESTING} levels"):
        read_json(tmp_path / "deep.json")
    (tmp_path / "deep.yaml").write_text("a:\n" + "".join(" " * n + "- \n" for n in range(1, 200)))
    with pytest.raises(UnreadableFile, match="nests deeper"):
        read_yaml(tmp_path / "deep.yaml")
    (tmp_path / "fine.json").write_text(json.dumps({"a": [[1]]}))
    assert read_json(tmp_path / "fine.json") == {"a": [[1]]}


def test_yaml_aliases_are_refused_before_they_expand(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(alias_bomb())
    assert (tmp_path / "config.yaml").stat().st_size < 3000
    with pytest.raises(UnreadableFile, match="holds a YAML alias"):
        read_yaml(tmp_path / "config.yaml")


def test_yaml_tags_build_no_objects(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("a: !!python/object/apply:os.system ['touch x']\n")
    with pytest.raises(UnreadableFile, match="is not valid YAML"):
        read_yaml(tmp_path / "config.yaml")
