"""Every deliberate difference the peer suite marks is documented: each
differs marker in this folder names, by its key, a bold entry of README.md's section
"Differences from torch.nn"."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch.nn.utils.rnn import pack_sequence, pad_packed_sequence

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


@pytest.mark.differs("dropout draws with packed input")
def test_dropout_draws_with_packed_input(impl, differs):
    """rnnlab draws the inter-layer masks over the padded batch, so a packed batch gets the
    masks of the same padded batch with ``lengths=``; torch.nn draws them over the packed
    data. Either way the same seed repeats the same masks."""
    model = impl.GRU(3, 4, 2, dropout=0.5)
    sequences = [torch.randn(5, 3), torch.randn(3, 3), torch.randn(2, 3)]
    packed = pack_sequence(sequences)
    torch.manual_seed(0)
    out = pad_packed_sequence(model(packed)[0])[0]
    torch.manual_seed(0)
    if differs:
        padded, lengths = pad_packed_sequence(packed)
        expected = model(padded, lengths=lengths)[0]
    else:
        expected = pad_packed_sequence(model(packed)[0])[0]
    assert torch.equal(out, expected)
