"""A seed fixes a training run: resumed, repeated in another process, and changed only by another seed."""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import h5py
import keras
import numpy as np
import pytest
from training_fakes import WhitespaceExtractor
from training_fakes import random_word_table
from training_fakes import tiny_config

from keras_openseg.training import recipe
from keras_openseg.training import train


class KillAtStep(keras.callbacks.Callback):
    """Interrupts training after `step` steps, as a killed process would (no clean-up runs)."""

    def __init__(self, step):
        super().__init__()
        self.step, self.seen = step, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.step:
            raise KeyboardInterrupt("killed")


class StepLog(keras.callbacks.Callback):
    """Records the optimizer step a run starts from and how many steps it runs."""

    def __init__(self):
        super().__init__()
        self.start, self.steps = None, 0

    def on_train_begin(self, logs=None):
        self.start = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1


def assert_same_weights(expected_model, actual_model):
    for expected, actual in zip(expected_model.get_weights(), actual_model.get_weights(), strict=True):
        np.testing.assert_array_equal(actual, expected)


def perturb_checkpoint(run_dir):
    """Adds 0.05 to every kernel of the run's last checkpoint: a resume that reads it must end elsewhere."""
    checkpoints = os.path.join(run_dir, "checkpoints")
    with open(os.path.join(checkpoints, "checkpoint.json"), encoding="utf-8") as file:
        name = json.load(file)["weights"]
    changed = []
    with h5py.File(os.path.join(checkpoints, name), "r+") as weights:

        def visit(path, item):
            if isinstance(item, h5py.Dataset) and path.startswith("layers/") and item.ndim >= 2:
                item[...] = item[()] + 0.05
                changed.append(path)

        weights.visititems(visit)
    assert changed


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(shapes_data_dir, tmp_path):
    table = random_word_table()
    extractor = WhitespaceExtractor()
    uninterrupted = train(tiny_config(shapes_data_dir, tmp_path / "a"), extractor=extractor, table=table, verbose=0)

    config = tiny_config(shapes_data_dir, tmp_path / "b")
    with pytest.raises(KeyboardInterrupt):  # killed mid-epoch, after the checkpoint of step 2
        train(config, extractor=extractor, table=table, callbacks=[KillAtStep(3)], verbose=0)
    with pytest.raises(ValueError, match="resume"):
        train(config, extractor=extractor, table=table, verbose=0)
    shutil.copytree(tmp_path / "b", tmp_path / "perturbed")

    log = StepLog()
    resumed = train(config.replace(resume=True), extractor=extractor, table=table, callbacks=[log], verbose=0)
    # It continued from the checkpoint (step 2 of 4) and ran only the remaining steps, to the same weights.
    assert (log.start, log.steps) == (2, 2)
    assert_same_weights(uninterrupted, resumed)
    assert os.path.exists(tmp_path / "b" / "preset" / "model.weights.h5")
    assert os.listdir(tmp_path / "b" / "logs")  # TensorBoard

    # A run that ignored the checkpoint and retrained from step 0 would pass the checks above (same seed, same
    # data) but not this one: resumed from a perturbed checkpoint, the run ends with other weights.
    perturb_checkpoint(tmp_path / "perturbed")
    perturbed_config = tiny_config(shapes_data_dir, tmp_path / "perturbed", resume=True)
    perturbed = train(perturbed_config, extractor=extractor, table=table, verbose=0)
    differences = [
        np.max(np.abs(a - b)) for a, b in zip(uninterrupted.get_weights(), perturbed.get_weights()) if a.ndim >= 2
    ]
    assert max(differences) > 0.01


def batch_digest(dataset, num_batches=3):
    digest = hashlib.sha256()
    for x, y in dataset.take(num_batches).as_numpy_iterator():
        for value in (*x.values(), *y.values()):
            digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


def test_the_seed_decides_the_data(shapes_data_dir, tmp_path):
    table = random_word_table()

    def digest(seed):
        config = tiny_config(shapes_data_dir, tmp_path / f"seed{seed}", seed=seed)
        sources = recipe.build_sources(config, WhitespaceExtractor())
        return batch_digest(recipe.build_training_dataset(config, table, sources))

    assert digest(0) == digest(0)
    assert digest(0) != digest(1)


# Trains the tiny config and prints a digest of the final weights (run in fresh interpreters by the test below).
_TRAIN_AND_DIGEST = """
import hashlib, sys
sys.path.insert(0, {tests!r})
import numpy as np
from training_fakes import WhitespaceExtractor, random_word_table
from keras_openseg.training import TrainingConfig, train
config = TrainingConfig(datasets=("openseg_shapes/tiny",), data_dir={data_dir!r}, image_size=32, steps=3,
                        batch_size=2, checkpoint_every=3, max_masks=3, max_words=3, output={output!r}, seed=5)
model = train(config, extractor=WhitespaceExtractor(), table=random_word_table(), verbose=0)
digest = hashlib.sha256()
for weight in model.get_weights():
    digest.update(np.ascontiguousarray(weight).tobytes())
print("DIGEST", digest.hexdigest())
"""


@pytest.mark.slow
def test_identical_runs_in_separate_processes_give_identical_weights(shapes_data_dir, tmp_path):
    # Two interpreters at once, each with its own hash seed (PYTHONHASHSEED unset) and competing for the cores:
    # what the resume test cannot see from inside one process (set-iteration order, thread timing).
    tests = os.path.dirname(os.path.abspath(__file__))
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONHASHSEED"}
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _TRAIN_AND_DIGEST.format(tests=tests, data_dir=shapes_data_dir, output=str(tmp_path / f"run{i}")),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        for i in range(2)
    ]
    digests = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-3000:]
        digests.append([line for line in stdout.splitlines() if line.startswith("DIGEST")][-1])
    assert digests[0] == digests[1]
