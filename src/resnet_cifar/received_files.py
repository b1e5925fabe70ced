"""Reading files that may come from others: run folders, studies, exported networks, hparams files.

Every read is bounded: no symbolic link is followed (a link in a received folder could point at
any file of the reader's), a file over ``max_bytes`` is not read, JSON and YAML may nest at most
``MAX_NESTING`` levels, and YAML may hold no aliases (a few hundred bytes of nested aliases expand
to gigabytes). Whatever goes wrong is one :class:`UnreadableFile` naming the file and the reason.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

# Far above what the project writes (a run's config.yaml is a few kB, metrics.json under 2 kB).
MAX_BYTES = 4 * 1024 * 1024
MAX_NESTING = 64


class UnreadableFile(Exception):
    """A received file that is not read: a link, too large, too deeply nested, malformed."""


def read_bytes(path: str | os.PathLike, max_bytes: int = MAX_BYTES) -> bytes:
    """The bytes of the regular file at ``path``, never through a symbolic link, at most ``max_bytes``."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise UnreadableFile(f"{path} is a symbolic link, which is not followed") from None
        raise UnreadableFile(f"{path} cannot be opened ({error.strerror})") from None
    with os.fdopen(descriptor, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size > max_bytes:
            raise UnreadableFile(f"{path} is {size:,} bytes, over the {max_bytes:,} read from such a file")
        return file.read(max_bytes + 1)[:max_bytes]


def read_text(path: str | os.PathLike, max_bytes: int = MAX_BYTES) -> str:
    try:
        return read_bytes(path, max_bytes).decode("utf-8")
    except UnicodeDecodeError as error:
        raise UnreadableFile(f"{path} is not UTF-8 text ({error.reason})") from None


def check_nesting(value: Any, path: str | os.PathLike, max_nesting: int = MAX_NESTING) -> Any:
    """``value`` if its dicts and lists nest at most ``max_nesting`` levels (checked without recursion)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            if depth > max_nesting:
                raise UnreadableFile(f"{path} nests deeper than {max_nesting} levels")
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return value


def read_json(path: str | os.PathLike, max_bytes: int = MAX_BYTES) -> Any:
    text = read_text(path, max_bytes)
    try:
        value = json.loads(text)
    except RecursionError:
        raise UnreadableFile(f"{path} nests deeper than {MAX_NESTING} levels") from None
    except ValueError as error:
        raise UnreadableFile(f"{path} is not valid JSON ({error}): half-written or corrupt") from None
    return check_nesting(value, path)


class NoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases: each node is read once, so reading is linear in the size."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None, None, "holds a YAML alias, which is not read from such a file", self.peek_event().start_mark
            )
        return super().compose_node(parent, index)


def load_yaml_text(text: str, source: str | os.PathLike) -> Any:
    """YAML ``text`` (from ``source``) as plain Python values, without aliases, nesting bounded."""
    try:
        value = yaml.load(text, Loader=NoAliasLoader)  # noqa: S506 - a SafeLoader
    except RecursionError:
        raise UnreadableFile(f"{source} nests deeper than {MAX_NESTING} levels") from None
    except yaml.YAMLError as error:
        raise UnreadableFile(f"{source} is not valid YAML ({' '.join(str(error).split())})") from None
    return check_nesting(value, source)


def read_yaml(path: str | os.PathLike, max_bytes: int = MAX_BYTES) -> Any:
    return load_yaml_text(read_text(path, max_bytes), path)


def walk_folder(root: str | os.PathLike) -> Iterator[tuple[Path, list[str], list[str]]]:
    """``os.walk`` of ``root`` that does not descend into linked folders."""
    for folder, folders, files in os.walk(root, followlinks=False):
        yield Path(folder), folders, files


def links_in(root: str | os.PathLike) -> list[Path]:
    """The symbolic links below ``root`` (files and folders), without following any."""
    found = []
    for folder, folders, files in walk_folder(root):
        found += [folder / name for name in (*folders, *files) if (folder / name).is_symlink()]
    return sorted(found)
