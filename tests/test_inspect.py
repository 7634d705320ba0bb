"""inspect: gate activations and ‖∂L/∂h_t‖ recorded from saved runs."""

import numpy as np
import pytest

from rnnlab._io import InputError
from rnnlab.inspect import cell_runs, inspect_run, load_run, probe_run
from rnnlab.training import train

T = 30


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for cell in ("rnn", "lstm", "gru"):
        train(run_dir=root / cell, task="adding", task_options={"length": T, "val_size": 16},
              cell=cell, hidden=16, steps=5, eval_every=5, batch_size=8, progress="none")
    return root


def test_gradient_norms_vanish_for_the_plain_rnn_at_init(runs):
    ratio = {}
    for cell in ("rnn", "lstm", "gru"):
        probe = probe_run(runs / cell)
        init = np.asarray(probe.gradients["init"])
        assert init.shape == (T,) and np.all(init > 0)
        ratio[cell] = init[0] / init[-1]
    assert ratio["rnn"] < 1e-2  # the signal from the last step fades over T steps
    assert ratio["lstm"] > 10 * ratio["rnn"]  # forget bias 1 keeps a path open


def test_gates_have_the_layer_layout_and_ranges(runs):
    probe = probe_run(runs / "lstm")
    assert set(probe.gates) >= {"i", "f", "g", "o", "c"}
    for name in "ifo":
        g = np.asarray(probe.gates[name])
        assert g.shape == (T, 16) and g.min() >= 0 and g.max() <= 1
    assert np.asarray(probe.gates["f"]).mean() > 0.6  # forget bias 1: σ(1 + noise)
    gru = probe_run(runs / "gru")
    assert set(gru.gates) >= {"r", "z", "n"}


def test_inspect_run_redraws_the_plots(runs):
    probes = inspect_run(runs / "gru")
    assert list(probes) == ["gru"]
    for name in ("gradients.png", "gates_gru.png"):
        assert (runs / "gru" / name).read_bytes()[:4] == b"\x89PNG"


def test_load_run_rebuilds_the_trained_model(runs):
    model, task = load_run(runs / "rnn")
    result = train(run_dir=runs / "rnn", resume=True, progress="none")  # already done
    assert result.steps == 5
    assert task.evaluate(model)["mse"] == pytest.approx(result.best, rel=1e-6)
    assert cell_runs(runs / "rnn") == [runs / "rnn"]


def test_inspect_refuses_what_is_not_a_run(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        inspect_run(tmp_path / "nope")
    with pytest.raises(InputError, match="not an rnnlab run folder"):
        inspect_run(tmp_path)
