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


@pytest.fixture(autouse=True)
def _one_thread():
    """Tests run two at a time (pytest -n 2) on two cores: one thread each."""
    torch.set_num_threads(1)
