"""The report: redrawn from metrics.json; one self-contained HTML page."""

import html as html_lib
import json
import os
import re

import pytest
import torch
from click.testing import CliRunner

from rnnlab.cli import main
from rnnlab.compare import CompareConfig, compare
from rnnlab.inspect import inspect_run
from rnnlab.report import as_comparison, build_report, plots
from rnnlab.report.html import render
from rnnlab.tasks import get_task
from rnnlab.training import TrainConfig


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("report") / "c"
    cfg = TrainConfig(task="adding", task_options={"length": 6, "val_size": 16}, steps=10,
                      batch_size=4, eval_every=5)
    compare(CompareConfig(train=cfg, cells=("rnn", "gru")), root, progress="none")
    return root


def test_report_is_redrawn_from_metrics_json_alone(run):
    (run / "curves.png").unlink()
    (run / "report.html").unlink()
    build_report(run, probe=False)
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"
    html = (run / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    sources = re.findall(r'src="([^"]+)"', html)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r'(href|src)="(?!data:)', html)  # no link out: no explorer yet


def test_the_report_links_the_explorer_once_rnnlab_explore_wrote_it(run):
    """Before: the command that writes explore.html, no link; after: the link, live."""
    html = (run / "report.html").read_text()
    assert "explore.html" in html and 'href="explore.html"' not in html
    assert f"<code>rnnlab explore {run}</code> writes explore.html" in html
    result = CliRunner().invoke(main, ["explore", str(run), "--steps", "6",
                                       "--connect-steps", "2", "--window", "3"])
    assert result.exit_code == 0, result.output
    assert (run / "explore.html").is_file()
    html = (run / "report.html").read_text()
    # The one link out: the explorer page of the same folder.
    assert not re.search(r'(href|src)="(?!data:|explore\.html")', html)
    assert '<a href="explore.html">explore.html</a> in this folder' in html
    (run / "explore.html").unlink()
    build_report(run, probe=False)
    assert 'href="explore.html"' not in (run / "report.html").read_text()


def test_table_holds_every_cell_and_the_chance_level(run):
    metrics = json.loads((run / "metrics.json").read_text())
    html = render(run, metrics, [])
    rows = re.findall(r"<tr>(.*?)</tr>", html)
    assert len(rows) == 3 and rows[1].startswith("<td>rnn</td>")
    assert "chance level 0.1667" in html


def test_a_single_training_run_reads_as_a_one_cell_comparison(run):
    single = json.loads((run / "gru-seed0" / "metrics.json").read_text())
    view = as_comparison(single)
    assert [c["cell"] for c in view["cells"]] == ["gru"]
    assert view["cells"][0]["best"] == single["best"]
    assert view["cells"][0]["runs"][0]["history"] == single["history"]
    page = build_report(run / "gru-seed0")
    assert "gates" in page.read_text() and (run / "gru-seed0" / "curves.png").is_file()
    assert "&quot;cell&quot;: &quot;gru&quot;" in page.read_text()  # its own configuration


def test_a_comparison_shows_its_cells_and_no_spread_for_one_seed(run):
    metrics = json.loads((run / "metrics.json").read_text())
    assert [c["best_spread"] for c in metrics["cells"]] == [None, None]
    html = render(run, metrics, [])
    cells = [re.findall(r"<td>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", html)]
    assert [row[4] for row in cells[1:]] == ["–", "–"]  # spread over seeds
    config = json.loads(html_lib.unescape(re.search(r"<pre>(.*?)</pre>", html, re.S).group(1)))
    assert config["cells"] == ["rnn", "gru"] and "cell" not in config["train"]


def test_the_adding_task_marks_its_two_marked_steps():
    task = get_task("adding", {"length": 12, "val_size": 8})
    marks = task.probe_marks()
    x = task.probe()["x"][0]
    assert [t for t, _ in marks] == torch.nonzero(x[:, 1]).flatten().tolist()
    assert len(marks) == 2 and all(text.startswith("marked: ") for _, text in marks)


def test_the_report_takes_the_figures_inspect_drew_until_the_weights_change(run, monkeypatch):
    drawn_marks = {}

    def save_gates(path, cell, gates, marks=()):
        drawn_marks[cell] = marks
        real_save_gates(path, cell, gates, marks)

    real_save_gates = plots.save_gates
    monkeypatch.setattr(plots, "save_gates", save_gates)
    inspect_run(run)
    marks = get_task("adding", {"length": 6, "val_size": 16}).probe_marks()
    assert drawn_marks == {"rnn": marks, "gru": marks} and len(marks) == 2
    figures = [run / name for name in ("gradients.png", "gates_rnn.png", "gates_gru.png")]
    drawn = [p.stat().st_mtime_ns for p in figures]
    build_report(run)
    assert [p.stat().st_mtime_ns for p in figures] == drawn  # taken as inspect drew them
    weights = run / "gru-seed0" / "model.safetensors"
    os.utime(weights, ns=(max(drawn) + 1, max(drawn) + 1))  # as after more training
    build_report(run)
    assert all(p.stat().st_mtime_ns > max(drawn) for p in figures)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru", "lnlstm", "lngru", "mingru",
                                  "minlstm"])
def test_the_gate_figure_draws_every_gate_the_cell_records(cell):
    """The panels are the recorder's names for the cell (GATE_ORDER holds no name the
    layer does not record), each titled; the marks' labels sit apart from the top panel's
    title."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    import rnnlab.nn as rnn_nn
    from rnnlab.inspect import shown_quantities
    from rnnlab.tasks import ModelConfig, SequenceModel

    model = SequenceModel(ModelConfig(cell=cell, input_size=2, hidden_size=5, output_size=1))
    with torch.no_grad(), rnn_nn.record(model, grads=False) as rec:
        model(torch.randn(1, 12, 2))
    gates = shown_quantities(cell, rec, "rnn.l0")
    assert set(plots.GATE_ORDER[cell]) <= set(gates)
    fig = plots.gates_figure(cell, gates, [(1, "marked: 0.25"), (9, "marked: 0.5")])
    axes = fig.axes[:len(plots.GATE_ORDER[cell])]  # the panels, then their colour bars
    assert [ax.get_title(loc="left") for ax in axes] == [
        plots.GATE_TITLES[n] for n in plots.GATE_ORDER[cell]]
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    title_box = axes[0]._left_title.get_window_extent(renderer)  # no public handle on it
    labels = [t for ax in axes[0].child_axes for t in ax.get_xticklabels()]
    assert [t.get_text() for t in labels] == ["marked: 0.25", "marked: 0.5"]
    assert not any(t.get_window_extent(renderer).overlaps(title_box) for t in labels)
