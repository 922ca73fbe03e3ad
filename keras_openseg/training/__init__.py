"""Training OpenSeg: the recipe (`TrainingConfig`, `train`), its checkpoints, and the train / pseudo-label CLIs.

`keras-openseg train` (`training/cli.py`) and `keras-openseg pseudo-label` (`training/pseudo_label.py`) are
the command-line faces of `train` and `write_pseudo_labels`.
"""

from keras_openseg.training.recipe import build_model
from keras_openseg.training.recipe import build_optimizer
from keras_openseg.training.recipe import build_sources
from keras_openseg.training.recipe import build_training_dataset
from keras_openseg.training.recipe import configure_grounding_loss
from keras_openseg.training.recipe import learning_rate_schedule
from keras_openseg.training.recipe import train
from keras_openseg.training.training_checkpoint import TrainingCheckpoint
from keras_openseg.training.training_config import TrainingConfig

__all__ = [
    "TrainingCheckpoint",
    "TrainingConfig",
    "build_model",
    "build_optimizer",
    "build_sources",
    "build_training_dataset",
    "configure_grounding_loss",
    "learning_rate_schedule",
    "train",
]
