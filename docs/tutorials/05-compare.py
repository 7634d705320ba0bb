# %% [markdown]
# # 5. Apply both and compare
#
# The guide ends by applying the LSTM and the GRU to a real problem and comparing them.
# `rnnlab compare` does this fairly: the same data split, seeds, optimiser and budget for
# every cell, and sizes matched by parameter count. Here it forecasts the `load` column
# of a small CSV of daily readings shipped with rnnlab (`docs/examples/forecast.csv`:
# a header row, one row per day, oldest first). On your own file the command is
#
# ```sh
# rnnlab compare --task forecast --data my.csv -o columns=load -o horizon=7 --cells lstm,gru
# ```
#
# We run the same command in this process (click's `main` is the `rnnlab` command), with
# small models (about 6000 parameters each) and a budget of 60 training steps so that
# the page builds quickly; without `--params` and `--steps` it uses the task's defaults.
# Run this from the repository root.

# %%
import json
import tempfile
from pathlib import Path

from IPython.display import Image, display

from rnnlab.cli import main

data = Path("docs/examples/forecast.csv")
print(data.read_text().splitlines()[:3])
workdir = tempfile.TemporaryDirectory()          # removed when Python exits
run_dir = Path(workdir.name) / "compare-load"
main(["compare", "--task", "forecast", "--data", str(data), "-o", "columns=load",
      "-o", "horizon=7", "--cells", "lstm,gru", "--params", "6000", "--steps", "60",
      "--progress", "none", "--out", str(run_dir)], standalone_mode=False)

# %% [markdown]
# ## Reading the report
#
# The run folder holds `report.html` (open it in a browser), the plots as PNG files,
# `metrics.json` (every number of the report) and one subfolder per cell and seed with
# that run's weights and configuration.

# %%
print(sorted(path.name for path in run_dir.iterdir()))
metrics = json.loads((run_dir / "metrics.json").read_text())
print(sorted(metrics))

# %% [markdown]
# The metric is the RMSE of the 7-day forecast in units of the column's training
# standard deviation; the **naive** forecast, repeating the last value seen, is the level
# to beat (below 1 × naive is better than naive). The learning curves show validation
# against steps and against wall time: a cell that is cheaper per step gets further in
# the same time.

# %%
for png in sorted(run_dir.glob("*.png")):
    print(png.name)
    display(Image(filename=png))

# %% [markdown]
# The gradient plot shows ‖∂L/∂h_t‖ over the input window at initialisation and after
# training (how far back the loss reaches), and the gate heatmaps show each cell's gates
# over one validation sequence. `rnnlab inspect RUN_DIR` redraws them from the saved
# weights.
