"""Checkpoints that make resume exact, written so that a kill never leaves a half one.

Layout inside a run folder::

    checkpoints/step-00000500/   model.safetensors  optimizer.safetensors
                                 carry.safetensors  state.json  manifest.json
    checkpoints/latest           name of the newest complete checkpoint

A checkpoint is written into a temporary folder, every file fsync'ed, the folder
renamed into place, and only then is ``latest`` replaced. ``manifest.json`` holds the
versions, the configuration digest, the world size and a SHA-256 per file; a checkpoint
that fails it is skipped, with a warning naming the file, in favour of the previous one.

``state.json`` is the loop's progress (step, clock, early-stopping state, history) plus
the world size and global batch it was written with; ``carry.safetensors`` holds the
carried hidden state of every stream column in global order, so a run may resume on a
different number of ranks. The position in a stream and the batch of every step follow
from the step number and the seed, so they need no state of their own.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from rnnlab._io import fsync_dir, sha256_file, to_json, write_bytes_atomic
from rnnlab._version import __version__
from rnnlab.training.distributed import die_if_asked

KEEP = 2
# Test-only fault hook: SIGKILL after the temporary folder is complete, before its rename.
_KILL_ENV = "RNNLAB_TEST_KILL_BEFORE_RENAME"


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path))


def save_weights(path: Path, state_dict: dict[str, torch.Tensor]) -> None:
    """Write a state dict as safetensors atomically (temporary name, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    _save_tensors(state_dict, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    sd = optimizer.state_dict()
    tensors = {}
    for pid, st in sd["state"].items():
        for name, value in st.items():
            tensors[f"{pid}.{name}"] = value if torch.is_tensor(value) else torch.tensor(value)
    return tensors, {"param_groups": sd["param_groups"]}


def _carry_tensors(carry) -> dict[str, torch.Tensor]:
    if carry is None:
        return {}
    if isinstance(carry, tuple):
        return {f"carry.{i}": t for i, t in enumerate(carry)}
    return {"carry": carry}


def _carry_from(tensors: dict[str, torch.Tensor]):
    if not tensors:
        return None
    if "carry" in tensors:
        return tensors["carry"]
    return tuple(tensors[f"carry.{i}"] for i in range(len(tensors)))


def save_checkpoint(root: Path, step: int, model, optimizer, carry, state: dict) -> Path:
    """Write checkpoint ``step`` atomically under ``root/checkpoints``; then point ``latest``."""
    ckdir = root / "checkpoints"
    ckdir.mkdir(exist_ok=True)
    name = f"step-{step:08d}"
    for stale in ckdir.glob(".tmp-step-*"):  # left by a kill mid-write: never complete
        shutil.rmtree(stale)
    tmp = ckdir / f".tmp-{name}"
    tmp.mkdir()
    opt_tensors, opt_meta = _optimizer_tensors(optimizer)
    _save_tensors(model.state_dict(), tmp / "model.safetensors")
    _save_tensors(opt_tensors, tmp / "optimizer.safetensors")
    _save_tensors(_carry_tensors(carry), tmp / "carry.safetensors")
    (tmp / "state.json").write_text(to_json({**state, "optimizer": opt_meta}))
    files = sorted(p.name for p in tmp.iterdir())
    for f in files:
        with open(tmp / f, "rb") as fh:
            os.fsync(fh.fileno())
    manifest = {
        "step": step,
        "config_digest": state.get("digest"),
        "world_size": state.get("world_size", 1),
        "versions": {"rnnlab": __version__, "torch": torch.__version__},
        "files": {f: sha256_file(tmp / f) for f in files},
    }
    write_bytes_atomic(tmp / "manifest.json", to_json(manifest).encode())
    fsync_dir(tmp)
    die_if_asked(_KILL_ENV, step)
    final = ckdir / name
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_dir(ckdir)
    write_bytes_atomic(ckdir / "latest", (name + "\n").encode())
    for old in sorted(p for p in ckdir.glob("step-*") if p.is_dir())[:-KEEP]:
        shutil.rmtree(old)
    return final


def _verify(path: Path) -> str | None:
    """None when the checkpoint is complete and intact, else what is wrong."""
    manifest = path / "manifest.json"
    if not manifest.is_file():
        return "no manifest.json"
    try:
        files = json.loads(manifest.read_text())["files"]
    except (ValueError, KeyError) as err:
        return f"unreadable manifest ({err})"
    for name, digest in files.items():
        if not (path / name).is_file():
            return f"{name} is missing"
        if sha256_file(path / name) != digest:
            return f"{name} fails its checksum (truncated or corrupt)"
    return None


def latest_checkpoint(root: Path) -> Path | None:
    """The newest intact checkpoint of a run, or None; corrupt ones are reported and skipped."""
    ckdir = root / "checkpoints"
    if not ckdir.is_dir():
        return None
    for path in sorted((p for p in ckdir.glob("step-*") if p.is_dir()), reverse=True):
        problem = _verify(path)
        if problem is None:
            return path
        warnings.warn(f"skipping checkpoint {path}: {problem}", stacklevel=2)
    return None


def load_checkpoint(path: Path, model, optimizer) -> tuple[dict, object]:
    """Restore model and optimizer in place; return (state dict, carried hidden state)."""
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    state = json.loads((path / "state.json").read_text())
    flat = load_file(str(path / "optimizer.safetensors"))
    opt_state: dict[int, dict] = {}
    for key, value in flat.items():
        pid, name = key.split(".", 1)
        opt_state.setdefault(int(pid), {})[name] = value
    optimizer.load_state_dict(
        {"state": opt_state, "param_groups": state.pop("optimizer")["param_groups"]}
    )
    carry = _carry_from(load_file(str(path / "carry.safetensors")))
    return state, carry
