"""Training OpenSeg: the recipe (`TrainingConfig`, `train`), its checkpoints, and the train / pseudo-label CLIs.

`keras-openseg train` (`training/cli.py`) and `keras-openseg pseudo-label` (`training/pseudo_label.py`) are
the command-line faces of `train` and `write_pseudo_labels`. `host_memory.fix_mmap_threshold` (every command's
`--low-host-memory`) returns freed tensor buffers to the system.
"""

from keras_openseg.lazy_imports import lazy_attributes

__all__ = [
    "Distribution",
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

# public name -> defining module, imported on first use (the command line loads none of them)
__getattr__, __dir__ = lazy_attributes(
    __name__,
    {
        "build_model": "keras_openseg.training.recipe",
        "build_optimizer": "keras_openseg.training.recipe",
        "build_sources": "keras_openseg.training.recipe",
        "build_training_dataset": "keras_openseg.training.recipe",
        "configure_grounding_loss": "keras_openseg.training.recipe",
        "learning_rate_schedule": "keras_openseg.training.recipe",
        "train": "keras_openseg.training.recipe",
        "Distribution": "keras_openseg.training.distribution",
        "TrainingCheckpoint": "keras_openseg.training.training_checkpoint",
        "TrainingConfig": "keras_openseg.training.training_config",
    },
)
