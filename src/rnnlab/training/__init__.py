"""One training loop: ``train(...)`` and the pieces a caller may need around it."""

from rnnlab.training.config import TrainConfig
from rnnlab.training.loop import TrainResult, build_model, step_seed, train

__all__ = ["TrainConfig", "TrainResult", "build_model", "step_seed", "train"]
