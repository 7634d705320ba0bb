"""Start-up: ``import rnnlab`` imports nothing heavy, and Ctrl-C while the command imports
torch and the CLI is one line and exit 130 (the entry point, :mod:`rnnlab.__main__`)."""

import os
import subprocess
import sys
from pathlib import Path

import rnnlab
import rnnlab.__main__ as entry

# Runs ``python -m rnnlab compare`` and sends this process SIGINT as the import of torch
# begins: a real Ctrl-C at a fixed point of the start-up. It first gives SIGINT the state a
# process started from a terminal has (Python's handler, not blocked): a child inherits an
# ignored or blocked SIGINT from whatever ran it (once seen under pytest-xdist in CI, where
# the Ctrl-C then went unheard and the command trained on).
CTRL_C_AT_TORCH = """
import importlib.abc, os, runpy, signal, sys

signal.signal(signal.SIGINT, signal.default_int_handler)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

class CtrlC(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, CtrlC())
sys.argv = ["rnnlab", "compare"]
runpy.run_module("rnnlab", run_name="__main__", alter_sys=True)
"""


def test_ctrl_c_while_the_command_imports_is_one_line_and_exit_130(monkeypatch, capsys):
    def interrupted(name):
        raise KeyboardInterrupt

    monkeypatch.setattr(entry, "import_module", interrupted)
    try:
        entry.main()
    except SystemExit as stop:
        code = stop.code
    except KeyboardInterrupt:  # caught here, so that a failure does not stop the session
        code = "KeyboardInterrupt"
    assert code == 130
    assert capsys.readouterr() == ("", "Interrupted.\n")


def test_a_real_ctrl_c_during_the_import_of_torch(tmp_path):
    here = str(Path(rnnlab.__file__).parents[1])  # this rnnlab, whatever the cwd
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([here, os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-c", CTRL_C_AT_TORCH], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    # torch was first imported under the entry point's guard, not by ``import rnnlab``
    assert (r.returncode, r.stdout, r.stderr) == (130, "", "Interrupted.\n")


def test_rnnlab_compare_stays_the_function_when_its_module_is_bound():
    from rnnlab.compare import compare

    assert rnnlab.compare is compare
    # What the import system does after loading rnnlab/compare.py: it is kept off.
    setattr(rnnlab, "compare", sys.modules["rnnlab.compare"])  # noqa: B010
    assert rnnlab.compare is compare
    assert rnnlab.train.__module__ == "rnnlab.training.loop"
    assert set(rnnlab.__all__) <= set(dir(rnnlab))
