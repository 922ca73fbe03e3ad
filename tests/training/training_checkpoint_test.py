"""TrainingCheckpoint: weights and optimizer state round-trip; a NaN loss stops and keeps the last good state."""

import json
import os

import keras
import numpy as np
import pytest

from keras_openseg.training import TrainingCheckpoint


def make_model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="mse")
    return model


def data(count=8, nan_at=None):
    x = np.linspace(-1, 1, count * 3, dtype="float32").reshape(count, 3)
    y = np.ones((count, 2), "float32")
    if nan_at is not None:
        x[nan_at] = np.nan
    return x, y


def test_checkpoints_restore_weights_and_optimizer_state(tmp_path):
    keras.utils.set_random_seed(0)
    model = make_model()
    checkpoint = TrainingCheckpoint(str(tmp_path), every_steps=2, keep=2)
    model.fit(*data(), batch_size=1, epochs=1, steps_per_epoch=5, shuffle=False, callbacks=[checkpoint], verbose=0)
    # Every 2 steps and at the end; the oldest is deleted.
    assert sorted(name for name in os.listdir(tmp_path) if name.startswith("step-")) == [
        "step-00000004.weights.h5",
        "step-00000005.weights.h5",
    ]
    assert TrainingCheckpoint.latest_step(str(tmp_path)) == 5
    restored = make_model()
    assert TrainingCheckpoint.restore(restored, str(tmp_path)) == 5
    for expected, actual in zip(model.get_weights(), restored.get_weights()):
        np.testing.assert_array_equal(expected, actual)
    assert int(keras.ops.convert_to_numpy(restored.optimizer.iterations)) == 5
    for expected, actual in zip(model.optimizer.variables, restored.optimizer.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(expected), keras.ops.convert_to_numpy(actual))
    assert TrainingCheckpoint.restore(make_model(), str(tmp_path / "empty")) == 0


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    model = make_model()
    checkpoint = TrainingCheckpoint(str(tmp_path), every_steps=2)
    x, y = data(nan_at=4)
    model.fit(x, y, batch_size=1, epochs=1, steps_per_epoch=8, shuffle=False, callbacks=[checkpoint], verbose=0)
    assert checkpoint.diverged_at == 5
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 5  # stopped at once
    with open(tmp_path / "checkpoint.json") as file:
        assert json.load(file)["step"] == 4
    restored = make_model()
    TrainingCheckpoint.restore(restored, str(tmp_path))
    assert all(np.isfinite(weight).all() for weight in restored.get_weights())


def test_bad_arguments():
    with pytest.raises(ValueError, match="every_steps"):
        TrainingCheckpoint("x", every_steps=0)


def test_the_recipe_reports_divergence_and_keeps_the_checkpoint(tmp_path):
    import tensorflow as tf

    from keras_openseg.training import TrainingConfig
    from keras_openseg.training.distribution import Distribution
    from keras_openseg.training.recipe import _fit

    model = make_model()
    x, y = data(nan_at=4)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(1).repeat()
    config = TrainingConfig(steps=8, checkpoint_every=2, output=str(tmp_path))
    with pytest.raises(FloatingPointError, match=r"NaN or infinite at step 5.*good checkpoint \(step 4\)"):
        _fit(model, dataset, config, Distribution("none"), initial_step=0, callbacks=(), verbose=0)
    assert TrainingCheckpoint.latest_step(str(tmp_path / "checkpoints")) == 4
    assert not os.path.exists(tmp_path / "preset")
