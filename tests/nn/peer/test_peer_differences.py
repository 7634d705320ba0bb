"""Every deliberate difference the peer suite marks is documented: each
differs marker in this folder names, by its key, a bold entry of README.md's section
"Differences from torch.nn"."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

HERE = Path(__file__).parent
README = HERE.parents[2] / "README.md"


def _documented_keys() -> set[str]:
    text = README.read_text(encoding="utf-8")
    assert "\n## Differences from torch.nn\n" in text, "README.md lost its differences section"
    section = text.split("\n## Differences from torch.nn\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^- \*\*(.+?)\*\*", section, flags=re.MULTILINE))


def test_every_marked_difference_is_documented():
    marked = {key for path in sorted(HERE.glob("test_peer_*.py"))
              for key in re.findall(r'mark\.differs\("([^"]+)"\)', path.read_text("utf-8"))}
    assert marked, "no differs markers found: the pattern above no longer matches the tests"
    assert marked <= _documented_keys(), "undocumented: " + ", ".join(
        sorted(marked - _documented_keys()))


@pytest.mark.differs("unknown cell nonlinearity")
def test_cell_nonlinearity_checked_when_built(impl, differs):
    if differs:
        with pytest.raises(RuntimeError, match="unknown nonlinearity 'garbage'"):
            impl.RNNCell(3, 4, nonlinearity="garbage")
    else:
        impl.RNNCell(3, 4, nonlinearity="garbage")
