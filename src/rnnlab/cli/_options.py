"""Options shared by ``rnnlab compare`` and ``rnnlab train``, and their translation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from rnnlab._io import RUN_MARKER, InputError
from rnnlab.runs import holds_run
from rnnlab.tasks import TASKS
from rnnlab.training import TrainConfig
from rnnlab.training.config import SCHEDULES
from rnnlab.training.distributed import launched_by_torchrun, restart_count, world
from rnnlab.training.progress import MODES

RESUME_MODES = ("yes", "auto", "no")

# name -> (click decls, kwargs); every option defaults to None = "the task's default".
_TRAIN_OPTIONS = [
    ("task", ["--task"], dict(type=click.Choice(sorted(TASKS)),
                              help="Task to train on (default: adding); 'rnnlab tasks' "
                                   "describes each.")),
    ("data", ["--data"], dict(type=click.Path(path_type=Path),
                              help="Your data file: text for charlm, CSV for forecast, "
                                   "CSV or NPZ for classify; or a built-in data set "
                                   "(forecast: airpassengers, sunspots, co2, nile; "
                                   "classify: digits).")),
    ("option", ["-o", "--option"], dict(multiple=True, metavar="KEY=VALUE",
                                        help="A task option, e.g. -o length=100 (repeatable); "
                                             "'rnnlab tasks' lists each task's options.")),
    ("layers", ["--layers"], dict(type=int, help="Stacked recurrent layers (default 1).")),
    ("dropout", ["--dropout"], dict(type=float, help="Dropout between stacked layers.")),
    ("bidirectional", ["--bidirectional/--unidirectional"],
     dict(default=None, help="Read sequences both ways (sequence-level tasks only).")),
    ("forget_bias", ["--forget-bias"], dict(type=float, help="LSTM forget-gate bias (default 1).")),
    ("weight_drop", ["--weight-drop"], dict(type=float, help="LSTM/GRU: DropConnect p on the "
                                                             "recurrent weight (default 0).")),
    ("recurrent_dropout", ["--recurrent-dropout"],
     dict(type=float, help="LSTM/GRU (not lnlstm/lngru): dropout p on h_{t-1} in the "
                           "recurrent product, one mask per sequence (default 0).")),
    ("zoneout", ["--zoneout"], dict(type=float, help="LSTM/GRU (not lnlstm/lngru): zoneout p "
                                                     "of the state (default 0).")),
    ("steps", ["--steps"], dict(type=int, help="Training steps per run.")),
    ("seconds", ["--seconds"], dict(type=float, help="Wall-clock budget per run in seconds; a "
                                                     "run stops at whichever budget ends first.")),
    ("batch_size", ["--batch-size"], dict(type=int, help="Sequences per training step.")),
    ("lr", ["--lr"], dict(type=float, help="AdamW learning rate.")),
    ("weight_decay", ["--weight-decay"], dict(type=float, help="AdamW weight decay.")),
    ("clip", ["--clip"], dict(type=float, help="Gradient-norm clip (0: off).")),
    ("schedule", ["--schedule"], dict(type=click.Choice(SCHEDULES),
                                      help="Learning-rate schedule after warmup.")),
    ("warmup", ["--warmup"], dict(type=int, help="Linear warmup steps.")),
    ("bptt", ["--bptt"], dict(type=int, help="Truncated-BPTT length for stream tasks (charlm).")),
    ("eval_every", ["--eval-every"], dict(type=int, help="Steps between validations.")),
    ("patience", ["--patience"], dict(type=int,
                                      help="Stop after this many validations without progress.")),
    ("checkpoint_every", ["--checkpoint-every"], dict(type=int,
                                                      help="Steps between checkpoints (0: end).")),
    ("seed", ["--seed"], dict(type=int, help="Random seed (default 0).")),
    ("threads", ["--threads"], dict(type=click.IntRange(min=1),
                                    help="CPU threads for torch (default: 1 for tasks whose "
                                         "default width is under 128, else torch's choice).")),
    ("out", ["--out"], dict(type=click.Path(file_okay=False, path_type=Path),
                            help="Run folder (default: runs/<name>).")),
    ("name", ["--name"], dict(help="Run name: the folder under ./runs.")),
    ("force", ["--force"], dict(is_flag=True, help="Overwrite an existing run folder.")),
    ("resume", ["--resume"], dict(
        is_flag=False, flag_value="yes", type=click.Choice(RESUME_MODES),
        help="Continue the run in the run folder ('--resume' alone: yes; an error when the "
             "folder holds no run). 'auto': continue it when it holds a run, else start it "
             "there. Default: auto under torchrun (so its restarts continue from the last "
             "checkpoint), no otherwise.")),
    ("progress", ["--progress"], dict(type=click.Choice(MODES), default="auto", show_default=True,
                                      help="Progress display.")),
]


def train_options(func):
    for _, decls, kwargs in reversed(_TRAIN_OPTIONS):
        func = click.option(*decls, **kwargs)(func)
    return func


def parse_value(key: str, text: str, default):
    if isinstance(default, bool):
        if text.lower() in ("1", "true", "yes"):
            return True
        if text.lower() in ("0", "false", "no"):
            return False
        raise InputError(f"task option {key} expects true or false, got {text!r}")
    if isinstance(default, tuple):
        return tuple(s.strip() for s in text.split(",") if s.strip())
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            raise InputError(f"task option {key} expects an integer, got {text!r}") from None
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise InputError(f"task option {key} expects a number, got {text!r}") from None
    if default is None:  # optional: a number when it parses as one
        for cast in (int, float):
            try:
                return cast(text)
            except ValueError:
                continue
    return text


def task_options(task: str, pairs, data: Path | None) -> dict:
    """Parse ``-o KEY=VALUE`` pairs against the task's option fields (and --data)."""
    fields = {f.name: f for f in dataclasses.fields(TASKS[task].Options)}
    out: dict = {}
    if data is not None:
        if "path" not in fields:
            raise InputError(f"task {task!r} takes no data file (--data); it generates its data")
        out["path"] = str(data)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise InputError(f"task option {pair!r} is not KEY=VALUE")
        if key not in fields:
            raise InputError(
                f"task {task!r} has no option {key!r}; its options are {', '.join(sorted(fields))}"
            )
        f = fields[key]
        default = f.default if f.default is not dataclasses.MISSING else None
        out[key] = parse_value(key, value, default)
    return out


def build_train_config(base: TrainConfig | None, kw: dict, **extra) -> TrainConfig:
    """The TrainConfig the command line asks for: task defaults, then given options."""
    task = kw.get("task") or (base.task if base is not None else "adding")
    opts = task_options(task, kw.get("option") or (), kw.get("data"))
    if base is None or kw.get("task") not in (None, base.task):
        base = TrainConfig.for_task(task)
    if opts:
        base = base.replace(task_options={**base.task_options, **opts})
    names = {f.name for f in dataclasses.fields(TrainConfig)} - {"task", "task_options"}
    given = {k: v for k, v in kw.items() if k in names and v is not None}
    return base.replace(**given, **extra)


def resolve_resume(kw: dict) -> None:
    """Turn ``--resume [yes|auto|no]`` (and torchrun's restarts) into the library's flag.

    'yes' requires a run in the folder (see ``check_resume``); 'auto' continues a named
    run folder (--out/--name) that holds a run, else starts one there; a worker that
    torchrun restarted always continues what its first attempt began, and never deletes
    it (--force applies to the first attempt only).
    """
    mode = kw.get("resume") or ("auto" if launched_by_torchrun() else "no")
    restarted = restart_count() > 0
    if restarted:
        kw["force"] = False
    kw["resume_required"] = mode == "yes" and not restarted
    if mode == "auto":
        named = kw.get("out") is not None or bool(kw.get("name"))
        kw["resume"] = restarted or (named and not kw["force"])
    else:
        kw["resume"] = mode == "yes"


def saved_folder(kw: dict) -> Path | None:
    """With --resume and an explicit run folder that holds a run: that folder."""
    if not kw.get("resume"):
        return None
    folder = kw.get("out") or (Path("runs") / kw["name"] if kw.get("name") else None)
    if folder is None:
        return None  # (a default-named folder is found by run_dir, checked by the library)
    # under torchrun: rank 0's answer, asked before any rank writes there
    return folder if world().broadcast(holds_run(folder)) else None


def check_resume(kw: dict, folder: Path) -> None:
    """``--resume`` (yes) continues a run: a folder without one is an error, not a new run."""
    if kw.get("resume_required") and not holds_run(folder):
        state = "does not exist" if not folder.exists() else f"holds no run (no {RUN_MARKER})"
        raise InputError(f"--resume: {str(folder)!r} {state}, so there is nothing to continue; "
                         "use --resume auto to start a run there when none exists")


def run_dir(kw: dict, default_name: str) -> Path:
    """--out, or runs/<--name>; with neither, runs/<default_name>[-N]: a fresh folder
    (or with --resume the newest one), so running a command twice never collides."""
    if kw.get("out") is not None and kw.get("name") is not None:
        raise InputError("give either --out or --name, not both")
    return world().broadcast(_run_dir(kw, default_name))  # under torchrun: rank 0's choice


def _run_dir(kw: dict, default_name: str) -> Path:
    if kw.get("out") is not None:
        return kw["out"]
    if kw.get("name"):
        return Path("runs") / kw["name"]
    candidates = [Path("runs") / default_name]
    candidates += [Path("runs") / f"{default_name}-{n}" for n in range(2, 1000)]
    taken = [p for p in candidates if p.exists()]
    if kw.get("resume") and taken:
        return taken[-1]
    return next(p for p in candidates if not p.exists())

