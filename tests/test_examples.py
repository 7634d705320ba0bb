"""The example data files in docs/examples load with their tasks, in the layouts documented."""

from pathlib import Path

import pytest

from rnnlab.tasks import get_task
from rnnlab.training import TrainConfig

EXAMPLES = Path(__file__).parents[1] / "docs" / "examples"
# file -> (task, extra options, what loading it must give)
CASES = {
    "forecast.csv": ("forecast", {}, {"columns": ["temperature", "load"]}),
    "classify.csv": ("classify", {}, {"classes": ["sine", "square"], "features": 1}),
    "classify-long.csv": ("classify", {"id": "id"}, {"classes": ["sine", "square"],
                                                     "features": 2}),
    "classify.npz": ("classify", {}, {"classes": ["sine", "square"], "features": 2}),
    "charlm.txt": ("charlm", {}, {}),
}


def test_every_example_file_is_covered():
    assert sorted(p.name for p in EXAMPLES.iterdir()) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_an_example_file_loads_with_its_task(name):
    task_name, options, expected = CASES[name]
    task = get_task(task_name, {"path": str(EXAMPLES / name), **options})
    for attribute, value in expected.items():
        assert getattr(task, attribute) == value, (name, attribute)
    if task_name == "classify":
        assert len(task.train["y"]) + len(task.val["y"]) >= 24
    if task_name == "charlm":  # enough text for the default batch of 32 columns of 101
        task.check(TrainConfig.for_task("charlm"))
