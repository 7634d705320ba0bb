"""The parity task: its generator, chance level and the short-train / long-test split."""

import pytest
import torch

from rnnlab._io import InputError
from rnnlab.tasks import SequenceModel, get_task
from rnnlab.tasks.parity import parity_batch
from rnnlab.training import TrainConfig


def test_the_label_is_the_parity_of_the_bits_within_each_length():
    lengths = torch.tensor([1, 3, 5, 5])
    batch = parity_batch(4, 5, torch.Generator().manual_seed(0), lengths)
    x, y = batch["x"][..., 0], batch["y"]
    for row, n in enumerate(lengths.tolist()):
        assert set(x[row, :n].tolist()) <= {0.0, 1.0} and x[row, n:].abs().sum() == 0
        assert int(y[row]) == int(x[row, :n].sum()) % 2
    assert torch.equal(batch["lengths"], lengths)


def test_train_short_validate_long_at_chance_one_half():
    task = get_task("parity", {"train_length": 6, "val_length": 20, "val_size": 4000})
    cfg = TrainConfig(task="parity", batch_size=512)
    batch = task.train_batch(3, cfg, torch.Generator().manual_seed(3))
    assert batch["x"].shape == (512, 6, 1)
    assert set(batch["lengths"].tolist()) == set(range(1, 7))  # every length up to 6
    assert task.val["x"].shape == (4000, 20, 1) and bool((task.val["lengths"] == 20).all())
    assert task.val_short["x"].shape == (4000, 6, 1)
    assert task.chance == 0.5 and float(task.val["y"].float().mean()) == pytest.approx(0.5,
                                                                                       abs=0.03)
    scores = task.evaluate(SequenceModel(task.model_config("lstm", 4)))
    assert set(scores) == {"accuracy", "accuracy_short"}


def test_validation_strings_cannot_be_shorter_than_training_ones():
    with pytest.raises(InputError, match=r"val_length \(4\) must be at least train_length \(8\)"):
        get_task("parity", {"train_length": 8, "val_length": 4})
