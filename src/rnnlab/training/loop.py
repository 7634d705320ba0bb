"""The one training loop behind ``rnnlab train`` and every cell of ``rnnlab compare``.

AdamW, gradient-norm clipping, a learning-rate schedule, truncated BPTT with a carried
state for stream tasks, evaluation and early stopping on the validation metric,
checkpoints and exact resume. SIGINT and SIGTERM stop a run at the end of the step in
progress with a checkpoint of it (:mod:`rnnlab.training.interrupt`).

Reproducibility: model init draws from ``torch.manual_seed(seed)``; step s draws its
batch from a generator seeded with ``step_seed(seed, s)`` and re-seeds the global
generator (dropout) with ``step_seed(seed, s, rank)``, so no RNG state has to be carried
between steps and
a resumed run replays exactly the steps an uninterrupted run would have taken. All
progress lives in one dict (``Progress state``) saved with each checkpoint.

Under ``torchrun`` the same loop runs on every rank (see :mod:`rnnlab.training.distributed`):
each rank draws the global batch of the step and keeps its rows, DDP averages the
gradients, rank 0 alone evaluates and writes, and the progress state it decides is
broadcast so that every rank takes the same decisions and the same number of steps.
"""

from __future__ import annotations

import gc
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from rnnlab import runs  # a module, not names: rnnlab.runs imports this package's modules
from rnnlab._io import RUN_MARKER, InputError, prepare_run_dir, write_json
from rnnlab._version import __version__
from rnnlab.tasks import SequenceModel, Task, get_task
from rnnlab.tasks.model import ModelConfig, detach_state
from rnnlab.training.checkpoint import load_checkpoint, save_checkpoint, save_weights
from rnnlab.training.config import TrainConfig
from rnnlab.training.distributed import World, world
from rnnlab.training.interrupt import StopSignals, TrainingInterrupted
from rnnlab.training.progress import Progress
from rnnlab.training.threads import thread_policy


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """A 63-bit seed for one (seed, step, rank), independent of everything before it."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(2, np.uint64)[0] >> 1)


@dataclass
class TrainResult:
    """What one training run produced. ``model`` holds the best validation weights."""

    config: TrainConfig
    run_dir: Path
    model: SequenceModel
    model_config: ModelConfig
    task: Task
    metric: str
    chance: float
    best: float
    best_step: int
    final: float
    steps: int
    seconds: float  # wall time of the run, evaluations included
    eval_seconds: float  # the part spent on validation
    params: int
    stopped: str
    history: list[dict] = field(default_factory=list)

    @property
    def seconds_per_step(self) -> float:
        """Training time per step (validation excluded)."""
        return (self.seconds - self.eval_seconds) / max(1, self.steps)

    @property
    def sequences_per_second(self) -> float:
        """Training throughput (validation excluded)."""
        return self.steps * self.config.batch_size / max(self.seconds - self.eval_seconds, 1e-9)

    def steps_to(self, target: float | None) -> int | None:
        """First evaluated step whose validation metric reached ``target`` (None: never)."""
        if target is None:
            return None
        higher = self.task.higher_is_better
        for row in self.history:
            if (row["val"] >= target) if higher else (row["val"] <= target):
                return row["step"]
        return None

    def summary(self) -> dict:
        """The run's figures as JSON types: cell, seed, width, parameters, best and final metric."""
        return {
            "cell": self.config.cell,
            "seed": self.config.seed,
            "hidden": self.model_config.hidden_size,
            "params": self.params,
            "best": self.best,
            "best_step": self.best_step,
            "final": self.final,
            "steps": self.steps,
            "seconds": self.seconds,
            "eval_seconds": self.eval_seconds,
            "seconds_per_step": self.seconds_per_step,
            "sequences_per_second": self.sequences_per_second,
            "steps_to_target": self.steps_to(self.task.target),
            "stopped": self.stopped,
        }


def build_model(config: TrainConfig, task: Task) -> SequenceModel:
    if config.dropout > 0 and config.layers == 1:  # as torch.nn warns
        warnings.warn(
            "dropout is applied between stacked layers, so it has no effect with "
            f"layers=1 (got dropout={config.dropout})",
            stacklevel=2,
        )
    hidden = config.hidden if config.hidden is not None else task.default_hidden
    mc = task.model_config(
        config.cell, hidden, num_layers=config.layers, dropout=config.dropout,
        bidirectional=config.bidirectional, forget_bias=config.forget_bias,
        weight_drop=config.weight_drop, recurrent_dropout=config.recurrent_dropout,
        zoneout=config.zoneout,
    )
    torch.manual_seed(config.seed)
    return SequenceModel(mc)


def _better(task: Task, value: float, best: float | None) -> bool:
    if best is None or math.isnan(best):
        return not math.isnan(value)
    return value > best if task.higher_is_better else value < best


def _fresh_state() -> dict:
    return {
        "step": 0,
        "seconds": 0.0,
        "eval_seconds": 0.0,
        "best": None,
        "best_step": 0,
        "evals_since_best": 0,
        "stopped": "",
        "history": [],
    }


def train(
    config: TrainConfig | None = None,
    run_dir: str | os.PathLike | None = None,
    *,
    resume: bool = False,
    force: bool = False,
    progress: str = "auto",
    label: str | None = None,
    task_instance: Task | None = None,
    threads: int | None = None,
    **options,
) -> TrainResult:
    """Train one cell on one task and write everything to ``run_dir``.

    Pass a :class:`TrainConfig` or its fields as keyword arguments
    (``train(task="adding", cell="gru", steps=500)``). ``resume=True`` continues the run
    in ``run_dir`` from its newest intact checkpoint (the weights end exactly as an
    uninterrupted run's) or, when the folder holds no run yet, starts it there; an
    existing run folder is never overwritten unless ``force``. Under ``torchrun`` every
    rank calls this with the same arguments and rank 0's view of ``run_dir`` decides.
    ``progress`` is "auto" (bar on a terminal, plain lines otherwise), "bar", "lines" or
    "none". ``task_instance`` may pass an already-built task (compare shares one across cells).
    ``threads``: CPU threads for the call (default: the task's, see
    :mod:`rnnlab.training.threads`; torch's setting is restored on return).

    Keyword options start from the task's own defaults (:meth:`TrainConfig.for_task`), as
    on the command line. SIGINT or SIGTERM ends the run after the step in progress with a
    checkpoint of it and raises :class:`~rnnlab.training.interrupt.TrainingInterrupted`
    (a ``KeyboardInterrupt``); ``resume=True`` continues it.
    """
    if config is None and (options or not resume or run_dir is None):
        config = TrainConfig.for_task(**options)
    elif config is not None and options:
        config = config.replace(**options)
    if run_dir is None:
        run_dir = Path("runs") / f"{config.task}-{config.cell}"
    run_dir = Path(run_dir)
    ranks = world()
    resuming = ranks.on_main(lambda: resume and runs.holds_run(run_dir))
    if resuming:
        config = ranks.on_main(lambda: runs.resume_config(run_dir, config))
    elif config is None:
        config = TrainConfig.for_task()
    # Several ranks keep the default signal dispositions (see rnnlab.training.interrupt).
    with thread_policy(config.task, threads), StopSignals(run_dir, enabled=ranks.size == 1) as stop:
        return _train(config, run_dir, ranks, resume, force, resuming, progress, label,
                      task_instance, stop)


def _train(config, run_dir, ranks, resume, force, resuming, progress, label, task_instance,
           stop: StopSignals) -> TrainResult:
    task = task_instance or get_task(config.task, config.task_options)
    task.check(config)  # before any folder is made
    ranks.local_batch_size(config.batch_size)  # the global batch must split evenly
    checkpoint = ranks.on_main(lambda: _open_run(run_dir, resume, force, resuming))
    model = build_model(config, task)
    mc = model.config
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    state, carry = _fresh_state(), None
    if checkpoint is not None:
        state, carry = load_checkpoint(checkpoint, model, optimizer)
        if state.get("digest") != config.digest():
            raise InputError(f"checkpoint {str(checkpoint)!r} belongs to a different configuration")
        carry = ranks.slice_carry(carry, config.batch_size)  # saved in global column order
    elif ranks.main:
        write_json(run_dir / RUN_MARKER, {"kind": "train", "rnnlab": __version__})
        write_json(run_dir / "config.json", config.to_dict())
        write_json(run_dir / "model.json", mc.to_dict())
        write_json(
            run_dir / "task.json",
            {"name": task.name, "options": task.options_dict(), "metric": task.metric,
             "chance": task.chance, "higher_is_better": task.higher_is_better,
             "artefacts": task.artefacts()},
        )
        save_weights(run_dir / "init.safetensors", model.state_dict())
    params = sum(p.numel() for p in model.parameters())
    bar = Progress(progress if ranks.main else "none", config.steps, label or config.cell,
                   initial=state["step"])
    net = ranks.wrap(model)  # what the loss runs through: DDP when there are several ranks
    model.train()
    loss_value = float("nan")
    started = time.perf_counter() - state["seconds"]
    try:
        while state["step"] < config.steps and not state["stopped"]:
            step = state["step"] + 1
            torch.manual_seed(step_seed(config.seed, step, ranks.rank))  # dropout of this step
            generator = torch.Generator().manual_seed(step_seed(config.seed, step))
            for group in optimizer.param_groups:
                group["lr"] = config.lr_at(step, state["seconds"])
            batch = task.train_batch(step, config, generator)  # the global batch
            batch = ranks.slice_batch(batch, config.batch_size)  # this rank's rows
            if batch.get("reset"):
                carry = None
            loss, carry = task.loss(net, batch, carry)
            carry = detach_state(carry)
            optimizer.zero_grad(set_to_none=False)
            loss.backward()
            if config.clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
            optimizer.step()
            ranks.check_replicas(model, step)
            loss_value, state["seconds"] = ranks.agree(
                float(loss.detach()), time.perf_counter() - started
            )
            state["step"] = step
            bar.step(loss_value)
            if not math.isfinite(loss_value):
                state["stopped"] = f"diverged (training loss {loss_value}) at step {step}"
            last = step == config.steps
            if config.seconds is not None and state["seconds"] >= config.seconds:
                state["stopped"] = state["stopped"] or f"time budget of {config.seconds}s reached"
                last = True
            if step % config.eval_every == 0 or last or state["stopped"]:
                t0 = time.perf_counter()
                if ranks.main:
                    _evaluate(task, model, config, state, run_dir, loss_value, bar)
                state["eval_seconds"] += time.perf_counter() - t0
                state["seconds"] = time.perf_counter() - started
                state = ranks.broadcast(state)  # rank 0's verdict: best, early stop, clock
            if (config.checkpoint_every and step % config.checkpoint_every == 0) or last or (
                state["stopped"] or stop.signum is not None
            ):
                _checkpoint(ranks, run_dir, config, model, optimizer, carry, state)
            if stop.signum is not None:
                raise TrainingInterrupted(stop.signum, run_dir, step)
    finally:
        bar.close()
        # DDP's reducer holds the process group: free it now, not during interpreter exit
        # (where gloo's threads may already be gone and the process aborts).
        del net
        gc.collect()
    result = _result(config, run_dir, model, task, state, params, write=ranks.main)
    ranks.barrier()  # rank 0 has written everything when any rank returns
    return result


def _open_run(run_dir: Path, resume: bool, force: bool, resuming: bool) -> Path | None:
    """On rank 0: make (or reuse) the run folder; the checkpoint to resume from, or None.

    A resumed folder is checked whole here, before any training step."""
    prepare_run_dir(run_dir, force=force, resume=resume)
    return runs.resume_checkpoint(run_dir) if resuming else None


def _checkpoint(ranks: World, run_dir, config, model, optimizer, carry, state) -> None:
    """Rank 0 writes the checkpoint, with the carried state of every column gathered."""
    carry = ranks.gather_carry(carry)  # (L*D, global B, H): a resume may change the ranks
    if ranks.main:
        progress = {"digest": config.digest(), "world_size": ranks.size,
                    "global_batch": config.batch_size}
        save_checkpoint(run_dir, state["step"], model, optimizer, carry, {**state, **progress})


def _evaluate(task, model, config, state, run_dir, loss_value, bar) -> None:
    model.eval()
    scores = task.evaluate(model)
    model.train()
    value = scores[task.metric]
    state["history"].append(
        {"step": state["step"], "seconds": state["seconds"], "loss": loss_value,
         "val": value, **{k: v for k, v in scores.items() if k != task.metric}}
    )
    if _better(task, value, state["best"]):
        state["best"], state["best_step"], state["evals_since_best"] = value, state["step"], 0
        save_weights(run_dir / "model.safetensors", model.state_dict())
    else:
        state["evals_since_best"] += 1
        if config.patience is not None and state["evals_since_best"] >= config.patience:
            state["stopped"] = (
                f"early stop: no better validation {task.metric} in {config.patience} evaluations"
            )
    bar.evaluated(state["step"], loss_value, task.metric, value, state["seconds"])


def _result(config, run_dir, model, task, state, params, *, write=True) -> TrainResult:
    best_path = run_dir / "model.safetensors"
    if best_path.is_file():
        model.load_state_dict(load_file(str(best_path)))
    model.eval()
    history = state["history"]
    best = state["best"] if state["best"] is not None else float("nan")
    result = TrainResult(
        config=config, run_dir=run_dir, model=model, model_config=model.config, task=task,
        metric=task.metric, chance=task.chance, best=best, best_step=state["best_step"],
        final=history[-1]["val"] if history else float("nan"), steps=state["step"],
        seconds=state["seconds"], eval_seconds=state["eval_seconds"], params=params,
        stopped=state["stopped"] or "step budget reached", history=history,
    )
    if write:
        write_json(run_dir / "metrics.json", {
            "task": task.name, "metric": task.metric, "metric_help": task.metric_help,
            "chance": task.chance, "baseline": task.baseline,
            "target": task.target, "higher_is_better": task.higher_is_better,
            **result.summary(), "history": history,
        })
    return result
