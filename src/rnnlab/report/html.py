"""One self-contained HTML page: the PNGs embedded as data URIs, no external files."""

from __future__ import annotations

import base64
import html
import json
import shlex
from pathlib import Path

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
img { max-width: 100%; }
pre { background: #f6f6f6; padding: 0.8em; white-space: pre-wrap; }
"""


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _fmt(v, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    if isinstance(v, list):
        return " / ".join(_fmt(x) for x in v)
    return html.escape(str(v))


def _table(metrics: dict) -> str:
    m = metrics["metric"]
    baseline = metrics.get("baseline", "chance")
    head = ["cell", "hidden", "params", f"best {m}", "spread over seeds", f"× {baseline}",
            "seconds", "ms/step", "sequences/s", "steps to target"]
    rows = []
    for c in metrics["cells"]:
        rows.append([
            c["cell"], c["hidden"], c["params"], c["best"], c["best_spread"],
            c["ratio_to_chance"], c["seconds"], c["seconds_per_step"] * 1e3,
            c["sequences_per_second"], c["steps_to_target"],
        ])
    out = ["<table>", "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


SCORES = ("mae", "rmse", "mape", "smape", "mase")


def forecast_verdict(cells: dict[str, dict], baselines: dict[str, dict]) -> str:
    """Which classical baseline beats the best recurrent cell on MASE, in one sentence."""
    scored = {c: s["mase"] for c, s in cells.items() if s and s.get("mase") is not None}
    if not scored:
        return "No recurrent cell was scored."
    best = min(scored, key=scored.get)
    winners = sorted((s["scores"]["mase"], name) for name, s in baselines.items()
                     if s.get("scores") and s["scores"]["mase"] < scored[best])
    head = f"The best recurrent cell on MASE is {best} ({scored[best]:.3g})"
    if not winners:
        return head + "; it beats every classical baseline."
    return head + "; " + ", ".join(f"{n} ({v:.3g})" for v, n in winners) + (
        " beats it." if len(winners) == 1 else " beat it.")


def forecast_scores(metrics: dict) -> str:
    """The backtest's table: every cell and classical baseline on MAE, RMSE, MAPE, sMAPE and
    MASE (a score a run's metrics.json predates shows as –)."""
    views = {c: e["forecast_view"] for c, e in (metrics.get("extras") or {}).items()
             if "scores" in e.get("forecast_view", {})}
    if not views:
        return ""
    first = next(iter(views.values()))
    cells = {c: v["scores"] for c, v in views.items()}
    baselines = first["baselines"]
    head = ["model", "MAE", "RMSE", "MAPE %", "sMAPE %", "MASE", "note"]
    out = ["<h2>Backtest against classical baselines</h2>",
           f"<p>{len(first['origins'])} forecast origins, {first['horizon']} rows each, "
           f"season {first['season']}; every model forecasts from the rows before each origin "
           "(the baselines are refit there). Data units; MASE scales by the seasonal naive "
           f"forecast's in-sample error. {html.escape(forecast_verdict(cells, baselines))}</p>",
           "<table>", "<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    rows = [(c, s, None) for c, s in cells.items()]
    rows += [(n, b["scores"], b["note"] or ("" if b["scores"] else "failed"))
             for n, b in baselines.items()]
    for name, s, note in rows:
        values = [_fmt(s.get(k)) if s else "–" for k in SCORES]
        out.append(f"<tr><td>{html.escape(name)}</td>" + "".join(f"<td>{v}</td>" for v in values)
                   + f"<td>{html.escape(note or '')}</td></tr>")
    out.append("</table>")
    return "\n".join(out)


def _shown_config(config: dict) -> dict:
    """A comparison's shared training settings carry a placeholder cell: show the cells."""
    if "cells" in config and isinstance(config.get("train"), dict):
        train = {k: v for k, v in config["train"].items() if k != "cell"}
        return {"cells": config["cells"], **{k: v for k, v in config.items() if k != "cells"},
                "train": train}
    return config


def _explore_link(run_dir: Path) -> str:
    """A link to the folder's explorer page where it exists, else the command that writes it."""
    command = f"<code>{html.escape(shlex.join(['rnnlab', 'explore', str(run_dir)]))}</code>"
    head = ("<p>Explore the trained cells interactively — gates over the text, matching "
            "spans, the cell diagram step by step, what each prediction remembers: ")
    if (run_dir / "explore.html").is_file():
        return head + f'<a href="explore.html">explore.html</a> in this folder ({command} ' \
                      "redraws it).</p>"
    return head + f"{command} writes explore.html in this folder, and this page then links " \
                  "it.</p>"


def render(run_dir: Path, metrics: dict, images: list[tuple[str, str]]) -> str:
    """The page: summary, table, figures (``images``: (file name, heading)), extras, config."""
    title = f"rnnlab — {metrics['task']}"
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Validation metric <b>{html.escape(metrics['metric'])}</b> "
        + (f"({html.escape(metrics['metric_help'])}; " if metrics.get("metric_help") else "(")
        + f"{'higher' if metrics.get('higher_is_better') else 'lower'} is better); "
        f"{html.escape(metrics.get('baseline', 'chance'))} level {_fmt(metrics['chance'])}"
        + (f", target {_fmt(metrics['target'])}" if metrics.get("target") is not None else "")
        + ". Every cell had the same data, seeds, optimiser and budget.</p>",
        "<h2>Results</h2>", _table(metrics), forecast_scores(metrics),
        _explore_link(run_dir),
    ]
    for name, heading in images:
        path = run_dir / name
        if path.is_file():
            parts += [f"<h2>{html.escape(heading)}</h2>", _img(path, heading)]
    for cell, extra in sorted((metrics.get("extras") or {}).items()):
        for key, text in extra.items():
            if isinstance(text, str):
                parts += [f"<h3>{html.escape(cell)}: {html.escape(key)}</h3>",
                          f"<pre>{html.escape(text)}</pre>"]
    parts += [
        "<h2>Configuration</h2>",
        f"<pre>{html.escape(json.dumps(_shown_config(metrics.get('config', {})), indent=2))}</pre>",
        "</body></html>",
    ]
    return "\n".join(parts)


def render_sweep(run_dir: Path, metrics: dict) -> str:
    """A sweep's page: the metric-vs-value plot and a table of each cell's best per value."""
    key, m = metrics["key"], metrics["metric"]
    title = f"rnnlab — {metrics['task']} sweep over {key}"
    head = [key, html.escape(metrics.get("baseline", "chance")), *metrics["cells"]]
    rows = [[p["value"], p["chance"], *(p["cells"].get(c, {}).get("best")
                                        for c in metrics["cells"])] for p in metrics["points"]]
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Best validation <b>{html.escape(m)}</b> of each cell at each value of "
        f"<b>{html.escape(key)}</b> ({'higher' if metrics.get('higher_is_better') else 'lower'}"
        " is better); each value is a full comparison in its own folder "
        f"(<code>{html.escape(key)}=VALUE</code>) with its own report data.</p>",
        "<table>", "<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>",
        *("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>" for row in rows),
        "</table>",
    ]
    if (run_dir / "sweep.png").is_file():
        parts += [f"<h2>{html.escape(m)} vs {html.escape(key)}</h2>",
                  _img(run_dir / "sweep.png", f"{m} vs {key}")]
    parts += ["<h2>Configuration</h2>",
              f"<pre>{html.escape(json.dumps(metrics.get('config', {}), indent=2))}</pre>",
              "</body></html>"]
    return "\n".join(parts)
