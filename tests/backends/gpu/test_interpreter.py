"""The gpu backend's Triton kernels, run on CPU through Triton's interpreter.

Each job is a pytest run in a subprocess with TRITON_INTERPRET=1, because the flag must
be set before the kernels are defined and must not leak into the rest of the suite:

- the shared conformance suite (every op vs the NumPy reference: outputs, final states,
  saved gates, every gradient and the total dL/dh_t; lengths, reverse, projection, both
  GRU variants) in float32, once per execution path (the cooperative path launches its
  kernel once per step there: the interpreter runs programs one after another, so they
  could never meet at a barrier; the layer-normalised families, which have one path,
  run with the tiled one only);
- rnnlab.nn vs torch.nn with the gpu backend forced (stacked, bidirectional, batch_first,
  packed input, ...), float32, on the automatic path and on the cooperative one;
- torch.library.opcheck of the forward and backward ops with the gpu backend forced;
- double backward: a Hessian-vector product through every op variant on the gpu
  backend (float32) against the portable backend in float64;
- rnnlab.nn.Stream on the gpu backend (its streaming entry point), float32, one variant
  per family;
- the masked ops (recurrent dropout, zoneout) vs the masked reference, float32 (their
  kernels run the tiled path whatever the path setting);
- ``rnnlab::rnn_bidirectional`` against ``rnnlab::rnn`` once per direction, float32;
- the layer-normalised ops (their conformance cases are in the suite above): opcheck and
  the layers vs the reference stack, with the gpu backend forced;
- the min cells' ops (minGRU, minLSTM: the scan kernels) vs the reference and opcheck,
  with the gpu backend forced;
- the backend's own checks (interpreted/check_gpu_backend.py): bf16, several programs and
  padded blocks, every path, the layer-normalised row kernels, cooperative layouts,
  weight packing, the barrier's one-launch mode with the programs as threads that run at
  once, its timeout fallback, aliasing, selection rules; the masked kernels on those
  sizes (training and eval masks, bf16) and regularised layers on them; the min cells'
  kernels over several chunks and unit blocks, in bf16 and in stacked layers.

On a CUDA machine the backend's own checks also run on the GPU (no interpreter).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[3]
CHECKS = "tests/backends/gpu/interpreted/check_gpu_backend.py"


def torch_nn_cases(seeds: range) -> list[str]:
    return [
        f"tests/nn/test_layers_vs_torch.py::test_layer_matches_torch_nn[{seed}-{family}-f32]"
        for seed in seeds
        for family in ("gru", "lstm", "rnn")
    ]


# The layer-normalised families run their own row kernels whatever the path setting says
# (backends/gpu/__init__.py): their conformance cases run once, with the tiled path.
ONE_PATH_FAMILIES = "lnlstm or lngru"
# the backend checks of the layer-normalised, masked and min families
_VARIANTS = "layer_norm or masked or min_"


def seeds(count: int) -> str:
    """A -k clause selecting the reference cases of seeds 0 .. count-1 (ids ``{seed}-gpu-``)."""
    return "(" + " or ".join(f"{seed}-gpu" for seed in range(count)) + ")"


# The tiled path runs all 8 seeds of every family, the other paths half of them. The
# cooperative kernels with their weights streamed instead of held are the backend checks'
# (test_cooperative_row_tiles_and_wide_slices, every family at several layouts).
JOBS = {
    "reference-persistent": (
        ["tests/ops/test_backends_vs_reference.py", "-k",
         f"gpu and f32 and not ({ONE_PATH_FAMILIES}) and {seeds(4)}"],
        {"RNNLAB_GPU_PATH": "persistent"},
    ),
    "reference-cooperative": (
        ["tests/ops/test_backends_vs_reference.py", "-k",
         f"gpu and f32 and not ({ONE_PATH_FAMILIES}) and {seeds(4)}"],
        {"RNNLAB_GPU_PATH": "cooperative"},
    ),
    "reference-tiled": (
        ["tests/ops/test_backends_vs_reference.py", "-k", "gpu and f32"],
        {"RNNLAB_GPU_PATH": "tiled"},
    ),
    # every input form on the automatic path; the cooperative kernels on two of them (the
    # forms differ in the layer's host code, which the automatic path already covers)
    "torch-nn": (torch_nn_cases(range(4)), {"RNNLAB_BACKEND": "gpu", "RNNLAB_GPU_PATH": "auto"}),
    "torch-nn-cooperative": (
        torch_nn_cases(range(2)), {"RNNLAB_BACKEND": "gpu", "RNNLAB_GPU_PATH": "cooperative"}
    ),
    # the cases with lengths, which between them set every flag (torch.compile is checked
    # on the default backend: its graph holds the same ops, whose fake implementations
    # every backend shares)
    "opcheck": (["tests/ops/test_ops.py", "-k", "opcheck and lengths"],
                {"RNNLAB_BACKEND": "gpu"}),
    "double-backward": (["tests/ops/test_double_backward.py", "-k", "float32 and gpu"], {}),
    # the gpu backend's own checks, in two halves that two workers run at once (the whole
    # took 205 s, the longest item of the suite)
    "backend-checks": ([CHECKS, "-o", "python_files=check_*.py", "-k", f"not ({_VARIANTS})"],
                       {}),
    "backend-checks-variants": ([CHECKS, "-o", "python_files=check_*.py", "-k", _VARIANTS],
                                {}),
    "masked": (["tests/ops/test_masked_ops.py", "-k", "gpu and f32"], {}),
    # both directions of an RNN layer in one op, on the gpu kernels (which add the two dx)
    "rnn-bidirectional": (["tests/ops/test_bidirectional_op.py", "-k", "gpu"], {}),
    # packed rows, which the gpu kernels take through their padded form (one seed per
    # variant: the padding itself is the shared backends/_rows.Padded)
    "packed-rows": (["tests/ops/test_packed_rows.py", "-k", "matches_reference and 0-gpu-f32"],
                    {}),
    # the layer-normalised ops' opcheck and layers (stacked, bidirectional, batch_first,
    # lengths) vs the reference stack, with the gpu backend forced
    "layer-norm": (
        ["tests/ops/test_layer_norm_ops.py", "tests/nn/test_layer_norm_layers.py", "-k",
         "opcheck or (reference_stack and f32)"], {"RNNLAB_BACKEND": "gpu"},
    ),
    # the min cells' scan kernels: their ops vs the reference (lengths, both directions,
    # the probe, scan and loop forms) and opcheck, with the gpu backend forced
    "min": (["tests/ops/test_min_ops.py", "-k", "float32 or opcheck"], {"RNNLAB_BACKEND": "gpu"}),
    "streaming": (
        ["tests/backends/test_streaming.py", "-k",
         "gpu and f32 and (lstm_proj or gru_reset_before or rnn_relu)"], {}
    ),
}

needs_triton = pytest.mark.skipif(
    importlib.util.find_spec("triton") is None, reason="triton is not installed"
)


def _pytest(args: list[str], extra_env: dict[str, str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RNNLAB_", "TRITON_"))}
    # The interpreter's tl.dot is NumPy's: one OpenBLAS thread, as each of the suite's
    # two workers has one core (idle OpenBLAS threads spin).
    env.update({"OPENBLAS_NUM_THREADS": "1", **extra_env})
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    report = f"{done.stdout[-6000:]}\n{done.stderr[-3000:]}"
    assert done.returncode == 0, f"{' '.join(args[:3])} failed with {extra_env}:\n{report}"


@needs_triton
@pytest.mark.parametrize("job", sorted(JOBS))
def test_kernels_in_the_interpreter(job):
    args, env = JOBS[job]
    _pytest(args, {"TRITON_INTERPRET": "1", **env})


@needs_triton
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_backend_checks_on_cuda():
    _pytest([CHECKS, "-o", "python_files=check_*.py"], {"RNNLAB_GPU_TEST_DEVICE": "cuda"})
