"""The Containerfile reader itself: the rules in test_containerfile.py trust what it extracts."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.containerfile import Instruction, parse_containerfile, parse_containerignore

if TYPE_CHECKING:
    from pathlib import Path


def test_parser_rejects_what_it_cannot_read(tmp_path: Path) -> None:
    cases = {
        "FROM python:3.11\nFROBNICATE yes\n": "unknown instruction",
        "FROM python:3.11\nRUN echo \\\n": "ends inside a line continuation",
        "ENV A=1\nFROM python:3.11\n": "only ARG may come before",
        "# just a comment\n": "has no FROM",
        "FROM ${UNSET_IMAGE}\n": "has no default value",
        "FROM python:3.11 as\n": "cannot read FROM",
    }
    for text, message in cases.items():
        path = tmp_path / "Containerfile"
        path.write_text(text)
        with pytest.raises(ValueError, match=message):
            parse_containerfile(path)


def test_parser_joins_continuations_and_skips_comments_inside_them(tmp_path: Path) -> None:
    path = tmp_path / "Containerfile"
    path.write_text(
        "# syntax=docker/dockerfile:1\n"
        "ARG BASE=python:3.11-slim\n"
        "FROM ${BASE} AS build\n"
        "RUN --mount=type=cache,target=/c apt-get update \\\n"
        "    # a comment inside the continuation\n"
        "    && true\n"
        'ENV A=1 B="two words" C=${A}/x\n'
        "FROM build\n"
        'CMD echo "not json"\n'
    )
    cf = parse_containerfile(path)
    run = cf.stages[0].all("RUN")[0]
    assert run.options == {"mount": "type=cache,target=/c"}
    assert run.body == "apt-get update && true"
    assert cf.stages[0].image == "python:3.11-slim"
    assert cf.stages[0].env(cf.global_args) == {"A": "1", "B": "two words", "C": "1/x"}
    assert cf.stages[1].image == "build"
    assert cf.directives == {"syntax": "docker/dockerfile:1"}
    cmd = cf.final.last("CMD")
    assert cmd is not None
    with pytest.raises(ValueError, match="Expecting value"):
        cmd.exec_form()
    bad_env = Instruction("ENV", "LEGACY value", 1)
    with pytest.raises(ValueError, match="name=value"):
        bad_env.key_values()


def test_ignore_rules_last_match_wins_and_parents_count(tmp_path: Path) -> None:
    path = tmp_path / ".containerignore"
    path.write_text("# comment\n*\n!src/\nsrc/**/*.log\n!src/keep.log\n**/__pycache__\n")
    rules = parse_containerignore(path)
    assert rules.excludes("README.md")
    assert not rules.excludes("src/app.py")
    assert rules.excludes("src/deep/debug.log")
    assert not rules.excludes("src/keep.log")
    assert rules.excludes("src/pkg/__pycache__/m.pyc")
    assert rules.excludes("build/src/app.py")
