"""Every ``alscope`` flag that the README and the docs mention exists on the command line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from alscope.cli import app

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted(
    [
        ROOT / "README.md",
        *(ROOT / "docs").glob("*.md"),
        *ROOT.glob("alscope-*/README.md"),
        *ROOT.glob("plugins/*/README.md"),
    ]
)
FLAG = re.compile(r"(?<![\w-])--[a-zA-Z][a-zA-Z0-9-]*")
#: flags the docs quote from other programs, each with whose it is
NOT_ALSCOPE = {
    "--known-T": "EOAL's official main.py",
    "--unknown-T": "EOAL's official main.py",
    "--pareta-alpha": "EOAL's official main.py (their spelling)",
    "--reg-w": "EOAL's official main.py",
    "--lr-mqnet": "MQNet's official main.py",
    "--milp": "benchmarks/bench_class_balanced.py",
    "--exact": "benchmarks/bench_coreset.py",
}
FENCE = re.compile(r"```[^\n]*\n(.*?)```", re.S)
INLINE = re.compile(r"`([^`\n]+)`")
COMMAND = re.compile(r"^(?:\$\s*)?(?:\S*/)?alscope\s+(run|report|list|info|label\s+\w+)\b(.*)$")


def cli_flags() -> dict[str, set[str]]:
    group = typer.main.get_command(app)
    assert hasattr(group, "commands"), type(group)
    flags: dict[str, set[str]] = {}

    def collect(prefix: str, commands: dict) -> None:
        for name, command in commands.items():
            flags[f"{prefix}{name}"] = {
                opt for param in command.params for opt in (*param.opts, *param.secondary_opts)
            }
            if hasattr(command, "commands"):  # a group of subcommands: alscope label init, ...
                collect(f"{prefix}{name} ", command.commands)

    collect("", group.commands)
    return flags


def mentioned(path: Path) -> list[tuple[str | None, str, str]]:
    """(subcommand or None, flag, the text it stands in): flags on ``alscope <cmd>`` lines of
    code blocks and inline code, and inline code that is a flag alone (``--min-steps 0``)."""
    text = path.read_text(encoding="utf-8")
    found: list[tuple[str | None, str, str]] = []
    spans = [line for block in FENCE.findall(text) for line in block.splitlines()]
    spans += INLINE.findall(FENCE.sub("", text))
    for span in spans:
        span = span.strip()
        command = COMMAND.match(span)
        if command:
            found += [
                (" ".join(command.group(1).split()), flag, span) for flag in FLAG.findall(command.group(2))
            ]
        elif span.startswith("--") and " " not in span.split("=")[0].strip():
            found += [(None, flag, span) for flag in FLAG.findall(span)[:1]]
    return found


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_documented_flags_exist(path: Path) -> None:
    flags = cli_flags()
    every = set().union(*flags.values())
    wrong = [
        f"{flag} ({span!r})"
        for command, flag, span in mentioned(path)
        if flag not in (flags[command] if command else every) and (command or flag not in NOT_ALSCOPE)
    ]
    assert not wrong, f"{path.name} mentions flags alscope does not have: {wrong}"


def test_the_scan_finds_flags() -> None:
    assert sum(len(mentioned(p)) for p in DOCS) > 50
