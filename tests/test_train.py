"""The training loop: learning, determinism, budgets, early stopping, checkpoints, resume."""

import json
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from rnnlab._io import InputError
from rnnlab.cli import main
from rnnlab.training import TrainConfig, step_seed, train
from rnnlab.training.checkpoint import latest_checkpoint

TINY = dict(task="adding", task_options={"length": 6, "val_size": 64}, hidden=8, steps=30,
            batch_size=16, eval_every=10, checkpoint_every=10, progress="none")


def _weights(path: Path) -> dict:
    return load_file(str(path))


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_train_learns_the_short_adding_problem(tmp_path):
    r = train(run_dir=tmp_path / "r", **{**TINY, "cell": "gru", "steps": 300, "lr": 1e-2,
                                         "hidden": 16, "eval_every": 50})
    assert r.best < 0.25 * r.chance
    assert r.steps == 300 and r.stopped == "step budget reached"
    assert [h["step"] for h in r.history] == [50, 100, 150, 200, 250, 300]
    assert r.best == min(h["val"] for h in r.history)
    assert r.params == sum(p.numel() for p in r.model.parameters())
    files = {p.name for p in (tmp_path / "r").iterdir()}
    assert {"run.json", "config.json", "model.json", "task.json", "init.safetensors",
            "model.safetensors", "metrics.json", "checkpoints"} <= files
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["task"] == "adding" and metrics["metric"] == "mse"
    assert metrics["best"] == pytest.approx(r.best) and len(metrics["history"]) == 6


def test_two_runs_with_one_seed_are_bitwise_equal_and_seeds_differ(tmp_path):
    a = train(run_dir=tmp_path / "a", cell="lstm", **TINY)
    b = train(run_dir=tmp_path / "b", cell="lstm", **TINY)
    c = train(run_dir=tmp_path / "c", cell="lstm", seed=1, **TINY)
    _assert_same(_weights(tmp_path / "a" / "model.safetensors"),
                 _weights(tmp_path / "b" / "model.safetensors"))
    assert [h["val"] for h in a.history] == [h["val"] for h in b.history]
    assert not torch.equal(a.model.head.weight, c.model.head.weight)


def test_plain_progress_lines_are_few(tmp_path, capsys):
    train(run_dir=tmp_path / "r", **{**TINY, "steps": 100, "eval_every": 2, "progress": "lines"})
    lines = capsys.readouterr().out.splitlines()
    assert 10 <= len(lines) <= 11
    assert lines[-1].startswith("lstm: step 100/100 loss ") and " val mse " in lines[-1]


def test_step_seed_depends_on_seed_step_and_rank():
    seeds = {step_seed(s, t, r) for s in range(3) for t in range(3) for r in range(2)}
    assert len(seeds) == 18 and all(0 <= s < 2**63 for s in seeds)
    assert step_seed(0, 5) == step_seed(0, 5)


def test_existing_run_folder_is_never_overwritten_without_force(tmp_path):
    train(run_dir=tmp_path / "r", **TINY)
    before = (tmp_path / "r" / "model.safetensors").read_bytes()
    with pytest.raises(InputError, match="already exists; pass --force"):
        train(run_dir=tmp_path / "r", **{**TINY, "seed": 3})
    assert (tmp_path / "r" / "model.safetensors").read_bytes() == before
    train(run_dir=tmp_path / "r", force=True, **{**TINY, "seed": 3})
    assert (tmp_path / "r" / "model.safetensors").read_bytes() != before
    other = tmp_path / "not-a-run"
    other.mkdir()
    (other / "precious.txt").write_text("keep me")
    with pytest.raises(InputError, match="not an rnnlab run folder"):
        train(run_dir=other, force=True, **TINY)
    assert (other / "precious.txt").read_text() == "keep me"


def test_resume_continues_to_the_same_weights(tmp_path):
    full = train(run_dir=tmp_path / "full", cell="gru", **TINY)
    train(run_dir=tmp_path / "part", cell="gru", **{**TINY, "steps": 20})
    resumed = train(run_dir=tmp_path / "part", cell="gru", resume=True, **TINY)
    assert resumed.steps == 30
    _assert_same(_weights(latest_checkpoint(tmp_path / "full") / "model.safetensors"),
                 _weights(latest_checkpoint(tmp_path / "part") / "model.safetensors"))
    assert [h["val"] for h in resumed.history] == [h["val"] for h in full.history]


def test_resume_refuses_a_different_configuration(tmp_path):
    train(run_dir=tmp_path / "r", **TINY)
    with pytest.raises(InputError, match=r"lr=0\.1.*started with lr=0\.003"):
        train(run_dir=tmp_path / "r", resume=True, **{**TINY, "lr": 0.1})


def test_charlm_resume_restores_the_carried_state(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("abcabd abcabe " * 100)
    opts = dict(task="charlm", task_options={"path": str(text), "eval_columns": 2}, hidden=8,
                batch_size=4, bptt=6, eval_every=5, checkpoint_every=5, progress="none",
                cell="lstm", schedule="constant")  # charlm's cosine depends on the budget
    train(run_dir=tmp_path / "full", steps=15, **opts)
    train(run_dir=tmp_path / "part", steps=7, **opts)  # checkpoint at 5, then 7 (end)
    state = load_file(str(latest_checkpoint(tmp_path / "part") / "carry.safetensors"))
    assert state["carry.0"].shape == (1, 4, 8) and state["carry.1"].abs().sum() > 0
    train(run_dir=tmp_path / "part", steps=15, resume=True, **opts)
    _assert_same(_weights(latest_checkpoint(tmp_path / "full") / "model.safetensors"),
                 _weights(latest_checkpoint(tmp_path / "part") / "model.safetensors"))


FAULTS = Path(__file__).parent / "faults.py"  # runs the CLI with a planned SIGKILL
SMALL = ["--cell", "lstm", "--hidden", "8", "-o", "length=6", "-o", "val_size=32",
         "--batch-size", "8", "--eval-every", "5", "--progress", "none", "--no-report"]


def _cli(*args: str) -> None:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, (result.output, result.exception)


def _assert_same_run(run: Path, reference: Path) -> None:
    _assert_same(_weights(run / "model.safetensors"), _weights(reference / "model.safetensors"))
    _assert_same(_weights(latest_checkpoint(run) / "model.safetensors"),
                 _weights(latest_checkpoint(reference) / "model.safetensors"))
    history = [json.loads((r / "metrics.json").read_text())["history"] for r in (run, reference)]
    assert [(h["step"], h["val"]) for h in history[0]] == [(h["step"], h["val"])
                                                          for h in history[1]]


def test_a_killed_run_resumes_to_the_uninterrupted_weights(tmp_path):
    args = ["train", *SMALL, "--steps", "30", "--checkpoint-every", "10"]
    killed = subprocess.run([sys.executable, str(FAULTS), "--kill-at-step", "17", *args,
                             "--out", str(tmp_path / "k")], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert latest_checkpoint(tmp_path / "k").name == "step-00000010"
    _cli(*args, "--out", str(tmp_path / "k"), "--resume")
    _cli(*args, "--out", str(tmp_path / "u"))
    _assert_same_run(tmp_path / "k", tmp_path / "u")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM],
                         ids=["SIGINT", "SIGTERM"])
def test_a_signalled_run_saves_its_step_and_resumes_to_the_uninterrupted_weights(tmp_path,
                                                                                signum):
    # Slow enough steps (an evaluation each) that the signal lands mid-run; no periodic
    # checkpoint, so the one found afterwards is the interrupt's.
    args = ["train", *SMALL, "--steps", "400", "--eval-every", "1", "--checkpoint-every", "0",
            "-o", "val_size=256", "--progress", "lines"]
    run = subprocess.Popen([sys.executable, "-m", "rnnlab.cli", *args, "--out",
                            str(tmp_path / "s")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    assert run.stdout.readline().startswith("lstm: step 1/400 ")  # training has begun
    run.send_signal(signum)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 128 + signum, err
    head, command = err.strip().splitlines()  # two lines, no traceback
    step = int(re.search(r": step (\d+) is saved in ", head).group(1))
    assert 1 <= step < 400 and signal.Signals(signum).name in head
    assert latest_checkpoint(tmp_path / "s").name == f"step-{step:08d}"
    assert shlex.split(command) == ["rnnlab", *args, "--out", str(tmp_path / "s"), "--resume"]
    _cli(*shlex.split(command)[1:])
    _cli(*args, "--out", str(tmp_path / "u"))
    _assert_same_run(tmp_path / "s", tmp_path / "u")


def test_training_leaves_no_signal_handler_or_thread_count_behind(tmp_path):
    handlers = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)]
    torch.set_num_threads(2)
    train(run_dir=tmp_path / "r", **{**TINY, "steps": 2})  # adding: trains on one thread
    assert [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)] == handlers
    assert torch.get_num_threads() == 2


def test_a_half_written_checkpoint_is_ignored_and_cleaned(tmp_path):
    train(run_dir=tmp_path / "r", **{**TINY, "steps": 20})
    half = tmp_path / "r" / "checkpoints" / ".tmp-step-00000025"
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"partial")
    assert latest_checkpoint(tmp_path / "r").name == "step-00000020"
    train(run_dir=tmp_path / "r", resume=True, **TINY)
    names = sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir())
    assert names == ["latest", "step-00000020", "step-00000030"]


def test_a_corrupt_checkpoint_falls_back_to_the_previous_one(tmp_path):
    train(run_dir=tmp_path / "r", **TINY)
    newest = latest_checkpoint(tmp_path / "r")
    assert newest.name == "step-00000030"
    weights = newest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    with pytest.warns(UserWarning, match="fails its checksum"):
        assert latest_checkpoint(tmp_path / "r").name == "step-00000020"


def test_early_stopping_and_time_budget(tmp_path):
    r = train(run_dir=tmp_path / "e", **{**TINY, "lr": 1e-9, "steps": 500, "eval_every": 5,
                                         "patience": 2})
    assert r.stopped.startswith("early stop") and r.steps < 500
    assert r.steps == r.history[-1]["step"]
    t = train(run_dir=tmp_path / "t", **{**TINY, "steps": 10**6, "seconds": 0.5})
    assert "time budget" in t.stopped and 0.5 <= t.seconds < 10


def test_learning_rate_schedules():
    c = TrainConfig(lr=1.0, steps=110, warmup=10, schedule="cosine")
    assert c.lr_at(5) == pytest.approx(0.5)
    assert c.lr_at(10) == pytest.approx(1.0)
    assert c.lr_at(60) == pytest.approx(0.5)
    assert c.lr_at(110) == pytest.approx(0.0, abs=1e-12)
    lin = TrainConfig(lr=1.0, steps=100, schedule="linear")
    assert lin.lr_at(50) == pytest.approx(0.5)
    assert TrainConfig(lr=0.3).lr_at(77) == 0.3
    timed = TrainConfig(lr=1.0, steps=1000, seconds=10.0, schedule="linear")
    assert timed.lr_at(100, elapsed=5.0) == pytest.approx(0.5)  # time is the nearer budget
    assert timed.lr_at(900, elapsed=5.0) == pytest.approx(0.1)  # steps are


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("steps", 0, "steps must be an integer >= 1, got 0"),
     ("lr", -1.0, "lr must be > 0, got -1.0"),
     ("cell", "tcn", "unknown cell 'tcn'"),
     ("schedule", "step", "unknown schedule 'step'"),
     ("dropout", 1.0, "dropout must be < 1, got 1.0"),
     ("dropout", -0.5, "dropout must be >= 0, got -0.5"),
     ("batch_size", 2.5, "batch_size must be an integer")],
)
def test_bad_training_options_name_the_field(field, value, message):
    with pytest.raises(InputError, match=message):
        TrainConfig(**{field: value})


def test_config_round_trips_through_json():
    c = TrainConfig(task="forecast", task_options={"columns": ("a", "b")}, cell="gru")
    again = TrainConfig.from_dict(json.loads(json.dumps(c.to_dict())))
    assert again == c and again.digest() == c.digest()
    assert c.digest() == c.replace(steps=5).digest() != c.replace(lr=0.1).digest()
