"""The recipe's optimizer: linear warm-up then cosine decay (paper sec. 4.1), clipping, no decay of tau."""

import keras
import numpy as np

from keras_openseg.training import TrainingConfig
from keras_openseg.training import build_optimizer
from keras_openseg.training import learning_rate_schedule


def test_warm_up_then_cosine_decay_to_zero():
    config = TrainingConfig(steps=100, warmup_steps=10, learning_rate=0.005)
    schedule = learning_rate_schedule(config)
    learning_rate = lambda step: float(keras.ops.convert_to_numpy(schedule(step)))  # noqa: E731
    np.testing.assert_allclose([learning_rate(0), learning_rate(5), learning_rate(10)], [0.0, 0.0025, 0.005], atol=1e-9)
    # Cosine over the remaining 90 steps: half-way down at step 55, zero at the end.
    np.testing.assert_allclose([learning_rate(55), learning_rate(100)], [0.0025, 0.0], atol=1e-7)


def test_clipping_momentum_and_weight_decay_but_not_on_the_temperature():
    optimizer = build_optimizer(TrainingConfig(clip_norm=2.0, weight_decay=1e-4, momentum=0.8))
    assert optimizer.global_clipnorm == 2.0 and optimizer.momentum == 0.8 and optimizer.weight_decay == 1e-4
    decayed = keras.Variable(np.ones(2, "float32"), name="kernel")
    temperature = keras.Variable(np.ones(()), name="log_temperature")
    optimizer.build([decayed, temperature])
    assert optimizer._use_weight_decay(decayed) and not optimizer._use_weight_decay(temperature)
    assert build_optimizer(TrainingConfig(clip_norm=None)).global_clipnorm is None


def test_adamw_takes_the_same_schedule_decay_and_clipping():
    config = TrainingConfig(optimizer="adamw", steps=100, warmup_steps=10, clip_norm=2.0, weight_decay=1e-4)
    optimizer = build_optimizer(config)
    assert isinstance(optimizer, keras.optimizers.AdamW)
    assert optimizer.global_clipnorm == 2.0 and optimizer.weight_decay == 1e-4
    temperature = keras.Variable(np.ones(()), name="log_temperature")
    optimizer.build([temperature])
    assert not optimizer._use_weight_decay(temperature)
    assert float(keras.ops.convert_to_numpy(optimizer.learning_rate)) == 0.0  # warm-up starts at 0
    assert isinstance(build_optimizer(TrainingConfig(optimizer="adamw", weight_decay=0.0)), keras.optimizers.AdamW)
