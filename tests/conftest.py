import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Tests run two at a time (pytest -n 2) on two cores: one thread each."""
    torch.set_num_threads(1)
