"""The cross-attention taken in blocks of keys equals Keras' MultiHeadAttention: outputs and gradients."""

import importlib

import keras
import numpy as np
import pytest
from keras import ops

from keras_openseg.layers import MaskCrossAttentionBlock

# The module, whose block size the tests shrink.
mask_cross_attention = importlib.import_module("keras_openseg.layers.mask_cross_attention")


def numpy_attention(query, features, layer):
    """Multi-head attention written out in float64 from the layer's own weights."""
    weights = {w.path.split("/")[-2] + "/" + w.name: ops.convert_to_numpy(w).astype("float64") for w in layer.weights}

    def project(x, name):
        return np.einsum("bsd,dhk->bshk", x, weights[f"{name}/kernel"]) + weights[f"{name}/bias"]

    q = project(query, "query") / np.sqrt(layer._key_dim)
    k, v = project(features, "key"), project(features, "value")
    scores = np.einsum("bnhk,bshk->bhns", q, k)
    scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
    scores /= scores.sum(axis=-1, keepdims=True)
    attended = np.einsum("bhns,bshk->bnhk", scores, v)
    return np.einsum("bnhk,hkd->bnd", attended, weights["attention_output/kernel"]) + weights["attention_output/bias"]


@pytest.mark.parametrize("num_keys", [40, 37])  # whole blocks, and a last short block
def test_blocks_match_numpy(monkeypatch, num_keys):
    monkeypatch.setattr(mask_cross_attention, "_KEY_BLOCK_SIZE", 8)
    rng = np.random.default_rng(0)
    query = rng.normal(size=(2, 5, 8)).astype("float32")
    features = (3 * rng.normal(size=(2, num_keys, 8))).astype("float32")  # large scores: the running max matters
    layer = mask_cross_attention.BlockwiseKeyAttention(num_heads=2, key_dim=4)
    got = ops.convert_to_numpy(layer(query, features))
    expected = numpy_attention(query.astype("float64"), features.astype("float64"), layer)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_block_gradients_match_one_block(monkeypatch):
    rng = np.random.default_rng(1)
    queries = rng.normal(size=(2, 4, 8)).astype("float32")
    features = rng.normal(size=(2, 6, 6, 8)).astype("float32")
    # Not the sum of squares: the block ends in a LayerNorm, whose output has a fixed norm.
    projection = rng.normal(size=(2, 4, 8)).astype("float32")
    keras.utils.set_random_seed(0)
    block = MaskCrossAttentionBlock(hidden_dim=8, num_heads=2, mlp_dim=16)
    block(queries, features)

    def loss_and_gradients():
        backend = keras.backend.backend()
        if backend == "jax":
            import jax

            trainable = [v.value for v in block.trainable_variables]

            def loss(trainable, features):
                out, _ = block.stateless_call(trainable, [], queries, features)
                return ops.sum(out * projection)

            value, (grads, feature_grad) = jax.value_and_grad(loss, argnums=(0, 1))(trainable, features)
            return value, list(grads) + [feature_grad]
        if backend == "tensorflow":
            import tensorflow as tf

            x = tf.constant(features)
            with tf.GradientTape() as tape:
                tape.watch(x)
                value = tf.reduce_sum(block(queries, x) * projection)
            return value, tape.gradient(value, block.trainable_variables + [x])
        import torch

        x = torch.tensor(features, requires_grad=True)
        value = torch.sum(block(queries, x) * torch.tensor(projection))
        grads = torch.autograd.grad(value, [v.value for v in block.trainable_variables] + [x])
        return value.detach(), list(grads)

    expected_value, expected_grads = loss_and_gradients()
    monkeypatch.setattr(mask_cross_attention, "_KEY_BLOCK_SIZE", 10)  # 36 keys: blocks of 10, 10, 10, 6
    value, grads = loss_and_gradients()
    np.testing.assert_allclose(ops.convert_to_numpy(value), ops.convert_to_numpy(expected_value), rtol=1e-5)
    # The key bias's gradient is zero up to rounding (softmax ignores a constant added to every score): the
    # tolerance is relative to the largest gradient of all, not to each tensor's own.
    scale = max(float(np.abs(ops.convert_to_numpy(g)).max()) for g in expected_grads)
    for grad, expected in zip(grads, expected_grads):
        expected = ops.convert_to_numpy(expected)
        np.testing.assert_allclose(ops.convert_to_numpy(grad), expected, rtol=1e-4, atol=1e-6 * scale)
