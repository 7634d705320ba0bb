"""Checkpoints that make resume exact, written so that a kill never leaves a half one.

Layout inside a run folder::

    checkpoints/step-00000500/   model.safetensors  optimizer.safetensors
                                 carry.safetensors  state.json  manifest.json
    checkpoints/latest           name of the newest complete checkpoint

A checkpoint is written into a temporary folder, every file fsync'ed, the folder
renamed into place, and only then is ``latest`` replaced. ``manifest.json`` holds the
versions, the configuration digest, the world size and a SHA-256 per file; a checkpoint
that fails it is skipped, with a :class:`~rnnlab._io.RunWarning` naming the file, in
favour of the previous one. ``latest`` is for people and tools; resume finds the newest
intact folder itself.

The weights beside the checkpoints (``init.safetensors``, ``model.safetensors``) carry
the SHA-256 of their tensor data in their safetensors header (``save_weights``), which
``read_weights`` checks.

``state.json`` is the loop's progress (step, clock, early-stopping state, history) plus
the world size and global batch it was written with; ``carry.safetensors`` holds the
carried hidden state of every stream column in global order, so a run may resume on a
different number of ranks. The position in a stream and the batch of every step follow
from the step number and the seed, so they need no state of their own.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load, load_file, save, save_file

from rnnlab._io import InputError, RunWarning, fsync_dir, sha256_file, to_json, write_bytes_atomic
from rnnlab._version import __version__

KEEP = 2
FILES = ("carry.safetensors", "model.safetensors", "optimizer.safetensors", "state.json")
_DIGEST = "sha256"  # the safetensors header field holding the SHA-256 of the tensor data


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path))


def _data_section(blob: bytes) -> bytes:
    """The tensor bytes of a safetensors file (after the 8-byte length and the header)."""
    return blob[8 + int.from_bytes(blob[:8], "little"):]


def save_weights(path: Path, state_dict: dict[str, torch.Tensor]) -> None:
    """Write a state dict as safetensors atomically, with the SHA-256 of its tensor data."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    digest = hashlib.sha256(_data_section(save(tensors))).hexdigest()
    write_bytes_atomic(path, save(tensors, metadata={_DIGEST: digest}))


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file; InputError naming the file when it is damaged.

    Files written by :func:`save_weights` are checked against their SHA-256.
    """
    if not path.is_file():
        raise InputError(f"{str(path)!r} is missing")
    blob = path.read_bytes()
    if not blob:
        raise InputError(f"{str(path)!r} is damaged: the file is empty")
    header_end = 8 + int.from_bytes(blob[:8], "little")
    try:
        header = json.loads(blob[8:header_end]) if len(blob) >= header_end else None
        tensors = load(blob)
    except (ValueError, SafetensorError) as err:
        raise InputError(
            f"{str(path)!r} is damaged: not a readable safetensors file (truncated or corrupt: "
            f"{err})"
        ) from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    digest = meta.get(_DIGEST) if isinstance(meta, dict) else None
    if digest is not None and hashlib.sha256(blob[header_end:]).hexdigest() != digest:
        raise InputError(f"{str(path)!r} is damaged: its tensor data fails its SHA-256 checksum")
    return tensors


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
    final = ckdir / name
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_dir(ckdir)
    write_bytes_atomic(ckdir / "latest", (name + "\n").encode())
    for old in sorted(p for p in ckdir.glob("step-*") if p.is_dir())[:-KEEP]:
        shutil.rmtree(old)
    return final


def verify_checkpoint(path: Path) -> str | None:
    """None when the checkpoint is complete and intact, else what is wrong."""
    manifest = path / "manifest.json"
    if not manifest.is_file():
        return "no manifest.json"
    try:
        files = json.loads(manifest.read_text())["files"]
    except (ValueError, KeyError, TypeError) as err:
        return f"unreadable manifest.json ({type(err).__name__}: {err})"
    if not isinstance(files, dict) or sorted(files) != sorted(FILES):
        return f"manifest.json does not list the checkpoint's files ({', '.join(FILES)})"
    for name in FILES:
        if not (path / name).is_file():
            return f"{name} is missing"
        digest = files[name]
        if not (isinstance(digest, str) and re.fullmatch("[0-9a-f]{64}", digest)):
            return f"manifest.json holds no SHA-256 for {name}"
        if sha256_file(path / name) != digest:
            return f"{name} fails its checksum (truncated or corrupt)"
    return None


def find_checkpoint(root: Path) -> tuple[Path | None, list[str]]:
    """The newest intact checkpoint of a run (or None), and what is wrong with each newer one."""
    ckdir = root / "checkpoints"
    skipped = []
    if ckdir.is_dir():
        for path in sorted((p for p in ckdir.glob("step-*") if p.is_dir()), reverse=True):
            problem = verify_checkpoint(path)
            if problem is None:
                return path, skipped
            skipped.append(f"checkpoint {path}: {problem}")
    return None, skipped


def latest_checkpoint(root: Path) -> Path | None:
    """The newest intact checkpoint of a run, or None; corrupt ones are reported and skipped."""
    path, skipped = find_checkpoint(root)
    for problem in skipped:
        warnings.warn(f"skipping {problem}", RunWarning, stacklevel=2)
    return path


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
