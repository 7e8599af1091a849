"""The README and docs/ as a new user reads them: short README, every relative link resolves, every Python example
runs exactly as written, every shell example names commands, flags and scripts that exist."""

from __future__ import annotations

import argparse
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO
from drdm.cli import build_parser

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(page: Path, language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(page.read_text(encoding="utf-8")) if lang == language]


def test_readme_fits_on_a_few_screens():
    assert len((REPO / "README.md").read_text(encoding="utf-8").splitlines()) <= 200


def test_docs_cover_the_topics_the_readme_links():
    names = {p.name for p in (REPO / "docs").glob("*.md")}
    assert {"cli.md", "python.md", "slicer.md", "web.md", "models.md", "training.md", "registration.md",
            "performance.md", "architecture.md"} <= names
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert all(f"docs/{name}" in readme for name in names)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    targets = [t for t in LINK.findall(page.read_text(encoding="utf-8"))
               if not re.match(r"^(https?:|mailto:|#)", t)]
    missing = [t for t in targets if not (page.parent / t.split("#")[0]).exists()]
    assert missing == []


def test_the_link_check_sees_links_and_pictures(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("[a](there.md) ![b](pic.png \"title\") [c](https://x.org) [d](#here)\n")
    assert LINK.findall(page.read_text()) == ["there.md", "pic.png", "https://x.org", "#here"]


PYTHON_PAGES = [p for p in PAGES if blocks(p, "python")]


def test_the_readme_has_a_python_example():
    assert REPO / "README.md" in PYTHON_PAGES and REPO / "docs" / "python.md" in PYTHON_PAGES


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=lambda p: p.name)
def test_python_examples_run_as_written(page, tmp_path, monkeypatch):
    """A page's ```python blocks run in order in one namespace (as a reader pastes them), in an empty folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DRDM_MODEL", raising=False)
    namespace: dict = {"__name__": "__main__"}
    for index, body in enumerate(blocks(page, "python")):
        exec(compile(body, f"{page.name}[python block {index}]", "exec"), namespace)


@dataclass(frozen=True)
class Usage:
    """What ``drdm <sub> --help`` lists: the long flags, and the choices of a first positional (``models list|…``)."""

    flags: set[str]
    choices: tuple[str, ...] | None


def subcommand_usage() -> dict[str, Usage]:
    """Every ``drdm`` subcommand and its usage, read from its ``--help``."""
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    usage = {}
    for name, sub in commands.choices.items():
        positional = [a for a in sub._actions if not a.option_strings and a.choices]
        usage[name] = Usage(set(re.findall(r"--[a-z][a-z0-9-]*", sub.format_help())),
                            tuple(positional[0].choices) if positional else None)
    return usage


def shell_commands(body: str) -> list[list[str]]:
    """The commands of a ```bash block: continuation lines joined, comments dropped, split at ``|``, ``&&``, ``;``."""
    text = re.sub(r"\\\n\s*", " ", body)
    commands = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        current: list[str] = []
        for token in shlex.split(line, comments=True) + [";"]:
            if token in ("|", "&&", ";", "||"):
                if current:
                    commands.append(current)
                current = []
            else:
                current.append(token)
    return commands


def drdm_arguments(command: list[str]) -> list[str] | None:
    """The arguments after ``drdm`` in ``drdm …``, ``python -m drdm …`` or ``torchrun … -m drdm …``; else None."""
    words = [w for w in command if "=" not in w or w.startswith("-")]
    if words and words[0] == "drdm":
        return words[1:]
    if "-m" in words and words.index("-m") + 1 < len(words) and words[words.index("-m") + 1] == "drdm":
        return words[words.index("-m") + 2:]
    return None


def check_command(command: list[str], usage: dict[str, Usage]) -> list[str]:
    """What is wrong with one shell command: an unknown ``drdm`` subcommand, action or flag; a missing script."""
    arguments = drdm_arguments(command)
    if arguments is not None:
        if not arguments or arguments[0] not in usage:
            return [f"no subcommand drdm {' '.join(arguments[:1])}"]
        sub, rest = usage[arguments[0]], arguments[1:]
        problems = [f"drdm {arguments[0]}: no flag {a}" for a in rest if a.startswith("--") and a.split("=")[0] not in sub.flags]
        positional = [a for a in rest if not a.startswith("-")]
        if sub.choices and (not positional or positional[0] not in sub.choices):
            problems.append(f"drdm {arguments[0]}: no action {positional[:1]}")
        return problems
    problems = []
    for script in [w for w in command if w.startswith(("scripts/", "benchmarks/")) and w.endswith((".sh", ".py"))]:
        if not (REPO / script).is_file():
            problems.append(f"no script {script}")
            continue
        text = (REPO / script).read_text(encoding="utf-8")
        problems += [f"{script}: no flag {a}" for a in command[command.index(script) + 1:]
                     if a.startswith("--") and a.split("=")[0] not in text]
    return problems


BASH_PAGES = [p for p in PAGES if blocks(p, "bash")]


@pytest.mark.parametrize("page", BASH_PAGES, ids=lambda p: p.name)
def test_shell_examples_name_commands_and_flags_that_exist(page):
    usage = subcommand_usage()
    commands = [c for body in blocks(page, "bash") for c in shell_commands(body)]
    assert commands
    assert [p for c in commands for p in check_command(c, usage)] == []


def test_the_shell_check_catches_what_does_not_exist():
    flags = subcommand_usage()
    assert check_command(["drdm", "models", "lsit"], flags) == ["drdm models: no action ['lsit']"]
    assert check_command(["drdm", "generate", "a.nii.gz", "--levle", "3"], flags) == ["drdm generate: no flag --levle"]
    assert check_command(["drdm", "genrate"], flags) == ["no subcommand drdm genrate"]
    assert check_command(["torchrun", "--standalone", "-m", "drdm", "augment", "d/", "--out", "o/"], flags) == []
    assert check_command(["drdm", "models", "fetch", "lct-3d", "--url", "u"], flags) == []
    assert check_command(["bash", "scripts/nothing.sh"], flags) == ["no script scripts/nothing.sh"]
    assert shell_commands("drdm a \\\n  --b 1 # note\n# only a comment\nx | drdm c\n") == [
        ["drdm", "a", "--b", "1"], ["x"], ["drdm", "c"]]
