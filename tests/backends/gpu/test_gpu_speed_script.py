"""benchmarks/gpu_speed.py: fails fast without a GPU, and its whole flow (correctness
gate, timing, the cells torch.nn lacks, JSON and markdown) runs in --smoke mode through
Triton's interpreter."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "benchmarks" / "gpu_speed.py"


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("RNNLAB_", "TRITON_"))}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=ROOT,
        env={**clean, "OPENBLAS_NUM_THREADS": "1", **env},  # as in test_interpreter.py
        capture_output=True, text=True, timeout=600,
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_fails_fast_and_clearly_without_a_gpu(tmp_path):
    done = _run(["--quick", "--out", str(tmp_path)])
    assert done.returncode == 2
    assert "needs" in done.stderr and "Nothing was measured" in done.stderr
    assert not any(tmp_path.iterdir()), "no results may be written without a measurement"


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton not installed")
def test_smoke_run_writes_json_and_markdown(tmp_path):
    done = _run(
        ["--smoke", "--cells", "lstm", "--dtypes", "fp32", "--out", str(tmp_path)],
        TRITON_INTERPRET="1",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu.json").read_text())
    assert report["correctness"] and all(c["ok"] for c in report["correctness"])
    modes = {(r["H"], r["mode"]) for r in report["results"]}
    assert modes == {(16, "fwd"), (16, "fwd_bwd"), (40, "fwd"), (40, "fwd_bwd")}
    assert {c["path"] for c in report["correctness"]} == {
        "persistent", "cooperative", "stepwise", "tiled"}
    assert all({"cudnn", "rnnlab_tiled", "rnnlab_cooperative"} <= r["ms"].keys()
               for r in report["results"])
    assert {r["auto_path"] for r in report["results"]} == {"persistent", "cooperative"}
    table = (tmp_path / "gpu.md").read_text()
    assert "| lstm | fp32 | fwd_bwd | 2 | 40 | 3 |" in table
    assert "| cooperative (" in table  # H = 40: rnnlab's own choice, with its time
    new = {r["cell"]: r for r in report["new_cells"]}
    assert set(new) == {"mingru", "minlstm", "lnlstm", "lngru", "lstm+zoneout+rdrop",
                        "gru+zoneout+rdrop"}
    assert all(r["ok"] and r["grad_rel_err"] < 1e-3 for r in new.values()), new
    assert all({"rnnlab_gpu", "torch_ops"} <= r["fwd_bwd"].keys() for r in new.values())
    assert "plain_gpu" in new["gru+zoneout+rdrop"]["fwd_bwd"]
    assert "## The cells torch.nn lacks" in table and "| minlstm | fp32 | 2 | 16 | 5 |" in table
