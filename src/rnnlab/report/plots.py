"""The report's figures, drawn with matplotlib's object-oriented API on the Agg backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

COLORS = {"rnn": "#d62728", "lstm": "#1f77b4", "gru": "#2ca02c", "mingru": "#9467bd",
          "minlstm": "#ff7f0e", "lnlstm": "#e377c2",
          "lngru": "#98df8a"}
# Baselines in grey and brown: the cells own the saturated colours.
BASELINE_COLORS = ("#7f7f7f", "#8c564b", "#bcbd22", "#17becf")
GATE_TITLES = {
    "i": "input gate i", "f": "forget gate f", "g": "candidate g", "o": "output gate o",
    "c": "cell state c", "r": "reset gate r", "z": "update gate z", "n": "candidate n",
    "a": "pre-activation a", "h_tilde": "candidate h̃ (linear)",
    "f_norm": "normalised forget gate f' = f/(f+i)", "h": "state h",
}
# How the report names each cell.
CELL_TITLES = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU", "lnlstm": "Layer-normalised LSTM",
               "lngru": "Layer-normalised GRU", "mingru": "minGRU", "minlstm": "minLSTM"}
GATE_ORDER = {"lstm": ["f", "i", "o", "c"], "gru": ["z", "r", "n"], "rnn": ["a"],
              "mingru": ["z", "h_tilde", "h"], "minlstm": ["f_norm", "f", "i", "h_tilde", "h"],
              "lnlstm": ["f", "i", "o", "c"], "lngru": ["z", "r", "n"]}


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110, bbox_inches="tight")


def save_curves(path: Path, metrics: dict) -> None:
    """Validation metric per cell vs steps and vs wall time, with the chance line."""
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax_steps, ax_time = fig.subplots(1, 2, sharey=True)
    positive = True
    for cell in metrics["cells"]:
        color = COLORS.get(cell["cell"])
        for k, run in enumerate(cell["runs"]):
            hist = run["history"]
            steps = [h["step"] for h in hist]
            secs = [h["seconds"] for h in hist]
            vals = [np.nan if h["val"] is None else h["val"] for h in hist]
            positive = positive and all(v > 0 for v in vals if np.isfinite(v))
            label = cell["cell"] if k == 0 else None
            ax_steps.plot(steps, vals, color=color, label=label, alpha=0.9 if k == 0 else 0.5)
            ax_time.plot(secs, vals, color=color, label=label, alpha=0.9 if k == 0 else 0.5)
    for ax, xlabel in ((ax_steps, "training step"), (ax_time, "wall time (s)")):
        ax.axhline(metrics["chance"], color="gray", linestyle="--",
                   label=metrics.get("baseline", "chance"))
        if metrics.get("target") is not None:
            ax.axhline(metrics["target"], color="gray", linestyle=":", label="target")
        ax.set_xlabel(xlabel)
        if positive and not metrics.get("higher_is_better"):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    ax_steps.set_ylabel(f"validation {metrics['metric']}")
    ax_steps.legend()
    fig.suptitle(f"Learning curves — task {metrics['task']}")
    _save(fig, path)


def save_gradients(path: Path, gradients: dict[str, dict[str, list[float]]]) -> None:
    """‖∂L/∂h_t‖ over t per cell on a log scale: at initialisation and after training."""
    fig = Figure(figsize=(11, 4), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, when in zip(axes, ("init", "trained"), strict=True):
        for cell, g in gradients.items():
            norms = np.asarray(g[when], dtype=float)
            norms = np.where(norms > 0, norms, np.nan)
            ax.plot(np.arange(len(norms)), norms, color=COLORS.get(cell), label=cell)
        ax.set_yscale("log")
        ax.set_xlabel("time step t")
        ax.set_title("at initialisation" if when == "init" else "after training")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean ‖∂L/∂h_t‖ over the probe batch (log scale)")
    axes[0].legend(title="cell")
    fig.suptitle("Gradient of the loss reaching each step's hidden state h_t "
                 "(vanishing gradients fall towards t = 0)")
    _save(fig, path)


def save_gates(path: Path, cell: str, gates: dict[str, list[list[float]]],
               marks: list[tuple[int, str]] = ()) -> None:
    """Heatmaps (hidden unit × time) of a cell's gates on one probe sequence.

    ``marks``: (step, label) pairs the task singles out in that sequence (the adding
    problem's marked steps), drawn as dashed lines on every panel and labelled on top.
    """
    _save(gates_figure(cell, gates, marks), path)


def gates_figure(cell: str, gates: dict[str, list[list[float]]],
                 marks: list[tuple[int, str]] = ()) -> Figure:
    """The figure of :func:`save_gates`: one panel per gate of ``GATE_ORDER[cell]`` that
    ``gates`` holds; gates on (0, 1), signed quantities (c, a, g, n and the min cells'
    unbounded h̃ and h) on a scale symmetric about 0. The marks' labels are the top panel's
    upper tick labels, so its title sits above them."""
    names = [n for n in GATE_ORDER.get(cell, sorted(gates)) if n in gates]
    fig = Figure(figsize=(11, 2.2 * len(names) + 1.0), layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(names), 1, sharex=True))
    for ax, name in zip(axes, names, strict=True):
        values = np.asarray(gates[name], dtype=float).T  # (H, T)
        if name in ("c", "a", "g", "n", "h_tilde", "h"):
            bound = float(np.abs(values).max()) or 1.0
            im = ax.imshow(values, aspect="auto", cmap="RdBu_r", vmin=-bound, vmax=bound,
                           interpolation="nearest")
            label = "value"
        else:
            im = ax.imshow(values, aspect="auto", cmap="viridis", vmin=0, vmax=1,
                           interpolation="nearest")
            label = "activation (0 = closed, 1 = open)"
        ax.set_ylabel("hidden unit")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(GATE_TITLES.get(name, name), fontsize=10, loc="left")
        fig.colorbar(im, ax=ax, fraction=0.025, pad=0.01).set_label(label, fontsize=8)
        for step, _ in marks:
            ax.axvline(step, color="black", linestyle="--", linewidth=1.2)
    if marks:
        top = axes[0].secondary_xaxis("top")
        top.set_xticks([step for step, _ in marks], [text for _, text in marks], fontsize=9)
    axes[-1].set_xlabel("time step t")
    fig.suptitle(f"{CELL_TITLES.get(cell, cell)} gates and states over time on one validation "
                 "sequence (each row one hidden unit)")
    return fig


def save_forecast(path: Path, views: dict[str, dict]) -> None:
    """The backtest over the held-out rows: truth, every cell and every classical baseline
    (dashed), one panel per forecast column, in the data's own units."""
    first = next(iter(views.values()))
    columns, Hz = first["columns"], first["horizon"]
    truth = np.asarray(first["truth"], dtype=float)
    origins = first.get("origins")
    rows = (np.concatenate([np.arange(o, o + Hz) for o in origins]) if origins
            else np.arange(len(truth)))
    baselines = first.get("baselines") or {
        "naive": {"forecast": first["naive"]}}  # a report written before the baselines
    fig = Figure(figsize=(11, 3 * len(columns)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(columns), 1, sharex=True))
    for j, (ax, name) in enumerate(zip(axes, columns, strict=True)):
        ax.plot(rows, truth[:, j], color="black", linewidth=2, label="truth")
        for k, (base, found) in enumerate(baselines.items()):
            if found.get("forecast") is not None:
                ax.plot(rows, np.asarray(found["forecast"], dtype=float)[:, j],
                        color=BASELINE_COLORS[k % len(BASELINE_COLORS)], linestyle="--",
                        label=base)
        for cell, view in views.items():
            pred = np.asarray(view["forecast"], dtype=float)[:, j]
            ax.plot(rows, pred, color=COLORS.get(cell), label=cell)
        for o in origins or ():
            ax.axvline(o, color="gray", linewidth=0.5, alpha=0.5)
        ax.set_ylabel(f"{name} (data units)")
        ax.grid(alpha=0.3)
    axes[0].legend(ncol=2, fontsize=8)
    axes[-1].set_xlabel(f"row (each block forecast {Hz} rows ahead from the thin line)")
    fig.suptitle("Backtest over the held-out rows: recurrent cells vs classical baselines")
    _save(fig, path)


def _positions(values: list) -> tuple[np.ndarray, bool]:
    """Where swept values sit on the x axis: themselves when numeric, else their order."""
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    return (np.asarray(values, dtype=float) if numeric else np.arange(len(values))), numeric


def save_sweep(path: Path, metrics: dict) -> Figure:
    """The sweep's main plot: each cell's best validation metric vs the swept value,
    with the chance (baseline) level at each value and the target when there is one."""
    points = metrics["points"]
    values = [p["value"] for p in points]
    x, numeric = _positions(values)
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    ax.plot(x, [p["chance"] for p in points], color="gray", linestyle="--", marker=".",
            label=metrics.get("baseline", "chance"))
    if metrics.get("target") is not None:
        ax.axhline(metrics["target"], color="gray", linestyle=":", label="target")
    best = []
    for cell in metrics["cells"]:
        ys = [np.nan if p["cells"].get(cell, {}).get("best") is None
              else p["cells"][cell]["best"] for p in points]
        best += [y for y in ys if np.isfinite(y)]
        ax.plot(x, ys, color=COLORS.get(cell), marker="o", label=cell)
    if numeric and len(x) > 1 and x.min() > 0 and x.max() / x.min() >= 10:
        ax.set_xscale("log")
    ax.set_xticks(x, [str(v) for v in values])
    ax.minorticks_off()
    if best and min(best) > 0 and not metrics.get("higher_is_better"):
        ax.set_yscale("log")
    ax.set_xlabel(metrics["key"])
    ax.set_ylabel(f"best validation {metrics['metric']}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.suptitle(f"Task {metrics['task']}: {metrics['metric']} vs {metrics['key']}, per cell")
    _save(fig, path)
    return fig
