"""Tiny trained runs and one headless Chromium, shared by the explorer's tests."""

import os
import shutil

import pytest
from playwright.sync_api import sync_playwright

from rnnlab.compare import CompareConfig, compare
from rnnlab.training import TrainConfig, train

# A text with quotes, brackets and lines, so the text features are not constant.
TEXT = "".join(f'def f{k}(a, b):\n    return "x{k}" + (a * {k % 7})\n' for k in range(90))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def charlm_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("explore")
    (root / "text.txt").write_text(TEXT)
    train(run_dir=root / "char", task="charlm",
          task_options={"path": str(root / "text.txt"), "embed_dim": 8, "eval_columns": 4,
                        "probe_length": 20},
          cell="lstm", hidden=16, steps=6, bptt=20, batch_size=4, eval_every=6, lr=0.03,
          progress="none")
    return root / "char"


@pytest.fixture(scope="session")
def compare_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("explore") / "cmp"
    cfg = TrainConfig(task="adding", task_options={"length": 24, "val_size": 8}, steps=4,
                      batch_size=4, eval_every=4, hidden=12)
    compare(CompareConfig(train=cfg, cells=("rnn", "lstm", "gru")), root, progress="none",
            report=False)
    return root


@pytest.fixture(scope="session")
def new_cells_run(tmp_path_factory):
    """A charlm comparison of the cells beyond the classic three."""
    root = tmp_path_factory.mktemp("explore")
    (root / "text.txt").write_text(TEXT)
    cfg = TrainConfig(task="charlm", task_options={"path": str(root / "text.txt"),
                                                   "embed_dim": 8, "eval_columns": 4,
                                                   "probe_length": 20},
                      steps=4, bptt=20, batch_size=4, eval_every=4, lr=0.03, layers=2)
    compare(CompareConfig(train=cfg, cells=("lnlstm", "lngru", "mingru", "minlstm"), hidden=10),
            root / "cmp", progress="none", report=False)
    return root / "cmp"


@pytest.fixture(scope="session")
def zoneout_run(tmp_path_factory):
    """A charlm comparison of the LSTM and GRU under zoneout (run in its eval form),
    recurrent dropout and weight-drop (off in eval)."""
    root = tmp_path_factory.mktemp("explore")
    (root / "text.txt").write_text(TEXT)
    cfg = TrainConfig(task="charlm", task_options={"path": str(root / "text.txt"),
                                                   "embed_dim": 8, "eval_columns": 4,
                                                   "probe_length": 20},
                      steps=4, bptt=20, batch_size=4, eval_every=4, lr=0.03, zoneout=0.3,
                      recurrent_dropout=0.2, weight_drop=0.2)
    compare(CompareConfig(train=cfg, cells=("lstm", "gru"), hidden=10), root / "cmp",
            progress="none", report=False)
    return root / "cmp"


@pytest.fixture(scope="session")
def bidirectional_run(tmp_path_factory):
    """A two-layer bidirectional GRU: its reverse direction runs from the last step back."""
    root = tmp_path_factory.mktemp("explore")
    train(run_dir=root / "bi", task="adding", task_options={"length": 20, "val_size": 4},
          cell="gru", hidden=6, layers=2, bidirectional=True, steps=2, batch_size=4,
          eval_every=2, progress="none")
    return root / "bi"


@pytest.fixture(scope="session")
def browser():
    """One Chromium for the whole session; in CI a missing Chromium fails, elsewhere skips."""
    path = shutil.which("chromium") or (CHROMIUM if os.path.exists(CHROMIUM) else None)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (the browser tests need Debian's chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield b
        b.close()
