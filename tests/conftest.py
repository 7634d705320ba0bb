import os

import pytest
import torch

# Whole files of long end-to-end tests (subprocesses, torchrun jobs, Triton's interpreter,
# every README example): marked ``slow``. ``make test`` runs them; ``make test-fast``
# (pytest -m "not slow") leaves them out for quick local iteration.
SLOW_FILES = (
    "tests/test_distributed.py",
    "tests/test_readme.py",
    "tests/backends/gpu/",
)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid.startswith(SLOW_FILES):
            item.add_marker(pytest.mark.slow)
    # A run with RNNLAB_BACKEND forced (make test reruns tests/nn and tests/ops on the
    # portable backend) leaves out the tests that name their backend as a parameter: they
    # run every backend already, and the forced one does not reach them.
    if os.environ.get("RNNLAB_BACKEND"):
        named = {id(item) for item in items
                 if "backend" in getattr(getattr(item, "callspec", None), "params", {})}
        if named:
            config.hook.pytest_deselected(items=[i for i in items if id(i) in named])
            items[:] = [i for i in items if id(i) not in named]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tests run two at a time (pytest -n 2) on two cores: one thread each."""
    torch.set_num_threads(1)
