"""Runs ``train()`` recording what the optimizer sees: the gradients of step 1 and a hash of
the weights after every step. In the test's own process (one rank), or as every rank of a
torchrun job, one training run after another in the same process group::

    torchrun ... tests/ddp_worker.py '{"NAME": TRAIN_KWARGS, ...}' OUT_DIR

Writes ``OUT_DIR/NAME/grad-RANK.safetensors``, ``OUT_DIR/NAME/hashes-RANK.json`` and the
run folder ``OUT_DIR/NAME/run`` (used by tests/test_distributed.py).
"""

import hashlib
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)

from rnnlab.training import train
from rnnlab.training.distributed import world


def record(config: dict, out: Path) -> None:
    """One training run with ``config`` in ``out`` (created), recorded."""
    out.mkdir(parents=True, exist_ok=True)
    grads, hashes = {}, []

    def before(opt, args, kwargs):
        if not grads:
            grads.update({str(i): p.grad.clone()
                          for i, p in enumerate(opt.param_groups[0]["params"])})

    def after(opt, args, kwargs):
        h = hashlib.sha256()
        for p in opt.param_groups[0]["params"]:
            h.update(p.detach().numpy().tobytes())
        hashes.append(h.hexdigest())

    hooks = [register_optimizer_step_pre_hook(before), register_optimizer_step_post_hook(after)]
    try:
        train(run_dir=out / "run", progress="none", **config)
    finally:
        for hook in hooks:  # process-wide hooks: gone again when this returns
            hook.remove()
    rank = world().rank
    save_file(grads, str(out / f"grad-{rank}.safetensors"))
    (out / f"hashes-{rank}.json").write_text(json.dumps(hashes))


if __name__ == "__main__":
    torch.set_num_threads(1)
    for name, config in json.loads(sys.argv[1]).items():
        record(config, Path(sys.argv[2]) / name)
