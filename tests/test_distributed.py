"""Data-parallel training under torchrun (CPU, 2 processes, gloo) and exact resume after kills.

Every job here is a real ``python -m torch.distributed.run`` launch on 127.0.0.1 with
tiny models and few steps. ``RNNLAB_CHECK_REPLICAS=1`` makes every launched rank check
after every step that all replicas hold identical weights (a failing check fails the job).
"""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import ddp_worker
from helpers import assert_rel_close
from rnnlab.cli._options import resolve_resume
from rnnlab.compare import compare
from rnnlab.training import TrainConfig, train
from rnnlab.training.checkpoint import latest_checkpoint

STEPS = 20
CHARLM = ["--task", "charlm", "--cell", "lstm", "--hidden", "8", "-o", "embed_dim=8",
          "-o", "eval_columns=2", "--steps", str(STEPS), "--batch-size", "4", "--bptt", "6",
          "--lr", "0.01", "--schedule", "constant", "--eval-every", "4",
          "--checkpoint-every", "4", "--threads", "1", "--progress", "none", "--no-report"]
# 450 characters: 4 columns of 107, so the stream starts over (state reset) at step 18.
TEXT = ("the quick brown fox jumps over the lazy dog; " * 10)[:450]
FAULTS = Path(__file__).parent / "faults.py"
WORKER = Path(__file__).parent / "ddp_worker.py"
# Files that must match bit for bit after a resume (state.json holds wall times).
EXACT = ("model.safetensors", "optimizer.safetensors", "carry.safetensors")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args, *, cwd, max_restarts=0, module=True):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
           "--max-restarts", str(max_restarts), "--monitor-interval", "0.1"]
    cmd += ["-m", "rnnlab.cli", "train", *args] if module else args
    env = {**os.environ, "RNNLAB_CHECK_REPLICAS": "1"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _charlm(out: Path, text: Path, *extra: str) -> list[str]:
    return [*CHARLM, "--data", str(text), "--out", str(out), *extra]


def _killing(kill: list[str], args: list[str]) -> list[str]:
    """The script torchrun runs to SIGKILL a rank mid-step (tests/faults.py), then ``args``."""
    return [str(FAULTS), *kill, "train", *args]


def _assert_same_files(a: Path, b: Path, names=EXACT) -> None:
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def _assert_same_run(run: Path, reference: Path) -> None:
    """Final checkpoint and best weights bit for bit; the same validation history."""
    assert latest_checkpoint(run).name == f"step-{STEPS:08d}"
    _assert_same_files(latest_checkpoint(run), latest_checkpoint(reference))
    _assert_same_files(run, reference, ("model.safetensors",))
    history = [json.loads((r / "metrics.json").read_text())["history"] for r in (run, reference)]
    assert [(h["step"], h["val"]) for h in history[0]] == [(h["step"], h["val"])
                                                          for h in history[1]]


@pytest.fixture(scope="module")
def text(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "t.txt"
    path.write_text(TEXT)
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory, text) -> Path:
    """An uninterrupted 2-rank charlm run."""
    out = tmp_path_factory.mktemp("reference") / "run"
    done = _torchrun(_charlm(out, text), cwd=out.parent)
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def killed(tmp_path_factory, text) -> Path:
    """The same 2-rank run, killed (SIGKILL, every rank) during step 10."""
    out = tmp_path_factory.mktemp("killed") / "run"
    done = _torchrun(_killing(["--kill-at-step", "10"], _charlm(out, text)), cwd=out.parent,
                     module=False)
    assert done.returncode != 0
    assert latest_checkpoint(out).name == "step-00000008"  # and step 4 before it
    return out


def test_the_reference_run_checkpoints_every_rank_s_state(reference):
    # (That two launches give the same bits is what every resume test below compares.)
    manifest = json.loads((latest_checkpoint(reference) / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and set(manifest["files"]) >= set(EXACT)
    state = json.loads((latest_checkpoint(reference) / "state.json").read_text())
    assert state["world_size"] == 2 and state["global_batch"] == 4 and state["step"] == STEPS
    carry = load_file(str(latest_checkpoint(reference) / "carry.safetensors"))
    assert carry["carry.0"].shape == (1, 4, 8)  # every stream column, in global order


def _tasks(text_path: Path) -> dict:
    small = dict(cell="lstm", hidden=8, steps=12, lr=1e-2, clip=0.0, eval_every=4,
                 checkpoint_every=4)
    return {
        "adding": dict(task="adding", task_options={"length": 6, "val_size": 32},
                       batch_size=8, **small),
        "charlm": dict(task="charlm", task_options={"path": str(text_path), "embed_dim": 8,
                                                    "eval_columns": 2},
                       batch_size=4, bptt=6, **small),
    }


def test_two_ranks_with_half_batches_equal_one_process(tmp_path, text):
    configs = _tasks(text)  # a batch task and a stream task (carried state), one job
    two = _torchrun([str(WORKER), json.dumps(configs), str(tmp_path / "two")], cwd=tmp_path,
                    module=False)
    assert two.returncode == 0, two.stderr
    for task, config in configs.items():
        one, ranks = tmp_path / "one" / task, tmp_path / "two" / task
        ddp_worker.record(config, one)  # in this process: one rank
        # Gradients of step 1: the DDP average over 2 × B/2 is the gradient of 1 × B.
        g1 = load_file(str(one / "grad-0.safetensors"))
        g2 = [load_file(str(ranks / f"grad-{r}.safetensors")) for r in (0, 1)]
        for k in g1:
            assert torch.equal(g2[0][k], g2[1][k]), (task, k)
            assert_rel_close(g2[0][k], g1[k], 1e-6, f"{task}: step-1 gradient {k}")
        # The weights of the two ranks are bitwise equal after every step.
        h2 = [json.loads((ranks / f"hashes-{r}.json").read_text()) for r in (0, 1)]
        assert len(h2[0]) == config["steps"] and h2[0] == h2[1], task
        # After all the steps, 2 ranks and 1 process agree to float32 rounding.
        w1 = load_file(str(latest_checkpoint(one / "run") / "model.safetensors"))
        w2 = load_file(str(latest_checkpoint(ranks / "run") / "model.safetensors"))
        for k in w1:
            assert_rel_close(w2[k], w1[k], 1e-5, f"{task}: weights {k} after the last step")


def test_a_killed_rank_is_restarted_by_torchrun_and_ends_bitwise_equal(tmp_path, text, reference):
    kill = ["--kill-at-step", "7", "--kill-rank", "1"]
    done = _torchrun(_killing(kill, _charlm(tmp_path / "run", text)), cwd=tmp_path,
                     max_restarts=1, module=False)
    assert done.returncode == 0, done.stderr
    assert "exitcode: -9" in done.stderr  # rank 1 was killed, and the restart finished the job
    _assert_same_run(tmp_path / "run", reference)


def test_a_killed_job_and_a_kill_before_a_rename_relaunched_end_bitwise_equal(
        tmp_path, text, reference, killed):
    run = tmp_path / "run"
    shutil.copytree(killed, run)
    args = _charlm(run, text)
    # Relaunched (--resume auto is the default under torchrun) from step 8, and killed
    # again while saving step 12: between the complete temporary folder and its rename.
    again = _torchrun(_killing(["--kill-before-rename", "12"], args), cwd=tmp_path,
                      module=False)
    assert again.returncode != 0
    ckdir = run / "checkpoints"
    assert (ckdir / ".tmp-step-00000012" / "manifest.json").is_file()  # complete, not renamed
    assert (ckdir / "latest").read_text().strip() == "step-00000008"
    done = _torchrun(args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert not list(ckdir.glob(".tmp-*"))
    _assert_same_run(run, reference)


def test_a_truncated_checkpoint_is_rejected_by_its_checksum(tmp_path, text, reference, killed):
    run = tmp_path / "run"
    shutil.copytree(killed, run)
    weights = run / "checkpoints" / "step-00000008" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    done = _torchrun(_charlm(run, text), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "step-00000008: model.safetensors fails its checksum (truncated or corrupt)" in (
        done.stderr
    )
    _assert_same_run(run, reference)  # resumed from step 4


def test_a_two_rank_run_resumes_on_one_process(tmp_path, text, reference, killed):
    run = tmp_path / "run"
    shutil.copytree(killed, run)
    saved = TrainConfig.from_dict(json.loads((run / "config.json").read_text()))
    result = train(saved.replace(steps=STEPS), run, resume=True, progress="none")
    assert result.steps == STEPS
    state = json.loads((latest_checkpoint(run) / "state.json").read_text())
    assert state["world_size"] == 1
    for name in EXACT:
        mine = load_file(str(latest_checkpoint(run) / name))
        theirs = load_file(str(latest_checkpoint(reference) / name))
        for k in theirs:
            assert_rel_close(mine[k], theirs[k], 1e-4, f"{name} {k}")


def test_compare_under_torchrun_matches_one_process(tmp_path):
    args = ["--cells", "lstm,gru", "-o", "length=6", "-o", "val_size=32", "--steps", "10",
            "--batch-size", "8", "--hidden", "8", "--eval-every", "5", "--progress", "none"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
           "-m", "rnnlab.cli", "compare", *args, "--out", str(tmp_path / "two")]
    two = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("run folder:") == 1  # rank 0 alone prints and reports
    assert (tmp_path / "two" / "report.html").is_file()
    one = compare(config=None, run_dir=tmp_path / "one", report=False, progress="none",
                  cells=("lstm", "gru"), task_options={"length": 6, "val_size": 32},
                  steps=10, batch_size=8, hidden=8, eval_every=5)
    metrics = json.loads((tmp_path / "two" / "metrics.json").read_text())
    for mine, theirs in zip(metrics["cells"], one.metrics["cells"], strict=True):
        assert mine["cell"] == theirs["cell"]
        assert mine["best"] == pytest.approx(theirs["best"], rel=1e-4)


@pytest.mark.parametrize(
    ("given", "torchrun", "restarts", "force", "expected"),
    [(None, False, 0, False, (False, False)),  # a plain run: a fresh folder
     ("yes", False, 0, False, (True, False)),
     (None, True, 0, False, (True, False)),  # torchrun: auto, continue the named folder
     (None, True, 0, True, (False, True)),  # --force: start over on the first attempt ...
     (None, True, 1, True, (True, False)),  # ... but a restarted worker continues
     ("no", True, 1, False, (False, False))],
)
def test_resume_modes(monkeypatch, given, torchrun, restarts, force, expected):
    for var in ("TORCHELASTIC_RUN_ID", "TORCHELASTIC_RESTART_COUNT"):
        monkeypatch.delenv(var, raising=False)
    if torchrun:
        monkeypatch.setenv("TORCHELASTIC_RUN_ID", "test")
        monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", str(restarts))
    kw = {"resume": given, "force": force, "out": Path("runs/x"), "name": None}
    resolve_resume(kw)
    assert (kw["resume"], kw["force"]) == expected
