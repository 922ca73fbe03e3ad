"""Step checkpoints that a killed or diverged run resumes from exactly."""

import glob
import json
import math
import os

import keras

STATE_FILE = "checkpoint.json"


class TrainingCheckpoint(keras.callbacks.Callback):
    """Saves the model and optimizer state every `every_steps` steps; stops the run on a non-finite loss.

    Each checkpoint is one Keras weights file (`model.save_weights` holds the layers' and the optimizer's
    variables: momentum, step counter, hence the learning-rate schedule position) named after the step,
    written under a temporary name and renamed, and then recorded in `checkpoint.json`: a run killed at any
    moment leaves the previous checkpoint intact and readable. The input position is the step itself (the
    pipeline is deterministic and `train` skips the consumed batches on resume).

    A NaN or infinite loss stops training at once, and no checkpoint is written after it, so the last
    checkpoint is the last good state; `diverged_at` says at which step it happened.

    Args:
        directory: str. Folder of the checkpoints (created).
        every_steps: int. Steps between checkpoints.
        initial_step: int. Steps already done (when resuming). Defaults to `0`.
        keep: int. Checkpoints kept on disk (older ones are deleted). Defaults to `2`.
        write: bool. Whether this process writes (False on the non-chief hosts of a multi-host run).
            Defaults to `True`.

    Example:

    ```python
    checkpoint = TrainingCheckpoint("run/checkpoints", every_steps=100)
    model.fit(dataset, epochs=10, steps_per_epoch=100, callbacks=[checkpoint])
    step = TrainingCheckpoint.restore(model, "run/checkpoints")  # in a new process, after compile
    ```
    """

    def __init__(self, directory, every_steps, initial_step=0, keep=2, write=True):
        super().__init__()
        if not isinstance(every_steps, int) or every_steps < 1:
            raise ValueError(f"`every_steps` must be a positive int. Received: every_steps={every_steps!r}")
        if keep < 1:
            raise ValueError(f"`keep` must be >= 1. Received: keep={keep}")
        self.directory = str(directory)
        self.every_steps = every_steps
        self.initial_step = initial_step
        self.keep = keep
        self.write = write
        self.step = initial_step
        self.saved_step = initial_step
        self.diverged_at = None

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.diverged_at = self.step
            self.model.stop_training = True
            return
        if self.step % self.every_steps == 0:
            self.save()

    def on_train_end(self, logs=None):
        if self.diverged_at is None and self.step != self.saved_step:
            self.save()

    def save(self):
        """Writes the checkpoint of the current step (atomically) and forgets the oldest ones."""
        self.saved_step = self.step
        if not self.write:
            return
        os.makedirs(self.directory, exist_ok=True)
        name = f"step-{self.step:08d}.weights.h5"
        partial = os.path.join(self.directory, f"partial-{name}")
        self.model.save_weights(partial, overwrite=True)
        os.replace(partial, os.path.join(self.directory, name))
        _write_json_atomically(os.path.join(self.directory, STATE_FILE), {"step": self.step, "weights": name})
        for old in sorted(glob.glob(os.path.join(self.directory, "step-*.weights.h5")))[: -self.keep]:
            os.remove(old)

    @staticmethod
    def latest_step(directory):
        """The step of the last complete checkpoint in `directory`, or 0 when there is none."""
        path = os.path.join(str(directory), STATE_FILE)
        if not os.path.exists(path):
            return 0
        with open(path, encoding="utf-8") as file:
            return int(json.load(file)["step"])

    @staticmethod
    def restore(model, directory):
        """Loads the last checkpoint into a compiled `model` (optimizer included); returns its step.

        Returns 0 and changes nothing when `directory` holds no checkpoint.
        """
        path = os.path.join(str(directory), STATE_FILE)
        if not os.path.exists(path):
            return 0
        with open(path, encoding="utf-8") as file:
            state = json.load(file)
        weights = os.path.join(str(directory), state["weights"])
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        try:
            model.load_weights(weights)
        except (OSError, ValueError) as error:
            raise ValueError(
                f"The checkpoint {weights} does not fit this model ({error}); resume with the config the run "
                "was started with (it is saved as training_config.json beside the checkpoints)."
            ) from error
        return int(state["step"])


def _write_json_atomically(path, value):
    partial = f"{path}.partial"
    with open(partial, "w", encoding="utf-8") as file:
        json.dump(value, file)
    os.replace(partial, path)
