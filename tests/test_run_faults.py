"""Damaged run folders: every file × every kind of damage × every command that reads it.

One small training run (forecast) and one small comparison (charlm, gru and rnn) are
trained once; each case copies one, damages one file, runs one command in-process and
checks: exit status 2 with exactly one ``Error:`` line naming the file (or, where an
intact copy exists, success with one ``Warning:`` line saying what was used instead),
never a traceback, and no file changed or lost but those the command writes.
"""

import hashlib
import json
import logging
import shutil
import warnings
from fnmatch import fnmatch
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from rnnlab import compare
from rnnlab.cli import main

STEPS = 4  # checkpoints at steps 2 and 4


def invoke(*args) -> tuple[int, list[str]]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    assert "UserWarning" not in result.output and "RunWarning" not in result.output, (
        result.output)
    if result.exit_code not in (0, 2):
        raise AssertionError(result.output) from result.exception
    return result.exit_code, result.output.strip().splitlines()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("built")
    code, lines = invoke("train", "--task", "forecast", "-o", "series_length=300",
                         "-o", "window=8", "-o", "horizon=3", "--cell", "gru", "--hidden", "8",
                         "--batch-size", "8", "--steps", str(STEPS), "--eval-every", "2",
                         "--checkpoint-every", "2", "--progress", "none", "--out", root / "run",
                         "--no-report")
    assert code == 0, lines
    text = root / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog; " * 40)
    compare(task="charlm", task_options={"path": str(text), "eval_columns": 2},
            cells=("gru", "rnn"), bptt=5, hidden=8, batch_size=8, steps=STEPS, eval_every=2,
            checkpoint_every=2, run_dir=root / "cmp", progress="none", report=False)
    return root


# --------------------------------------------------------------------------- damage


def _set(obj: dict, dotted: str, value) -> None:
    *path, last = dotted.split(".")
    for key in path:
        obj = obj[key]
    obj[last] = value


def damage(path: Path, kind: str, edit: tuple | None = None) -> None:
    """missing | empty | truncated | bitflip | json (set a field: ``edit`` = (key, value))."""
    if kind == "missing":
        path.unlink()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "bitflip":  # JSON: the opening brace; weights: the last byte of the data
        data = bytearray(path.read_bytes())
        data[0 if path.suffix == ".json" else -1] ^= 0x01
        path.write_bytes(bytes(data))
    else:
        obj = json.loads(path.read_text())
        _set(obj, *edit)
        path.write_text(json.dumps(obj))


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# What each command may write in the folder it reads (patterns relative to the folder).
WRITES = {
    "predict": (), "export": (), "generate": (),
    "inspect": ("*.png", "report.html", "metrics.json"),
    "resume": ("metrics.json", "model.safetensors", "init.safetensors", "checkpoints/*"),
    "resume-longer": ("metrics.json", "model.safetensors", "init.safetensors", "checkpoints/*"),
    "compare-resume": ("*",),
}


def command(name: str, folder: Path, out: Path) -> list:
    return {
        "predict": ["predict", folder, "--out", out / "forecast.csv"],
        "inspect": ["inspect", folder],
        "export": ["export", folder, "--onnx", out / "model.onnx"],
        "resume": ["train", "--resume", "--out", folder, "--no-report", "--progress", "none"],
        # two steps more: a check after training would show as changed checkpoints
        "resume-longer": ["train", "--resume", "--out", folder, "--steps", str(STEPS + 2),
                          "--no-report", "--progress", "none"],
        "generate": ["generate", folder, "--cell", "gru", "--length", "5"],
        "compare-resume": ["compare", "--resume", "--out", folder, "--steps", str(STEPS + 2),
                           "--progress", "none"],
    }[name]


def check(built, tmp_path, run, file, kind, edit, name, expect, *, extra=()):
    """Damage ``run``/``file`` in a copy, run ``name``; ``expect`` is ("error" | "warning",
    text in that line) or ("ok", None)."""
    folder = tmp_path / run
    shutil.copytree(built / run, folder)
    for path in [file, *extra]:
        damage(folder / path, kind, edit)
    before = snapshot(folder)
    code, lines = invoke(*command(name, folder, tmp_path))
    outcome, text = expect
    if outcome == "error":
        assert code == 2 and len(lines) == 1 and lines[0].startswith("Error: "), lines
        assert text in lines[0], lines
    else:
        assert code == 0, lines
        notes = [line for line in lines if line.startswith("Warning: ")]
        assert len(notes) == (outcome == "warning"), lines
        assert outcome == "ok" or text in notes[0], lines
    after = snapshot(folder)
    for key, digest in before.items():
        writable = code == 0 and any(fnmatch(key, p) for p in WRITES[name])
        if not writable:
            assert after.get(key) == digest, f"{name} changed or lost {key}"
    return folder, lines


# --------------------------------------------------------------------------- the training run

JSON_EDITS = {  # file -> (wrong JSON type, out-of-range value, unknown name)
    "run.json": (("kind", 5), ("kind", ""), ("kind", "nope")),
    "config.json": (("lr", "fast"), ("steps", 0), ("schedule", "nope")),
    "model.json": (("hidden_size", "big"), ("hidden_size", -5), ("cell", "tcn")),
    "task.json": (("artefacts.mean", ["x"]), ("options.window", 0), ("name", "nope")),
}
READERS = ("predict", "inspect", "export", "resume-longer")
JSON_CASES = [
    (file, kind, edit, READERS[(i + j) % len(READERS)])
    for i, (file, edits) in enumerate(JSON_EDITS.items())
    for j, (kind, edit) in enumerate(
        [("missing", None), ("empty", None), ("truncated", None), ("bitflip", None)]
        + [("json", e) for e in edits])
]
NEWCOMER = [("model.json", "json", ("hidden_size", "big"), name) for name in READERS] + [
    ("task.json", "json", ("artefacts.mean", ["x"]), "predict"),
]


@pytest.mark.parametrize(("file", "kind", "edit", "name"), JSON_CASES + NEWCOMER)
def test_a_damaged_configuration_file_is_one_clean_error(built, tmp_path, file, kind, edit,
                                                         name):
    check(built, tmp_path, "run", file, kind, edit, name, ("error", file))


@pytest.mark.parametrize("kind", ["missing", "empty", "truncated", "bitflip"])
@pytest.mark.parametrize("name", ["predict", "resume"])
def test_damaged_best_weights_give_way_to_a_checkpoint(built, tmp_path, kind, name):
    """predict uses the newest checkpoint's weights; resume restores the best weights from
    the checkpoint of their step (here the last evaluation's) and trains on."""
    best = json.loads((built / "run" / "metrics.json").read_text())["best_step"]
    said = "using the weights of checkpoint" if name == "predict" else (
        f"restored the best weights from checkpoint step-{best:08d}")
    folder, _ = check(built, tmp_path, "run", "model.safetensors", kind, None, name,
                      ("warning", said))
    if name == "resume":
        restored = load_file(str(folder / "model.safetensors"))
        original = load_file(str(built / "run" / "model.safetensors"))
        assert all(torch.equal(restored[k], original[k]) for k in original)


@pytest.mark.parametrize("name", ["inspect", "export"])
def test_truncated_best_weights_for_inspect_and_export(built, tmp_path, name):
    check(built, tmp_path, "run", "model.safetensors", "truncated", None, name,
          ("warning", "using the weights of checkpoint step-00000004"))


def test_best_weights_with_no_intact_copy_are_an_error(built, tmp_path):
    ck = ["checkpoints/step-00000002/model.safetensors",
          "checkpoints/step-00000004/model.safetensors"]
    check(built, tmp_path, "run", "model.safetensors", "bitflip", None, "predict",
          ("error", "no intact checkpoint"), extra=ck)


def test_resume_refuses_best_weights_it_cannot_restore(built, tmp_path):
    """Best weights from a step with no checkpoint (evaluations outnumber checkpoints)."""
    folder = tmp_path / "prepared"
    shutil.copytree(built / "run", folder)
    newest = folder / "checkpoints" / "step-00000004"
    state = json.loads((newest / "state.json").read_text())
    (newest / "state.json").write_text(json.dumps({**state, "best_step": 3}))
    manifest = json.loads((newest / "manifest.json").read_text())
    manifest["files"]["state.json"] = hashlib.sha256((newest / "state.json").read_bytes()
                                                     ).hexdigest()
    (newest / "manifest.json").write_text(json.dumps(manifest))
    check(tmp_path, tmp_path / "case", "prepared", "model.safetensors", "truncated", None,
          "resume-longer", ("error", "it held the best weights (step 3)"))


@pytest.mark.parametrize(("kind", "name"), [("truncated", "inspect"), ("missing", "resume"),
                                            ("bitflip", "resume"), ("empty", "resume")])
def test_damaged_initial_weights_are_rebuilt_from_the_seed(built, tmp_path, kind, name):
    said = "rebuilt from the seed" if name == "inspect" else "rewrote it from the seed"
    folder, _ = check(built, tmp_path, "run", "init.safetensors", kind, None, name,
                      ("warning", said))
    if name == "resume":
        rebuilt = load_file(str(folder / "init.safetensors"))
        original = load_file(str(built / "run" / "init.safetensors"))
        assert all(torch.equal(rebuilt[k], original[k]) for k in original)


@pytest.mark.parametrize(("kind", "edit"), [("missing", None), ("empty", None),
                                            ("bitflip", None), ("json", ("history", "none")),
                                            ("json", ("best", "high"))])
def test_damaged_metrics_stop_inspect(built, tmp_path, kind, edit):
    check(built, tmp_path, "run", "metrics.json", kind, edit, "inspect",
          ("error", "metrics.json"))


CHECKPOINT_FILES = ["model.safetensors", "optimizer.safetensors", "carry.safetensors",
                    "state.json", "manifest.json"]


@pytest.mark.parametrize(("file", "kind", "edit"), [
    *[(f, k, None) for f, k in zip(CHECKPOINT_FILES, ["truncated", "bitflip", "missing",
                                                      "empty", "truncated"], strict=True)],
    ("state.json", "json", ("step", "four")),
    ("manifest.json", "json", ("files", 5)),
    ("manifest.json", "json", ("files", {"model.safetensors": "0" * 64})),
])
def test_a_damaged_checkpoint_is_skipped_in_one_line(built, tmp_path, file, kind, edit):
    """resume continues from the older checkpoint and says so in one Warning line."""
    folder, _ = check(built, tmp_path, "run", f"checkpoints/step-00000004/{file}", kind, edit,
                      "resume", ("warning", "skipping checkpoint"))
    state = json.loads((folder / "checkpoints" / "step-00000004" / "state.json").read_text())
    assert state["step"] == STEPS  # trained again from step 2


def test_no_intact_checkpoint_is_an_error_for_resume(built, tmp_path):
    check(built, tmp_path, "run", "checkpoints/step-00000004/manifest.json", "missing", None,
          "resume-longer", ("error", "no intact checkpoint"),
          extra=["checkpoints/step-00000002/manifest.json"])


@pytest.mark.parametrize("kind", ["missing", "empty", "truncated"])
def test_the_latest_pointer_is_not_needed(built, tmp_path, kind):
    """Resume finds the newest intact checkpoint itself; ``latest`` is for people."""
    check(built, tmp_path, "run", "checkpoints/latest", kind, None, "resume", ("ok", None))


# --------------------------------------------------------------------------- the comparison


@pytest.mark.parametrize(("file", "kind", "edit", "name"), [
    ("run.json", "json", ("kind", "nope"), "generate"),
    ("run.json", "missing", None, "compare-resume"),
    ("config.json", "missing", None, "generate"),
    ("config.json", "empty", None, "compare-resume"),
    ("config.json", "json", ("seeds", "two"), "generate"),
    ("config.json", "json", ("cells", ["tcn"]), "compare-resume"),
    ("config.json", "json", ("train.lr", -1), "compare-resume"),
    ("metrics.json", "json", ("cells", 3), "inspect"),
    ("gru-seed0/task.json", "json", ("artefacts.vocab", 7), "generate"),
    ("gru-seed0/model.json", "bitflip", None, "generate"),
    ("rnn-seed0/model.json", "json", ("hidden_size", "big"), "compare-resume"),
    ("rnn-seed0/checkpoints/step-00000004/manifest.json", "missing", None, "compare-resume"),
])
def test_a_damaged_comparison_is_one_clean_error(built, tmp_path, file, kind, edit, name):
    """compare --resume checks every cell before any trains: nothing is written."""
    if file.endswith("step-00000004/manifest.json"):  # both checkpoints: nothing to resume
        check(built, tmp_path, "cmp", file, kind, edit, name, ("error", "no intact checkpoint"),
              extra=["rnn-seed0/checkpoints/step-00000002/manifest.json"])
    else:
        check(built, tmp_path, "cmp", file, kind, edit, name, ("error", Path(file).name))


def test_damaged_weights_of_a_compared_cell_give_way_to_its_checkpoint(built, tmp_path):
    check(built, tmp_path, "cmp", "gru-seed0/model.safetensors", "truncated", None, "generate",
          ("warning", "using the weights of checkpoint step-00000004"))


def test_a_comparison_needs_a_cell_and_lists_the_valid_ones(built):
    cmp = built / "cmp"
    for args in (["generate", cmp], ["export", cmp, "--onnx", built / "x.onnx"]):
        code, lines = invoke(*args)
        assert code == 2 and lines == [
            f"Error: {str(cmp)!r} is a comparison of gru, rnn; choose one with --cell gru or rnn"
        ]
    code, lines = invoke("generate", cmp, "--cell", "foo")
    assert code == 2 and lines == [f"Error: {str(cmp)!r} has no 'foo' model; choose --cell gru "
                                   "or rnn"]
    code, lines = invoke("predict", cmp, "--cell", "gru")
    assert code == 2 and "holds a charlm model, not a forecast one" in lines[0]
    code, lines = invoke("generate", cmp, "--cell", "rnn", "--length", "3", "--prime", "the")
    assert code == 0 and lines[0].startswith("the")


# --------------------------------------------------------------------------- resume modes


@pytest.mark.parametrize("resume", [["--resume"], ["--resume", "yes"]])
@pytest.mark.parametrize("folder", ["missing", "empty"])
def test_resume_yes_needs_a_run(tmp_path, resume, folder):
    out = tmp_path / "r"
    if folder == "empty":
        out.mkdir()
    for cmd in (["train"], ["compare", "--cells", "gru"]):
        code, lines = invoke(*cmd, *resume, "--out", out, "--steps", "2")
        assert code == 2 and len(lines) == 1 and "nothing to continue" in lines[0], lines
        assert str(out) in lines[0]
        assert (out.exists(), list(out.iterdir()) if out.exists() else []) == (
            folder == "empty", [])


def test_resume_auto_starts_a_run_where_there_is_none(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    code, lines = invoke("train", "--resume", "auto", "--out", out, "-o", "length=4",
                         "-o", "val_size=8", "--hidden", "4", "--steps", "2", "--batch-size",
                         "4", "--progress", "none", "--no-report")
    assert code == 0 and (out / "run.json").is_file(), lines


# --------------------------------------------------------------------------- quiet exports


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


def test_export_prints_one_line_and_no_warnings_of_other_packages(built, tmp_path):
    """torch's exporter logs a line per torchvision op (torchvision is not installed here)
    and raises a FutureWarning of its own; neither reaches the user."""
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    records = _Records()
    logger.addHandler(records)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            code, lines = invoke("export", built / "run", "--onnx", tmp_path / "m.onnx")
    finally:
        logger.removeHandler(records)
    assert code == 0 and lines == [f"wrote {tmp_path / 'm.onnx'} (checked against the PyTorch "
                                   "model in onnxruntime)"]
    assert not [r.getMessage() for r in records.records if r.levelno >= logging.WARNING]
    assert not [str(w.message) for w in caught]


# --------------------------------------------------------------------------- a sweep


class Killed(BaseException):
    """What SIGKILL leaves: nothing of the step in progress is written, nothing cleans up."""


@pytest.fixture(scope="module")
def killed_sweep(tmp_path_factory):
    """A sweep over length=4,6 killed during step 3 of its second value (checkpoint at 2)."""
    from rnnlab.compare import CompareConfig
    from rnnlab.sweep import SweepConfig, sweep
    from rnnlab.training import TrainConfig
    from rnnlab.training.distributed import World

    train = TrainConfig(task="adding", task_options={"length": 4, "val_size": 8}, steps=STEPS,
                        batch_size=4, eval_every=2, checkpoint_every=2, hidden=6)
    config = SweepConfig("length", (4, 6), CompareConfig(train=train, cells=("gru",)))
    check, calls = World.check_replicas, []

    def check_then_die(self, model, step):
        check(self, model, step)
        calls.append(step)
        if len(calls) == STEPS + 3:
            raise Killed

    folder = tmp_path_factory.mktemp("sweep") / "s"
    with pytest.MonkeyPatch.context() as mp, pytest.raises(Killed):
        mp.setattr(World, "check_replicas", check_then_die)
        sweep(config, folder, progress="none")
    return folder


def _resume_sweep(folder: Path) -> tuple[int, list[str]]:
    """``compare --resume`` on a sweep's folder: it continues the sweep the folder holds."""
    return invoke("compare", "--resume", "--out", folder, "--progress", "none")


@pytest.fixture(scope="module")
def finished_sweep(killed_sweep, tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep") / "s"
    shutil.copytree(killed_sweep, folder)
    code, lines = _resume_sweep(folder)
    assert code == 0, lines
    return folder


def test_resume_continues_a_killed_sweep(killed_sweep, finished_sweep):
    assert not (killed_sweep / "metrics.json").exists()  # killed before the sweep's metrics
    kept = "length=4/gru-seed0/model.safetensors"
    assert (finished_sweep / kept).read_bytes() == (killed_sweep / kept).read_bytes()
    metrics = json.loads((finished_sweep / "metrics.json").read_text())
    assert [p["folder"] for p in metrics["points"]] == ["length=4", "length=6"]
    second = json.loads((finished_sweep / "length=6/gru-seed0/metrics.json").read_text())
    assert [h["step"] for h in second["history"]] == [2, 4]
    assert (finished_sweep / "report.html").is_file()
    # the second value continued from its checkpoint of step 2 (kept, not written again)
    step2 = "length=6/gru-seed0/checkpoints/step-00000002/manifest.json"
    assert (finished_sweep / step2).stat().st_mtime_ns == (killed_sweep / step2).stat(
        ).st_mtime_ns


@pytest.mark.parametrize(("damaged", "message"), [
    ("run.json", "/run.json' is damaged: not valid JSON"),
    ("length=4/config.json", "/length=4/config.json' is damaged: not valid JSON"),
    ("length=6", "length=6' exists and is not a folder"),  # a file where a value's folder was
    ("metrics.json", None),  # the sweep's own: redrawn from its values' folders
    ("length=4/metrics.json", None),  # a value's: rebuilt from its cells
])
def test_a_damaged_sweep_is_one_line_or_resumes(finished_sweep, tmp_path, damaged, message):
    folder = tmp_path / "s"
    shutil.copytree(finished_sweep, folder)
    path = folder / damaged
    if path.is_dir():
        shutil.rmtree(path)
        path.write_text("not a folder")
    else:
        damage(path, "truncated")
    before = snapshot(folder)
    code, lines = _resume_sweep(folder)
    if message is None:
        assert code == 0, lines
        assert json.loads(path.read_text())["kind"] in ("sweep", "compare")
        return
    assert code == 2 and len(lines) == 1 and lines[0].startswith("Error: "), lines
    assert message in lines[0], lines
    assert snapshot(folder) == before  # nothing written, nothing lost


def test_a_sweep_missing_a_values_folder_trains_it_again(finished_sweep, tmp_path):
    folder = tmp_path / "s"
    shutil.copytree(finished_sweep, folder)
    shutil.rmtree(folder / "length=4")
    code, lines = _resume_sweep(folder)
    assert code == 0, lines
    assert (folder / "length=4/gru-seed0/model.safetensors").read_bytes() == (
        finished_sweep / "length=4/gru-seed0/model.safetensors").read_bytes()
