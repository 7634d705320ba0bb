"""Data-parallel training on PyTorch's own engine: DDP, launched by ``torchrun``.

Under ``torchrun --nproc-per-node N`` every process runs the same training loop. The
process group comes from torchrun's environment (``RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``...): gloo for CPU tensors, NCCL for CUDA ones. Outside torchrun the
world is one process and every method here is the identity.

How a step is shared (the union of the ranks is exactly the single-process step):

- every rank draws the *global* batch of the step from the same generator and keeps
  its contiguous slice of rows (for a stream task: its contiguous stream columns);
- ``DistributedDataParallel`` averages the gradients, so each rank applies the same
  update and the replicas stay bitwise equal;
- the training loss is averaged over ranks and rank 0's clock is everybody's clock,
  so every decision (time budget, learning rate, early stop) is taken identically and
  every rank runs the same number of steps;
- the carried hidden state stays with the rank that owns its columns: it is an argument
  of the forward, never a module buffer, and it is gathered (in global column order) only
  to be written into a checkpoint.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from rnnlab._io import InputError

# Debugging aid: with this set, every step checks that all replicas hold the same weights.
_CHECK_ENV = "RNNLAB_CHECK_REPLICAS"


def launched_by_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ


def restart_count() -> int:
    """How many times torchrun has restarted this job's workers (0: the first attempt)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))


def _backend() -> str:
    return "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (rank 0 of 1 when alone)."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes files, plots and progress."""
        return self.rank == 0

    # -- data -----------------------------------------------------------------------------

    def local_batch_size(self, global_batch: int) -> int:
        if global_batch % self.size:
            raise InputError(
                f"batch_size {global_batch} does not split evenly over {self.size} processes; "
                f"use a multiple of {self.size}"
            )
        return global_batch // self.size

    def columns(self, global_batch: int) -> slice:
        """This rank's contiguous rows (stream columns) of the global batch."""
        b = self.local_batch_size(global_batch)
        return slice(self.rank * b, (self.rank + 1) * b)

    def slice_batch(self, batch: dict, global_batch: int) -> dict:
        """This rank's rows of every per-sequence tensor (first dimension = the batch)."""
        if self.size == 1:
            return batch
        rows = self.columns(global_batch)
        return {
            k: v[rows] if torch.is_tensor(v) and v.dim() and len(v) == global_batch else v
            for k, v in batch.items()
        }

    def slice_carry(self, carry, global_batch: int):
        """This rank's columns of a carried state saved in global order, (L*D, B, H)."""
        if carry is None or self.size == 1:
            return carry
        rows = self.columns(global_batch)
        if isinstance(carry, tuple):
            return tuple(c[:, rows].contiguous() for c in carry)
        return carry[:, rows].contiguous()

    def gather_carry(self, carry):
        """Every rank's carried state joined in global column order (a collective)."""
        if carry is None or self.size == 1:
            return carry
        if isinstance(carry, tuple):
            return tuple(self._gather_columns(c) for c in carry)
        return self._gather_columns(carry)

    def _gather_columns(self, t: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(t) for _ in range(self.size)]
        dist.all_gather(parts, t.contiguous())
        return torch.cat(parts, dim=1)

    # -- model ----------------------------------------------------------------------------

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module to train through: ``DistributedDataParallel`` when there are several.

        DDP copies rank 0's parameters at construction and averages gradients in
        backward; ``forward_sync_buffers=False``: nothing is broadcast at each forward
        (the carried state is a per-rank argument of the forward, not a buffer).
        """
        if self.size == 1:
            return model
        return DistributedDataParallel(model, forward_sync_buffers=False)

    def check_replicas(self, model: torch.nn.Module, step: int) -> None:
        """With ``RNNLAB_CHECK_REPLICAS=1``: raise unless all ranks hold identical weights."""
        if self.size == 1 or os.environ.get(_CHECK_ENV) != "1":
            return
        h = hashlib.sha256()
        for name, p in sorted(model.state_dict().items()):
            h.update(name.encode())
            h.update(p.detach().cpu().contiguous().numpy().tobytes())
        mine = torch.tensor([int.from_bytes(h.digest()[:7], "little")], dtype=torch.int64)
        every = [torch.empty_like(mine) for _ in range(self.size)]
        dist.all_gather(every, mine)
        if len({int(d) for d in every}) != 1:
            raise RuntimeError(f"model replicas differ across ranks after step {step}")

    # -- agreement --------------------------------------------------------------------------

    def agree(self, loss: float, seconds: float) -> tuple[float, float]:
        """The loss averaged over ranks, and rank 0's elapsed seconds (one all-reduce)."""
        if self.size == 1:
            return loss, seconds
        t = torch.tensor([loss / self.size, seconds if self.main else 0.0], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t[0]), float(t[1])

    def broadcast(self, obj):
        """Rank 0's value of a picklable object, on every rank."""
        if self.size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def on_main(self, fn):
        """Run ``fn()`` on rank 0 only and return its result everywhere.

        An InputError raised there is raised on every rank, so a bad run folder stops the
        whole job with one message instead of leaving the other ranks waiting.
        """
        result, error = None, None
        if self.main:
            try:
                result = fn()
            except InputError as err:
                error = str(err)
        result, error = self.broadcast((result, error))
        if error is not None:
            raise InputError(error)
        return result

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group together, once every rank has finished its work.

        Call it on the normal way out only: a rank that fails must not wait here for the
        others (they fail in their next collective, and torchrun restarts the job).
        """
        if self.size > 1:
            dist.barrier()
            dist.destroy_process_group()


def world() -> World:
    """This process's World; joins torchrun's process group on first use.

    The group lasts for the process (``compare`` trains several runs in it); the CLI
    leaves it with :meth:`World.close` when it is done.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    if not dist.is_initialized():
        dist.init_process_group(_backend(), store=_attempt_store(),
                                rank=int(os.environ["RANK"]), world_size=size)
    return World(dist.get_rank(), dist.get_world_size())


def _attempt_store() -> dist.Store | None:
    """Under torchrun, the agent's store with keys private to this restart attempt.

    torchrun's default (static) rendezvous keeps one store across ``--max-restarts``, so
    a restarted worker would find the previous attempt's peer addresses in it and hang or
    fail to connect; a prefix per attempt keeps the attempts apart. Elsewhere: None, and
    ``init_process_group`` reads the usual ``env://`` variables itself.
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]),
                          is_master=False)
    return dist.PrefixStore(f"rnnlab/attempt-{restart_count()}", store)


