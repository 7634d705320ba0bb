"""Tasks: data layout, targets, chance levels, model shapes and parameter counts."""

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnlab._io import InputError
from rnnlab.tasks import (
    TASKS,
    ModelConfig,
    SequenceModel,
    get_task,
    match_hidden,
)
from rnnlab.tasks.adding import adding_batch
from rnnlab.tasks.charlm import stdlib_corpus
from rnnlab.tasks.forecast import mackey_glass
from rnnlab.training import TrainConfig


def test_adding_batch_has_two_markers_one_per_half_and_sums_them():
    x, y = adding_batch(256, 20, torch.Generator().manual_seed(0))
    assert x.shape == (256, 20, 2) and y.shape == (256, 1)
    markers = x[..., 1]
    assert torch.equal(markers.sum(1), torch.full((256,), 2.0))
    assert torch.equal(markers[:, :10].sum(1), torch.ones(256))
    assert torch.allclose((x[..., 0] * markers).sum(1, keepdim=True), y)


def test_adding_chance_is_the_variance_of_the_target():
    task = get_task("adding", {"length": 10, "val_size": 20000})
    assert task.chance == pytest.approx(1 / 6)
    assert float(((task.val_y - 1.0) ** 2).mean()) == pytest.approx(1 / 6, rel=0.03)


def test_copy_layout_and_memoryless_chance():
    task = get_task("copy", {"delay": 5, "symbols": 4, "seq_len": 3, "val_size": 50})
    x, y = task.val_x, task.val_y
    assert x.shape == y.shape == (50, 5 + 6)
    assert torch.equal(x[:, 3 + 5 - 1], torch.full((50,), 5))  # delimiter K+1
    assert torch.equal(y[:, -3:], x[:, :3])  # recall the symbols in order
    assert int(y[:, :-3].abs().sum()) == 0 and int(x[:, 3:].ne(0).sum()) == 50
    assert task.chance == pytest.approx(3 * math.log(4) / 11)


def _model_numel(mc: ModelConfig) -> int:
    return sum(p.numel() for p in SequenceModel(mc).parameters())


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize(
    "extra",
    [{}, {"num_layers": 2}, {"bidirectional": True}, {"embed_dim": 5, "readout": "all"}],
)
def test_parameter_count_formula_matches_the_model(cell, extra):
    mc = ModelConfig(cell, 7, 6, 3, **extra)
    assert mc.num_parameters() == _model_numel(mc)


def test_match_hidden_picks_the_closest_width():
    base = ModelConfig("gru", 2, 1, 1)
    h = match_hidden(base, 17473)
    counts = {w: ModelConfig("gru", 2, w, 1).num_parameters() for w in (h - 1, h, h + 1)}
    assert abs(counts[h] - 17473) == min(abs(c - 17473) for c in counts.values())


def test_model_readouts_and_lengths():
    torch.manual_seed(0)
    model = SequenceModel(ModelConfig("lstm", 3, 5, 2, readout="last"))
    x = torch.randn(2, 6, 3)
    full, _ = model(x[:1, :4])
    padded, _ = model(x, lengths=torch.tensor([4, 6]))
    assert padded.shape == (2, 2)
    torch.testing.assert_close(padded[:1], full, rtol=1e-5, atol=1e-6)
    seq = SequenceModel(ModelConfig("gru", 4, 5, 4, embed_dim=3, readout="all"))
    out, h = seq(torch.randint(0, 4, (2, 7)))
    assert out.shape == (2, 7, 4) and h.shape == (1, 2, 5)


def test_bad_model_options_are_named():
    with pytest.raises(InputError, match="unknown cell 'tcn'"):
        ModelConfig("tcn", 1, 1, 1)
    with pytest.raises(InputError, match="bidirectional"):
        get_task("copy", {"delay": 2}).model_config("gru", 4, bidirectional=True)
    with pytest.raises(InputError, match="has no option 'lenght'"):
        get_task("adding", {"lenght": 5})
    with pytest.raises(InputError, match="unknown task 'adder'"):
        get_task("adder")


def test_every_task_draws_batches_scores_and_probes(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 40)
    opts = {
        "adding": {"length": 6, "val_size": 16},
        "copy": {"delay": 3, "val_size": 16},
        "charlm": {"path": str(text), "eval_columns": 4},
        "forecast": {"window": 8, "horizon": 3, "series_length": 200},
        "classify": {"samples": 30, "length": 9},
        "parity": {"train_length": 5, "val_length": 9, "val_size": 16},
    }
    assert set(opts) == set(TASKS)
    cfg = TrainConfig(batch_size=4, bptt=7)
    for name, o in opts.items():
        task = get_task(name, o)
        model = SequenceModel(task.model_config("gru", 6))
        batch = task.train_batch(1, cfg, torch.Generator().manual_seed(0))
        again = task.train_batch(1, cfg, torch.Generator().manual_seed(0))
        for k, v in batch.items():
            if isinstance(v, torch.Tensor):
                assert torch.equal(v, again[k]), (name, k)
        loss, _ = task.loss(model, batch)
        loss.backward()
        assert loss.ndim == 0 and math.isfinite(loss.item()), name
        scores = task.evaluate(model)
        assert math.isfinite(scores[task.metric]), name
        assert task.chance > 0, name
        task.loss(model, task.probe())  # the probe batch is a valid input


def test_charlm_streams_columns_with_carried_state(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("".join(chr(97 + (i * 7) % 26) for i in range(2000)))
    task = get_task("charlm", {"path": str(text), "val_fraction": 0.1})
    cfg = TrainConfig(task="charlm", batch_size=3, bptt=5)
    b1 = task.train_batch(1, cfg, torch.Generator())
    b2 = task.train_batch(2, cfg, torch.Generator())
    assert b1["reset"] and not b2["reset"]
    assert b1["x"].shape == (3, 5)
    assert torch.equal(b1["x"][:, 1:], b1["y"][:, :-1])  # y is x shifted by one
    assert torch.equal(b2["x"][:, 0], b1["y"][:, -1])  # the next chunk continues the column
    n = len(task.train_ids) // 3
    assert torch.equal(b1["x"][1], task.train_ids[n : n + 5])
    assert len(task.val_ids) == 200
    chunks = (n - 1) // 5
    assert task.train_batch(chunks + 1, cfg, torch.Generator())["reset"]


def test_charlm_default_corpus_is_deterministic_stdlib_text():
    a, b = stdlib_corpus(5000), stdlib_corpus(5000)
    assert a == b and len(a) == 5000


def test_forecast_split_normalisation_and_naive_chance(tmp_path):
    rows = np.arange(100, dtype=float)
    csv = tmp_path / "s.csv"
    csv.write_text("t,a,b\n" + "".join(f"{i},{v},{2 * v}\n" for i, v in enumerate(rows)))
    task = get_task("forecast", {"path": str(csv), "columns": ["a"], "window": 5,
                                 "horizon": 2, "val_fraction": 0.2})
    assert task.columns == ["a"]
    assert task.mean[0] == pytest.approx(rows[:80].mean())  # training rows only
    assert task.std[0] == pytest.approx(rows[:80].std())
    # a linear ramp: the naive forecast is off by 1 and 2 steps
    expected = math.sqrt((1 + 4) / 2) / rows[:80].std()
    assert task.chance == pytest.approx(expected, rel=1e-5)
    assert len(task.val_x) == 20 - 7 + 1


def test_a_byte_order_mark_does_not_rename_the_first_column(tmp_path):
    csv = tmp_path / "bom.csv"
    csv.write_bytes("value\n".encode("utf-8-sig") + b"".join(b"%d\n" % i for i in range(50)))
    assert get_task("forecast", {"path": str(csv), "window": 4, "horizon": 2}).columns == [
        "value"
    ]


def test_forecast_default_is_mackey_glass():
    series = mackey_glass(300)
    assert series.shape == (300,) and 0.2 < series.min() < series.max() < 1.5
    assert np.array_equal(series, mackey_glass(300))


def test_classify_layouts_agree(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 4))
    y = ["up" if v[-1] > v[0] else "down" for v in x]
    wide = tmp_path / "wide.csv"
    wide.write_text("label,t0,t1,t2,t3\n" + "".join(
        f"{lab}," + ",".join(f"{v:.6f}" for v in row) + "\n" for lab, row in zip(y, x, strict=True)
    ))
    long = tmp_path / "long.csv"
    long.write_text("id,label,value\n" + "".join(
        f"s{i},{y[i]},{v:.6f}\n" for i in range(20) for v in x[i]
    ))
    npz = tmp_path / "d.npz"
    np.savez(npz, x=np.round(x, 6), y=np.array(y))
    tasks = [get_task("classify", {"path": str(wide)}),
             get_task("classify", {"path": str(long), "id": "id"}),
             get_task("classify", {"path": str(npz)})]
    for t in tasks:
        assert t.classes == ["down", "up"]
        assert t.val["x"].shape == (4, 4, 1) and t.train["x"].shape == (16, 4, 1)
    torch.testing.assert_close(tasks[0].val["x"], tasks[1].val["x"])
    torch.testing.assert_close(tasks[0].val["x"], tasks[2].val["x"])
    majority = max(set(tasks[0].train["y"].tolist()), key=tasks[0].train["y"].tolist().count)
    assert tasks[0].chance == pytest.approx(float((tasks[0].val["y"] == majority).float().mean()))


def test_classify_long_format_keeps_variable_lengths(tmp_path):
    long = tmp_path / "long.csv"
    lines = ["id,label,v"]
    for i in range(10):
        lines += [f"{i},{i % 2},{k}" for k in range(3 + i)]
    long.write_text("\n".join(lines) + "\n")
    task = get_task("classify", {"path": str(long), "id": "id"})
    lengths = sorted(task.train["lengths"].tolist() + task.val["lengths"].tolist())
    assert lengths == list(range(3, 13))


_CSV_CELLS = st.sampled_from(["1", "2.5", "-3e2", "", "nan", "inf", "x", " 4 ", '"5"', "1,2"])


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    header=st.lists(st.sampled_from(["a", "b", "c", "a"]), min_size=0, max_size=3),
    rows=st.lists(st.lists(_CSV_CELLS, min_size=0, max_size=4), min_size=0, max_size=30),
    task=st.sampled_from(["forecast", "classify"]),
)
def test_any_csv_either_loads_or_raises_input_error(tmp_path, header, rows, task):
    path = tmp_path / "data.csv"
    path.write_text("\n".join([",".join(header)] + [",".join(r) for r in rows]) + "\n")
    options = {"path": str(path)}
    if task == "forecast":
        options.update(window=2, horizon=1)
    else:
        options.update(label="a")
    try:
        loaded = get_task(task, options)
    except InputError as err:
        assert str(err) and "\n" not in str(err)
    else:
        assert math.isfinite(loaded.chance)
