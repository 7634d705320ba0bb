"""The command line: every command end to end at tiny sizes, and every bad input."""

import csv
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rnnlab.cli import main
from rnnlab.cli._resume import resume_command
from rnnlab.tasks import TASKS

TINY = ["--steps", "12", "--eval-every", "6", "--batch-size", "8", "--progress", "none"]


def run(*args, code=0):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == code, (result.output, result.exception)
    return result


def bad(*args, message):
    """A bad input: exit status 2, one line naming the problem, no traceback."""
    result = run(*args, code=2)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert message in lines[0], lines[0]
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture
def text(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text("hello world, this is a tiny text. " * 60)
    return path


@pytest.fixture
def series(tmp_path):
    path = tmp_path / "series.csv"
    t = np.arange(160)
    rows = ["time,temp,load"] + [f"d{i},{np.sin(i / 5):.5f},{np.cos(i / 7):.5f}" for i in t]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_compare_end_to_end(tmp_path):
    out = tmp_path / "c"
    r = run("compare", "-o", "length=6", "-o", "val_size=32", "--hidden", "6", "--out", out,
            *TINY)
    assert "task adding: mse" in r.output and f"report: {out / 'report.html'}" in r.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert [c["hidden"] for c in metrics["cells"]] == [6, 6, 6]
    assert metrics["config"]["train"]["steps"] == 12
    bad("compare", "-o", "length=6", "--out", out, *TINY, message="already exists")
    run("compare", "-o", "length=6", "-o", "val_size=32", "--hidden", "6", "--out", out,
        "--force", "--cells", "gru", *TINY)
    assert [c["cell"] for c in json.loads((out / "metrics.json").read_text())["cells"]] == ["gru"]


def test_default_run_folders_never_collide(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["compare", "--cells", "gru", "-o", "length=4", "-o", "val_size=8", "--hidden", "3",
            "--steps", "2", "--eval-every", "1", "--progress", "none"]
    assert "run folder: runs/compare-adding\n" in run(*args).output
    assert "run folder: runs/compare-adding-2\n" in run(*args).output
    assert "run folder: runs/compare-adding-2\n" in run(*args, "--resume").output


def test_train_generate_and_inspect_charlm(tmp_path, text):
    out = tmp_path / "lm"
    r = run("train", "--task", "charlm", "--data", text, "--cell", "gru", "--hidden", "16",
            "--bptt", "10", "--out", out, *TINY)
    assert "gru: best validation bpc" in r.output
    page = (out / "report.html").read_text()
    assert "generated text" in page
    g = run("generate", out, "--prime", "hello", "--length", "30", "--seed", "1")
    assert g.output.startswith("hello") and len(g.output.rstrip("\n")) == 35
    assert run("generate", out, "--prime", "hello", "--length", "30", "--seed", "1").output == (
        g.output
    )
    bad("generate", out, "--prime", "Zebra€", message="never saw: 'Zb€'")
    bad("generate", out, "--temperature", "0", message="temperature must be > 0")
    (out / "gates_gru.png").unlink()
    r = run("inspect", out)
    assert (out / "gates_gru.png").is_file() and "gradients.png" in r.output


def test_resume_from_the_command_line_needs_only_the_folder(tmp_path, text):
    out = tmp_path / "lm"
    first = ["train", "--task", "charlm", "--data", text, "--cell", "gru", "--hidden", "8",
             "--bptt", "5", "--out", out, "--no-report", "--batch-size", "4",
             "--eval-every", "3", "--progress", "none", "--schedule", "constant"]
    run(*first, "--steps", "9", "--out", tmp_path / "full")
    run(*first, "--steps", "4")
    r = run("train", "--resume", "--out", out, "--steps", "9", "--no-report", "--progress",
            "none")
    assert "gru: best validation bpc" in r.output and "9 steps" in r.output
    full = json.loads((tmp_path / "full" / "metrics.json").read_text())["history"]
    resumed = json.loads((out / "metrics.json").read_text())["history"]
    assert [h["step"] for h in resumed] == [3, 4, 6, 9]  # 4: the end of the first budget
    assert [h["val"] for h in resumed if h["step"] != 4] == [h["val"] for h in full]
    bad("train", "--resume", "--out", out, "--cell", "rnn", message="cannot resume")
    comp = ["compare", "-o", "length=5", "-o", "val_size=8", "--hidden", "4", "--batch-size",
            "4", "--eval-every", "2", "--progress", "none", "--out", tmp_path / "c"]
    run(*comp, "--steps", "2", "--cells", "gru")
    r = run("compare", "--resume", "--out", tmp_path / "c", "--steps", "4", "--progress", "none")
    cells = json.loads((tmp_path / "c" / "metrics.json").read_text())["cells"]
    assert [c["cell"] for c in cells] == ["gru"] and cells[0]["runs"][0]["steps"] == 4


def test_forecast_train_and_predict(tmp_path, series):
    out = tmp_path / "f"
    run("train", "--task", "forecast", "--data", series, "-o", "columns=temp,load",
        "-o", "window=10", "-o", "horizon=4", "--out", out, "--hidden", "8", *TINY)
    assert (out / "forecast.png").is_file()
    r = run("predict", out, "--out", tmp_path / "pred.csv")
    rows = list(csv.reader((tmp_path / "pred.csv").read_text().splitlines()))
    assert rows[0] == ["step", "temp", "load"] and len(rows) == 5
    assert [int(r[0]) for r in rows[1:]] == [1, 2, 3, 4]
    assert "wrote" in r.output
    bad("predict", out, "--out", tmp_path / "pred.csv", message="already exists")
    short = tmp_path / "short.csv"
    short.write_text("time,temp,load\n" + "d,1,2\n" * 5)
    bad("predict", out, "--data", short, "--out", tmp_path / "p2.csv",
        message="need at least 10 rows")


def test_forecast_default_and_classify_default(tmp_path):
    run("compare", "--task", "forecast", "--cells", "lstm", "--out", tmp_path / "f",
        "-o", "series_length=300", *TINY)
    run("train", "--task", "classify", "--out", tmp_path / "k", "-o", "samples=40", *TINY)
    m = json.loads((tmp_path / "k" / "metrics.json").read_text())
    assert m["metric"] == "accuracy" and m["higher_is_better"] is True


def test_stacked_bidirectional_compare(tmp_path):
    out = tmp_path / "k"
    run("compare", "--task", "classify", "-o", "samples=30", "-o", "length=7", "--layers", "2",
        "--bidirectional", "--dropout", "0.2", "--seeds", "2", "--out", out, *TINY)
    metrics = json.loads((out / "metrics.json").read_text())
    assert [len(c["runs"]) for c in metrics["cells"]] == [2, 2, 2]
    model = json.loads((out / "lstm-seed1" / "model.json").read_text())
    assert model["num_layers"] == 2 and model["bidirectional"] and model["dropout"] == 0.2
    assert all(len(g["init"]) == 7 for g in metrics["gradients"].values())


def test_classify_from_csv(tmp_path):
    path = tmp_path / "seq.csv"
    rng = np.random.default_rng(1)
    lines = ["label,a,b,c"] + [f"{'hi' if i % 2 else 'lo'},{rng.normal():.3f},"
                               f"{rng.normal():.3f},{i % 2}" for i in range(30)]
    path.write_text("\n".join(lines) + "\n")
    run("train", "--task", "classify", "--data", path, "--cell", "rnn", "--out",
        tmp_path / "k", *TINY)


def test_bad_files(tmp_path, text):
    missing = tmp_path / "missing.txt"
    bad("train", "--task", "charlm", "--data", missing, "--out", tmp_path / "a",
        message="does not exist")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    bad("train", "--task", "charlm", "--data", empty, "--out", tmp_path / "b", message="is empty")
    binary = tmp_path / "blob.bin"
    binary.write_bytes(bytes(range(256)) * 10)
    bad("train", "--task", "charlm", "--data", binary, "--out", tmp_path / "c",
        message="looks binary")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9 ".encode("latin-1") * 100)
    bad("train", "--task", "charlm", "--data", latin, "--out", tmp_path / "d",
        message="is not UTF-8 text")
    unreadable = tmp_path / "locked.txt"
    unreadable.write_text("text")
    unreadable.chmod(0)
    if not __import__("os").access(unreadable, __import__("os").R_OK):  # not as root
        bad("train", "--task", "charlm", "--data", unreadable, message="not readable")
    bad("train", "--task", "charlm", "--data", tmp_path, message="not a regular file")
    short = tmp_path / "short.txt"
    short.write_text("just a few words")
    bad("train", "--task", "charlm", "--data", short, message="text has 16 characters")
    bad("train", "--task", "charlm", "--data", text, "--batch-size", "500", "--out",
        tmp_path / "e", message="batch_size 500 × (bptt 100 + 1) needs at least 50500")
    assert not (tmp_path / "e").exists()  # checked before any folder is made


def test_bad_csvs(tmp_path, series):
    f = ["train", "--task", "forecast", "--out", tmp_path / "x", *TINY]
    bad(*f, "--data", series, "-o", "columns=temp,wind",
        message="column 'wind' is not in")
    bad(*f, "--data", series, "-o", "columns=time", message="non-numeric value 'd0' on line 2")
    nan = tmp_path / "nan.csv"
    nan.write_text("a\n1\n2\nnan\n4\n")
    bad(*f, "--data", nan, message="'nan' on line 4; expected finite numbers")
    hole = tmp_path / "hole.csv"
    hole.write_text("a,b\n1,2\n,3\n")
    bad(*f, "--data", hole, "-o", "columns=a,b", message="an empty value")
    few = tmp_path / "few.csv"
    few.write_text("a\n" + "1\n" * 30)
    bad(*f, "--data", few, message="30 rows are too few for window 48 + horizon 12")
    header_only = tmp_path / "header.csv"
    header_only.write_text("a,b\n")
    bad(*f, "--data", header_only, message="has a header but no data rows")
    one = tmp_path / "one.csv"
    one.write_text("label,x\n" + "yes,1\n" * 10)
    bad("train", "--task", "classify", "--data", one, "--out", tmp_path / "y", *TINY,
        message="single class ('yes')")
    bad("train", "--task", "classify", "--data", one, "-o", "label=class", "--out",
        tmp_path / "z", *TINY, message="column 'class' is not in")
    assert not (tmp_path / "x").exists()


def test_bad_npz(tmp_path):
    f = ["train", "--task", "classify", "--out", tmp_path / "x", *TINY]
    no_y = tmp_path / "no_y.npz"
    np.savez(no_y, x=np.zeros((5, 3)))
    bad(*f, "--data", no_y, message="has no array 'y'; it has x")
    ragged = tmp_path / "ragged.npz"
    np.savez(ragged, x=np.zeros((5, 3)), y=np.arange(4))
    bad(*f, "--data", ragged, message="expected x (N, T[, F]) and y (N,)")
    objects = tmp_path / "objects.npz"
    np.savez(objects, x=np.array([[1], ["a"]], dtype=object), y=np.arange(2))
    bad(*f, "--data", objects, message="cannot read NPZ file")
    fake = tmp_path / "fake.npz"
    fake.write_text("not a zip archive")
    bad(*f, "--data", fake, message="cannot read NPZ file")
    nan = tmp_path / "nan.npz"
    np.savez(nan, x=np.array([[1.0, np.nan]] * 6), y=np.arange(6) % 2)
    bad(*f, "--data", nan, message="sequence 0 of x holds NaN or infinity")
    lengths = tmp_path / "lengths.npz"
    np.savez(lengths, x=np.zeros((6, 2)), y=np.arange(6) % 2, lengths=np.full(6, 3))
    bad(*f, "--data", lengths, message="lengths must be (N,) integers in 1..2")


def test_bad_options(tmp_path):
    bad("compare", "--cells", "rnn,tcn", message="unknown cell 'tcn'")
    bad("compare", "-o", "lenght=5", message="has no option 'lenght'")
    bad("compare", "-o", "length=five", message="expects an integer, got 'five'")
    bad("compare", "--steps", "0", "--out", tmp_path / "s", message="steps must be an integer >= 1")
    bad("compare", "--data", tmp_path / "x.csv", message="takes no data file")
    bad("train", "--task", "copy", "--bidirectional", "--out", tmp_path / "b", *TINY,
        message="bidirectional")
    bad("inspect", tmp_path / "nothing", message="does not exist")
    (tmp_path / "plain").mkdir()
    bad("inspect", tmp_path / "plain", message="not an rnnlab run folder")
    bad("generate", tmp_path / "plain", message="not an rnnlab run folder")


def test_every_option_has_help():
    for cmd in ("compare", "train", "tasks", "generate", "predict", "inspect"):
        command = main.commands[cmd]
        for param in command.params:
            if param.param_type_name == "option":
                assert param.help, (cmd, param.name)


@pytest.mark.parametrize(("var", "value", "message"), [
    ("RNNLAB_CPU_ISA", "sse9", "RNNLAB_CPU_ISA='sse9' is not a kernel variant; expected one of "
                               "avx512, avx2, portable, auto"),
    ("RNNLAB_CPU_TILES", "off", "RNNLAB_CPU_TILES='off' is not a switch; expected 0 (the plain "
                                "compiled loop) or 1 (the register tiles, the default)"),
], ids=["isa", "tiles"])
def test_a_bad_cpu_switch_is_one_line_from_the_command_run_as_a_module(tmp_path, var, value,
                                                                       message):
    # A new process: the cpu backend reads its switches once, as it loads.
    env = {**os.environ, var: value}
    r = subprocess.run([sys.executable, "-m", "rnnlab", "compare", "--steps", "1", "--out",
                        str(tmp_path / "c")], capture_output=True, text=True, env=env)
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == f"Error: {message}\n"
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize(("value", "message"), [
    ("foo", "unknown rnnlab backend 'foo' (from the environment variable RNNLAB_BACKEND); "
            "expected one of: cpu, gpu, portable"),
    ("gpu", "RNNLAB_BACKEND=gpu: that backend cannot run torch.float32 tensors on cpu here"),
])
def test_a_bad_backend_is_one_line_before_anything_is_written(tmp_path, monkeypatch, value,
                                                              message):
    monkeypatch.setenv("RNNLAB_BACKEND", value)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    bad("compare", "--steps", "1", "--out", tmp_path / "c", message=message)
    assert not (tmp_path / "c").exists()


def test_an_interrupt_before_training_is_one_line_and_exit_130(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("rnnlab.cli.train.build_train_config", interrupted)
    result = run("train", "--out", tmp_path / "r", code=130)
    assert result.output == "Interrupted.\n"
    assert not (tmp_path / "r").exists()


def test_the_resume_hint_keeps_the_command_and_drops_force_and_the_folder():
    argv = ["train", "--task", "copy", "--force", "--name", "x", "--steps", "9", "--resume",
            "no", "-o", "delay=5"]
    assert resume_command("rnnlab", argv, Path("runs/x")) == (
        "rnnlab train --task copy --steps 9 -o delay=5 --out runs/x --resume")
    argv = ["compare", "--out=a b", "--resume=auto", "--resume", "--seeds", "2"]
    assert resume_command("rnnlab", argv, Path("a b")) == (
        "rnnlab compare --seeds 2 --out 'a b' --resume")


def test_dropout_errors_name_the_bound_and_one_layer_warns_in_one_line(tmp_path):
    bad("train", "--dropout", "1", "--layers", "2", "--out", tmp_path / "d", *TINY,
        message="dropout must be < 1, got 1.0")
    r = run("train", "--dropout", "0.5", "-o", "length=4", "-o", "val_size=8", "--hidden", "3",
            "--steps", "1", "--no-report", "--progress", "none", "--out", tmp_path / "w")
    warning = [line for line in r.output.splitlines() if line.startswith("Warning")]
    assert warning == ["Warning: dropout is applied between stacked layers, so it has no effect "
                       "with layers=1 (got dropout=0.5)"]


def test_tasks_lists_every_task_with_its_options_and_defaults():
    out = run("tasks").output
    for name, cls in TASKS.items():
        assert f"\n{name} — metric {cls.metric} " in f"\n{out}"
        for field in dataclasses.fields(cls.Options):
            default = "none" if field.default is None else field.default
            if not isinstance(default, tuple):
                assert f"    {field.name}={default} " in out, (name, field.name)
    forecast = run("tasks", "forecast").output
    assert "baseline: naive (last value)" in forecast and "standard deviation" in forecast
    assert "\ncopy —" not in forecast
    bad("tasks", "sorting", message="unknown task 'sorting'")
    assert "rnnlab tasks" in run("train", "--help").output
    assert "rnnlab tasks" in run("compare", "--help").output
