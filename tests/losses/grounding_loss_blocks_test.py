"""The grounding loss over caption blocks (large batches) equals the one-block computation, value and gradients."""

import importlib

import keras
import numpy as np
import pytest
from grounding_loss_test import numpy_grounding_loss
from grounding_loss_test import random_case
from keras import ops

from keras_openseg.losses import grounding_loss

# The module, not the function of the same name that keras_openseg.losses exports.
grounding_loss_module = importlib.import_module("keras_openseg.losses.grounding_loss")


def loss_and_gradients(regions, words, valid, temperature, group_size=None):
    """The loss and its gradients for regions, words and the temperature, traced like a training step."""
    backend = keras.backend.backend()

    def loss(regions, words, temperature):
        return grounding_loss(regions, words, valid, temperature=temperature, group_size=group_size)

    temperature = np.float32(temperature)
    if backend == "jax":
        import jax

        value, grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(regions, words, temperature)
    elif backend == "tensorflow":
        import tensorflow as tf

        @tf.function
        def step(regions, words, temperature):
            with tf.GradientTape() as tape:
                tape.watch([regions, words, temperature])
                value = loss(regions, words, temperature)
            return value, tape.gradient(value, [regions, words, temperature])

        value, grads = step(tf.constant(regions), tf.constant(words), tf.constant(temperature))
    else:
        import torch

        inputs = [torch.tensor(x, requires_grad=True) for x in (regions, words, np.asarray(temperature))]
        value = loss(*inputs)
        value.backward()
        value, grads = value.detach(), [x.grad for x in inputs]
    return float(ops.convert_to_numpy(value)), [ops.convert_to_numpy(g) for g in grads]


@pytest.mark.parametrize("group_size", [None, 7])
@pytest.mark.parametrize("budget", [5 * 3 * 7 * 3, 5 * 3 * 7])  # blocks of 3 captions (one padded), of 1
def test_blocks_match_one_block_and_numpy(monkeypatch, budget, group_size):
    regions, words, valid = random_case(0, batch_size=7)
    valid[2] = False  # an example without words takes no part
    expected_value, expected_grads = loss_and_gradients(regions, words, valid, 0.1, group_size)
    np.testing.assert_allclose(expected_value, numpy_grounding_loss(regions, words, valid, 0.1, group_size), rtol=1e-4)
    monkeypatch.setattr(grounding_loss_module, "_BLOCK_SIMILARITIES", budget)
    assert grounding_loss_module.caption_block_size(1, 7, 5, 3) < 7
    value, grads = loss_and_gradients(regions, words, valid, 0.1, group_size)
    np.testing.assert_allclose(value, expected_value, rtol=1e-5)
    for grad, expected in zip(grads, expected_grads):
        np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-6)
    assert np.abs(grads[2]) > 0  # the temperature learns through the blocks too


def test_block_size_bounds_the_block():
    block_size = grounding_loss_module.caption_block_size
    assert block_size(1, 8, 4, 2, budget=1000) == 8  # one block holds everything
    assert block_size(1, 1024, 128, 16, budget=2**24) == 8  # 1024 * 8 * 128 * 16 = 2^24
    assert block_size(1, 1024, 128, 16, budget=1) == 1
    assert block_size(None, 1024, 128, 16) == 1024  # unknown sizes: one block
