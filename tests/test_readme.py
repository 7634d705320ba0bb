"""Every example in README.md runs as written.

Blocks are found anew on every run, so a README section added later is tested without
touching this file:

- each ```python block runs in-process, in a fresh namespace;
- each ``rnnlab ...`` line of a ```sh block runs in-process through click's CliRunner,
  the lines of one block in order (later lines use the run folders of earlier ones);
  other shell lines (``make``, ``torchrun``) are not run here.

Everything runs in a temporary folder holding a link to ``docs/`` (the example data
files the commands name). The one change made to what the README says is the training
budget: ``steps=N`` becomes ``steps=2`` in Python, and ``--steps 2`` is appended to
``rnnlab train`` and ``rnnlab compare``.
"""

import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from rnnlab.cli import main

ROOT = Path(__file__).parents[1]
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)
SHELLS = ("sh", "bash", "shell", "console")
BUDGET = 2


def _blocks() -> list[tuple[str, str, str]]:
    """(id, language, code) of every python block and every shell block with rnnlab lines."""
    text = (ROOT / "README.md").read_text()
    found = []
    for match in BLOCK.finditer(text):
        language, code = match.group(1), match.group(2)
        line = text.count("\n", 0, match.start()) + 1
        if language == "python" or (language in SHELLS and _commands(code)):
            found.append((f"README.md:{line}", language, code))
    return found


def _commands(code: str) -> list[list[str]]:
    """The ``rnnlab`` command lines of a shell block, as argument lists."""
    commands = []
    for line in code.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words[:1] == ["rnnlab"]:
            commands.append(words[1:])
    return commands


def _small_budget(args: list[str]) -> list[str]:
    return [*args, "--steps", str(BUDGET)] if args[:1] in (["train"], ["compare"]) else args


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    (tmp_path / "docs").symlink_to(ROOT / "docs", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_readme_has_examples_of_both_kinds():
    languages = {language for _, language, _ in _blocks()}
    assert "python" in languages and languages & set(SHELLS)


@pytest.mark.parametrize(("where", "language", "code"), _blocks(), ids=[b[0] for b in _blocks()])
def test_a_readme_block_runs_as_written(workdir, where, language, code):
    if language == "python":
        code = re.sub(r"\bsteps=\d+", f"steps={BUDGET}", code)
        exec(compile(code, where, "exec"), {"__name__": "__readme__"})
        return
    for args in _commands(code):
        result = CliRunner().invoke(main, _small_budget(args))
        assert result.exit_code == 0, (where, args, result.output, result.exception)
