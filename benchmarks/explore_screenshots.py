"""The explorer's screenshots in docs/ (``docs/explore-*.png``), taken from real runs.

    .venv/bin/python benchmarks/explore_screenshots.py                 # train, then shoot
    .venv/bin/python benchmarks/explore_screenshots.py --runs runs     # reuse runs/char, runs/cmp

The two runs are the README's: a charlm run on ``docs/examples/charlm.txt`` (hidden 96)
and a default comparison (adding: RNN, LSTM and GRU), trained with their tasks' default
budgets unless ``--steps`` caps them; a folder of ``--runs`` that already holds a run is
used as it is. Each run's explorer page is written into its folder (``rnnlab explore``),
opened in headless Chromium (Playwright and the system's ``chromium``, as in
``tests/explore``), driven to a telling state, and each view's section is captured at
1200 pixels wide. Not a test: it writes the PNGs for a person to look at and commit.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from rnnlab.compare import CompareConfig, compare
from rnnlab.explore import explore
from rnnlab.runs import holds_run
from rnnlab.training import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def trained_runs(runs: Path, steps: int | None) -> tuple[Path, Path]:
    """runs/char and runs/cmp: taken as they are, else trained as the README trains them."""
    budget = {} if steps is None else {"steps": steps}
    char, cmp = runs / "char", runs / "cmp"
    if not holds_run(char):
        config = TrainConfig.for_task("charlm", task_options={
            "path": str(ROOT / "docs" / "examples" / "charlm.txt")}, hidden=96, **budget)
        train(config, char, progress="lines")
    if not holds_run(cmp):
        compare(CompareConfig(train=TrainConfig.for_task("adding", **budget)), cmp,
                progress="lines")
    return char, cmp


def wait_for_redraw(tab, view: str, before: int) -> None:
    tab.wait_for_function(
        "a => rnnlabExplorer.timings.slice(a[0]).some(x => x.view === a[1])", arg=[before, view])


def shoot(tab, section: str, name: str) -> None:
    path = DOCS / f"explore-{name}.png"
    tab.locator(f"#{section}").screenshot(path=str(path))
    print(f"wrote {path.relative_to(ROOT)}", flush=True)


def char_views(browser, page: Path) -> None:
    tab = browser.new_page(viewport={"width": 1200, "height": 900})
    tab.goto(page.as_uri())
    tab.wait_for_selector("body[data-ready='1']", timeout=60_000)
    before = tab.evaluate("rnnlabExplorer.timings.length")
    tab.select_option("#rank", "|correlation| with position in line")
    wait_for_redraw(tab, "cells", before)
    tab.hover("#input span[data-t='40']")
    shoot(tab, "view-cells", "cells")
    text = tab.evaluate("rnnlabExplorer.META.text")
    start = max(text.find(" the "), 0) + 1  # a word the model has seen often
    tab.select_option("#rank", "variance")
    tab.fill("#span-from", str(start))
    tab.fill("#span-to", str(start + 2))
    tab.fill("#threshold", "0.2")
    tab.click("#match")
    tab.wait_for_function("document.querySelector('#match-units').textContent.length > 0")
    shoot(tab, "view-match", "match")
    shoot(tab, "view-stats", "stats")
    tab.fill("#prime", "The ")
    tab.fill("#length", "300")
    tab.click("#sample")
    tab.wait_for_selector("#sampled span")
    shoot(tab, "view-sample", "sample")
    tab.close()


def compare_views(browser, page: Path) -> None:
    tab = browser.new_page(viewport={"width": 1200, "height": 900})
    tab.goto(page.as_uri())
    tab.wait_for_selector("body[data-ready='1']", timeout=60_000)
    tab.evaluate("rnnlabExplorer.setStep(40)")
    tab.select_option("#group", "top")
    tab.fill("#group-k", "8")
    tab.wait_for_function("document.querySelector('#diagram-title-0').textContent"
                          ".includes('mean of 8 units')")
    shoot(tab, "view-step", "step")
    canvas = tab.locator("#connect-1")
    box = canvas.bounding_box()
    canvas.hover(position={"x": box["width"] * 0.8, "y": box["height"] / 2})
    tab.wait_for_function("rnnlabExplorer.state.target !== null")
    shoot(tab, "view-connect", "connect")
    tab.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path,
                        help="folder holding (or to hold) char/ and cmp/ (default: a temporary "
                             "folder, trained now)")
    parser.add_argument("--steps", type=int, help="cap each run's training steps")
    args = parser.parse_args()
    tmp = None if args.runs else Path(tempfile.mkdtemp())
    try:
        char, cmp = trained_runs(args.runs or tmp, args.steps)
        pages = [explore(char).save(char / "explore.html", force=True),
                 explore(cmp, connect_steps=60).save(cmp / "explore.html", force=True)]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium")
                                        or "/usr/bin/chromium", args=CHROMIUM_ARGS)
            char_views(browser, pages[0])
            compare_views(browser, pages[1])
            browser.close()
    finally:
        if tmp is not None:
            shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
