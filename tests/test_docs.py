"""The README and docs/ stay true for their users: links that resolve, quoted paths and test names
that exist, and commands that name only config keys and options that exist.

Every `python -m resnet_cifar.train ...`, `python -m resnet_cifar.evaluate ...` and
`./multirun.sh ...` line quoted in a code block is composed with Hydra's compose API (not run):
an unknown config group, option or key fails here, not in a user's terminal. Options of the
other commands (`--flag` of bench/*.py, bench/*.sh, the report) must appear in their source.
"""

from __future__ import annotations

import functools
import re
import shlex
from collections import Counter
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

FENCE = re.compile(r"^(\s*)(```|~~~)(.*)$")
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.M)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
REPO_PATH = re.compile(r"^(?:src|tests|bench|conf|scripts|docs|\.ci)/[\w./*-]*[\w*]$")
TEST_NAME = re.compile(r"^([\w./-]+\.py)::(\w+)")
HYDRA_APPS = {"resnet_cifar.train": "train", "resnet_cifar.evaluate": "evaluate"}


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def split_markdown(text: str) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(prose lines, code-block lines), each as (line number, text)."""
    prose, code, fence = [], [], None
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if match and (fence is None or match.group(2) == fence):
            fence = match.group(2) if fence is None else None
            continue
        (prose if fence is None else code).append((number, line))
    return prose, code


def heading_anchors(text: str) -> set[str]:
    """GitHub's anchors of a page's headings (lower case, punctuation dropped, spaces to -)."""
    prose, _ = split_markdown(text)
    seen: Counter[str] = Counter()
    anchors = set()
    for _, line in prose:
        if match := re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line):
            slug = re.sub(r"[^\w\- ]", "", match.group(1).lower()).replace(" ", "-")
            anchors.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
            seen[slug] += 1
    return anchors


# --- links and paths -----------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_relative_links_resolve(page):
    text = page.read_text()
    prose, _ = split_markdown(text)
    prose_text = "\n".join(line for _, line in prose)
    targets = [m.group(1) for m in LINK.finditer(prose_text)] + REFERENCE_LINK.findall(prose_text)
    broken = []
    for target in targets:
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:, ...
            continue
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked.read_text()):
            broken.append(f"{target}: no heading #{anchor} in {rel(linked)}")
    assert not broken, f"{rel(page)}: links that do not resolve:\n" + "\n".join(broken)


def find_test_file(name: str) -> Path | None:
    path = REPO / name
    if path.is_file():
        return path
    matches = sorted((REPO / "tests").rglob(Path(name).name))
    return matches[0] if matches else None


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_quoted_repository_paths_and_tests_exist(page):
    missing = []
    for code in INLINE_CODE.findall(page.read_text()):
        code = code.strip()
        if match := TEST_NAME.match(code):
            file = find_test_file(match.group(1))
            if file is None:
                missing.append(f"{code}: no test file {match.group(1)}")
            elif not re.search(rf"def {match.group(2)}\b", file.read_text()):
                missing.append(f"{code}: no test {match.group(2)} in {rel(file)}")
        elif REPO_PATH.match(code.split("::")[0]):
            path = code.split("::")[0]
            if not (list(REPO.glob(path)) if "*" in path else (REPO / path).exists()):
                missing.append(f"{code}: no such path in the repository")
    assert not missing, f"{rel(page)} quotes what does not exist:\n" + "\n".join(missing)


# --- commands --------------------------------------------------------------------------------------


def shell_commands(page: Path) -> list[tuple[int, list[str]]]:
    """Every shell command in the page's code blocks: (line number, words), continuation lines
    joined, `$ ` prompts and comments dropped, pipelines and `&&` lists split."""
    _, code = split_markdown(page.read_text())
    commands, pending, start = [], "", 0
    for number, line in code:
        if not pending:
            start = number
        pending += line.rstrip().removesuffix("\\") + " "
        if line.rstrip().endswith("\\"):
            continue
        text, pending = pending.strip().removeprefix("$ "), ""
        try:
            lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|")
            lexer.whitespace_split = True
            words = list(lexer)
        except ValueError:  # not shell (output, Python, a tree)
            continue
        command: list[str] = []
        for word in [*words, ";"]:
            if word and set(word) <= set(";&|"):
                if command:
                    commands.append((start, command))
                command = []
            else:
                command.append(word)
    return commands


def app_overrides(words: list[str]) -> tuple[str, list[str]] | None:
    """(config name, overrides) of a command that runs a Hydra app of the project, else None."""
    for i, word in enumerate(words):
        launcher = words[i - 1].startswith("python") or words[0] == "torchrun"  # torchrun's own options come first
        if word == "-m" and i + 1 < len(words) and words[i + 1] in HYDRA_APPS and launcher:
            config, args = HYDRA_APPS[words[i + 1]], words[i + 2 :]
            break
        if word.endswith("multirun.sh"):  # the study: train -m with model=..., model.depth=..., seed=...
            config, args = "train", ["model=resnet", "model.depth=20", "seed=0", *words[i + 1 :]]
            break
    else:
        return None
    overrides, skip_next = [], False
    for arg in args:
        if arg.startswith("[") and arg.endswith("]"):  # [data.root=...]: an optional argument
            arg = arg[1:-1]
        if skip_next:
            skip_next = False
        elif arg in ("--cfg", "-c", "--package", "-p", "--config-name", "-cn", "--info"):
            skip_next = arg != "--info"
        elif arg.startswith("-") or ("=" not in arg and not arg.startswith("~")):
            continue  # -m, --help, ...; a placeholder word
        else:  # placeholders such as data.root=... or data.root=$DATA compose as any string
            key, _, value = arg.partition("=")
            overrides.append(f"{key}=PATH" if "$" in value else arg)
    return config, overrides


@functools.cache
def overrides_parser() -> OverridesParser:
    return OverridesParser.create()


def expand_sweeps(overrides: list[str]) -> list[list[str]]:
    """Sweeps as separate compositions: every option of a swept group once (model=resnet,plain),
    the others at their first value; a swept value (seed=0,1,2) only at its first."""
    parsed = overrides_parser().parse_overrides(overrides)
    choices = []
    for raw, override in zip(overrides, parsed):
        key = raw.partition("=")[0]
        if override.is_sweep_override():
            try:
                values = list(override.sweep_string_iterator())
            except Exception:  # interval(...) and other sweeper syntax: the key alone is checked
                values = ["0.1"]
            group = "." not in key.lstrip("+~")
            choices.append([f"{key}={value}" for value in (values if group else values[:1])])
        else:
            choices.append([raw])
    first = [options[0] for options in choices]
    combinations = [first]
    for i, options in enumerate(choices):
        combinations += [first[:i] + [option] + first[i + 1 :] for option in options[1:]]
    return combinations


def quoted_commands():
    found = []
    for page in PAGES:
        for number, words in shell_commands(page):
            found.append(pytest.param(words, id=f"{rel(page)}:{number}"))
    return found


def config_dir() -> Path:
    packaged = REPO / "src" / "resnet_cifar" / "conf"
    return packaged if packaged.is_dir() else REPO / "conf"


@pytest.fixture(scope="module")
def hydra_context():
    try:
        from resnet_cifar.resolvers import register_resolvers
    except ImportError:  # the package registers them when imported
        import resnet_cifar  # noqa: F401
    else:
        register_resolvers()
    GlobalHydra.instance().clear()  # a Hydra app run in this process before may have left it set
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        yield


def command_source(words: list[str]) -> Path | None:
    """The file that defines a quoted command's options (bench/*.py, bench/*.sh, python -m X)."""
    for i, word in enumerate(words):
        if word == "-m" and i + 1 < len(words) and words[i + 1].startswith("resnet_cifar."):
            module = REPO / "src" / Path(*words[i + 1].split("."))
            return next((p for p in (module.with_suffix(".py"), module / "__main__.py") if p.is_file()), None)
        if re.match(r"^(\./)?(bench|scripts)/\S+\.(py|sh)$", word):
            return REPO / word.removeprefix("./")
    return None


@functools.cache
def composition_error(config: str, overrides: tuple[str, ...]) -> str | None:
    """Why ``config`` does not compose with ``overrides`` (None: it does); the same command
    quoted on several pages is composed once."""
    try:
        compose(config, overrides=list(overrides), return_hydra_config=True)
    except Exception as error:
        return str(error)
    return None


@pytest.mark.parametrize("words", quoted_commands())
def test_quoted_command_names_what_exists(words, hydra_context):
    app = app_overrides(words)
    if app is not None:
        config, overrides = app
        for combination in expand_sweeps(overrides):
            error = composition_error(config, tuple(combination))
            if error:
                pytest.fail(f"{shlex.join(words)}\ndoes not compose ({config}.yaml, {combination}):\n{error}")
        return
    source = command_source(words)
    if source is None:
        return
    assert source.is_file(), f"{shlex.join(words)}: no {rel(source)}"
    text = source.read_text()
    for word in words:
        if word.startswith("--") and word != "--help":
            option = word.partition("=")[0]
            assert re.search(rf"{re.escape(option)}(?![\w-])", text), (
                f"{shlex.join(words)}: {rel(source)} has no {option}"
            )


def test_the_command_check_catches_an_unknown_key(hydra_context):
    """The check above can fail: a misspelt key and a missing group option do not compose."""
    for overrides in (["model.dpeth=56"], ["module=no_such_module"], ["~callbacks.no_such_callback"]):
        with pytest.raises(Exception):  # noqa: B017 (Hydra raises several kinds; any of them will do)
            compose("train", overrides=overrides, return_hydra_config=True)
    assert app_overrides(shlex.split("python -m resnet_cifar.train -m model.depth=20,32 data.root=$DATA")) == (
        "train",
        ["model.depth=20,32", "data.root=PATH"],
    )
    assert expand_sweeps(["model=resnet,plain", "model.depth=20,32"]) == [
        ["model=resnet", "model.depth=20"],
        ["model=plain", "model.depth=20"],
    ]
