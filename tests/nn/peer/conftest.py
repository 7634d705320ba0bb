"""The peer suite: torch.nn's own RNN/LSTM/GRU tests, re-expressed, run on torch.nn and on
rnnlab.nn alike.

Every test takes ``impl`` (the module ``torch.nn`` or ``rnnlab.nn``). A case where rnnlab
deliberately behaves otherwise is marked ``@pytest.mark.differs("<key>")`` and, on the
rnnlab side, asserts rnnlab's own behaviour; every key is a bold entry of README.md's
"Differences from torch.nn" (checked by ``test_peer_differences.py``).
"""

from __future__ import annotations

import pytest
import torch

import rnnlab.nn

IMPLS = {"torch": torch.nn, "rnnlab": rnnlab.nn}


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "differs(key): rnnlab.nn deliberately differs from torch.nn here; the test asserts "
        "rnnlab's documented behaviour (README.md, Differences from torch.nn, <key>)",
    )


@pytest.fixture(params=list(IMPLS))
def impl(request):
    return IMPLS[request.param]


@pytest.fixture
def differs(request, impl) -> bool:
    """Whether this case runs rnnlab.nn where it deliberately differs: only a test marked
    ``differs`` may ask."""
    assert request.node.get_closest_marker("differs") is not None, (
        "a test that asserts an rnnlab-specific behaviour must be marked @pytest.mark.differs"
    )
    return impl is rnnlab.nn
