import pytest
import torch

from rnnlab.backends.cpu import _isa, _switches, _tuning


@pytest.fixture(params=list(_isa.BY_NAME))
def cpu_isa(request):
    """Run the test once per kernel variant of the cpu backend (a variant this CPU cannot
    run is skipped, naming the features it lacks), and check that the variant's tiles,
    and only its, ran."""
    variant = _isa.BY_NAME[request.param]
    missing = _isa.missing_features(variant)
    if missing:
        pytest.skip(f"{variant.name} kernels need {', '.join(missing)}: not on this CPU")
    _isa.clear_ran()
    with _isa.use_isa(variant.name):
        yield variant
    assert _isa.ran() == {variant.name}, f"tiles of {_isa.ran()} ran, not of {variant.name}"


@pytest.fixture
def split_in_two(monkeypatch):
    """Every cpu backend call split into two parts by samples, whatever its size: no
    thread cap, no minimum of work a part, two torch threads (restored after)."""
    monkeypatch.setattr(_switches, "THREAD_CAP", None)
    monkeypatch.setattr(_tuning, "MIN_PART_FLOPS", 0)
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        yield
    finally:
        torch.set_num_threads(saved)
