"""A seed fixes a training run: resumed in a new process after a kill, repeated in another process, and changed
only by another seed.

The runs of the resume test are separate interpreters, as with `keras-openseg train` and `--resume`: one is
killed outright (SIGKILL at step 3, after the checkpoint of step 2: no clean-up, no atexit), a new one resumes.
Two uninterrupted runs start at once, each with its own hash seed (PYTHONHASHSEED unset) and competing for the
cores, so this also checks what one process cannot see (set-iteration order, thread timing).
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
from training_fakes import WhitespaceExtractor
from training_fakes import random_word_table
from training_fakes import tiny_config

from keras_openseg.training import recipe
from keras_openseg.training import train
from keras_openseg.training.training_checkpoint import TrainingCheckpoint

# One run of `tiny_config` (4 steps, a checkpoint every 2) in a fresh interpreter: `mode` is "run", "kill" (SIGKILL
# after step 3) or "resume". It prints one JSON line: the optimizer step it started from, the steps it ran and a
# digest of the final weights (and of the first kernel's first values, to read a failure).
_RUN = """
import hashlib, json, os, signal, sys
sys.path.insert(0, {tests!r})
import keras
import numpy as np
from training_fakes import WhitespaceExtractor, random_word_table, tiny_config
from keras_openseg.training import train


class Probe(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.start, self.steps = None, 0

    def on_train_begin(self, logs=None):
        self.start = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if {mode!r} == "kill" and self.steps == 3:
            os.kill(os.getpid(), signal.SIGKILL)


probe = Probe()
config = tiny_config({data_dir!r}, {output!r}, resume={mode!r} == "resume")
model = train(config, extractor=WhitespaceExtractor(), table=random_word_table(), callbacks=[probe], verbose=0)
weights = model.get_weights()
digest = hashlib.sha256(b"".join(np.ascontiguousarray(w).tobytes() for w in weights)).hexdigest()
first = [float(v) for v in weights[0].ravel()[:3]]
print("RESULT " + json.dumps({{"start": probe.start, "steps": probe.steps, "digest": digest, "first": first}}))
"""


def start_runs(data_dir, runs):
    """Starts one interpreter per `(mode, output)` at once; PYTHONHASHSEED is left unset in each."""
    tests = os.path.dirname(os.path.abspath(__file__))
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONHASHSEED"}
    return [
        subprocess.Popen(
            [sys.executable, "-c", _RUN.format(tests=tests, mode=mode, data_dir=data_dir, output=str(output))],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        for mode, output in runs
    ]


def finish(process, killed=False):
    """The RESULT of a run (None for a killed one, which must have died of SIGKILL)."""
    stdout, stderr = process.communicate(timeout=600)
    if killed:
        assert process.returncode == -9, f"the run was not killed (exit {process.returncode}): {stderr[-3000:]}"
        return None
    assert process.returncode == 0, stderr[-3000:]
    return json.loads([line for line in stdout.splitlines() if line.startswith("RESULT ")][-1][len("RESULT ") :])


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
def test_killed_run_resumes_in_a_new_process_to_the_same_weights(shapes_data_dir, tmp_path):
    # Wave 1: two uninterrupted runs and one killed at step 3, all at once.
    first, second, killed = start_runs(
        shapes_data_dir, [("run", tmp_path / "a1"), ("run", tmp_path / "a2"), ("kill", tmp_path / "b")]
    )
    uninterrupted, repeated = finish(first), finish(second)
    finish(killed, killed=True)
    assert (uninterrupted["start"], uninterrupted["steps"]) == (0, 4)
    # Identical runs in separate processes give identical weights.
    assert repeated["digest"] == uninterrupted["digest"], (repeated["first"], uninterrupted["first"])

    # The killed run left the checkpoint of step 2; a run without `resume` refuses to overwrite it.
    config = tiny_config(shapes_data_dir, tmp_path / "b")
    assert TrainingCheckpoint.latest_step(tmp_path / "b" / "checkpoints") == 2
    with pytest.raises(ValueError, match="resume"):
        train(config, extractor=WhitespaceExtractor(), table=random_word_table(), verbose=0)
    shutil.copytree(tmp_path / "b", tmp_path / "perturbed")
    # A run that ignored the checkpoint and retrained from step 0 would pass the checks on the resumed run (same
    # seed, same data) but not this one: resumed from a perturbed checkpoint, the run ends with other weights.
    perturb_checkpoint(tmp_path / "perturbed")

    # Wave 2: the resume, and the resume from the perturbed checkpoint.
    resumed, perturbed = (
        finish(p) for p in start_runs(shapes_data_dir, [("resume", tmp_path / "b"), ("resume", tmp_path / "perturbed")])
    )
    # It continued from the checkpoint (step 2 of 4) and ran only the remaining steps, to the same weights.
    assert (resumed["start"], resumed["steps"]) == (2, 2)
    assert resumed["digest"] == uninterrupted["digest"], (resumed["first"], uninterrupted["first"])
    assert os.path.exists(tmp_path / "b" / "preset" / "model.weights.h5")
    assert os.listdir(tmp_path / "b" / "logs")  # TensorBoard
    assert (perturbed["start"], perturbed["steps"]) == (2, 2)
    assert perturbed["digest"] != uninterrupted["digest"]
    assert max(abs(a - b) for a, b in zip(perturbed["first"], uninterrupted["first"])) > 0.01


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


def test_every_iterator_of_a_seeded_dataset_gives_the_same_batches(shapes_data_dir, tmp_path):
    # Keras' fit makes an iterator to build the model and another to train. tf.data's per-iteration reshuffling
    # drew each iterator's seeds from a generator the two shared, so the training batches depended on the
    # first iterator's read-ahead: rarely, a run (CI's JAX resume) trained on other batches.
    config = tiny_config(shapes_data_dir, tmp_path / "run")
    dataset = recipe.build_training_dataset(
        config, random_word_table(), recipe.build_sources(config, WhitespaceExtractor())
    )
    first = batch_digest(dataset, num_batches=20)  # 40 examples: past the end of the 32-example first pass
    assert batch_digest(dataset, num_batches=20) == first
    # The passes still differ from each other: the second pass is shuffled anew.
    images = [x["images"] for x, _ in dataset.take(32).as_numpy_iterator()]
    first_pass, second_pass = np.concatenate(images[:16]), np.concatenate(images[16:])
    assert not np.array_equal(first_pass, second_pass)
