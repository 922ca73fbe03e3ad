import keras
import numpy as np
from keras_hub.src.tests.test_case import TestCase

from keras_openseg.layers import MaskCrossAttentionBlock


def to_numpy(x):
    return keras.ops.convert_to_numpy(x).astype("float64")


def numpy_attention(mha, queries, keys):
    """keras MultiHeadAttention written out in numpy from the layer's own weights."""
    parts = {}
    for name in ("query", "key", "value", "output"):
        dense = getattr(mha, f"_{name}_dense")
        parts[name] = (to_numpy(dense.kernel), to_numpy(dense.bias))
    q = np.einsum("bnd,dhk->bnhk", queries, parts["query"][0]) + parts["query"][1]
    k = np.einsum("bsd,dhk->bshk", keys, parts["key"][0]) + parts["key"][1]
    v = np.einsum("bsd,dhk->bshk", keys, parts["value"][0]) + parts["value"][1]
    scores = np.einsum("bnhk,bshk->bhns", q, k) / np.sqrt(q.shape[-1])
    scores = np.exp(scores - scores.max(-1, keepdims=True))
    weights = scores / scores.sum(-1, keepdims=True)
    attended = np.einsum("bhns,bshk->bnhk", weights, v)
    return np.einsum("bnhk,hkd->bnd", attended, parts["output"][0]) + parts["output"][1]


def numpy_layer_norm(norm, x):
    mean = x.mean(-1, keepdims=True)
    variance = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + norm.epsilon) * to_numpy(norm.gamma) + to_numpy(norm.beta)


def numpy_block(block, queries, features):
    """Post-norm block: [self-attention], cross-attention, MLP; each residual then LayerNorm."""
    keys = features.reshape(features.shape[0], -1, features.shape[-1])
    if block.self_attention:
        queries = numpy_layer_norm(
            block.self_attention_norm, queries + numpy_attention(block.self_attention_layer, queries, queries)
        )
    queries = numpy_layer_norm(
        block.cross_attention_norm, queries + numpy_attention(block.cross_attention_layer, queries, keys)
    )
    hidden = np.maximum(queries @ to_numpy(block.mlp_hidden.kernel) + to_numpy(block.mlp_hidden.bias), 0.0)
    mlp = hidden @ to_numpy(block.mlp_output.kernel) + to_numpy(block.mlp_output.bias)
    return numpy_layer_norm(block.mlp_norm, queries + mlp)


class MaskCrossAttentionBlockTest(TestCase):
    def test_layer_behaviors(self):
        self.run_layer_test(
            cls=MaskCrossAttentionBlock,
            # The decoder test's block has this configuration: jax reuses the compiled ops.
            init_kwargs={"hidden_dim": 8, "num_heads": 2, "mlp_dim": 6, "dropout": 0.1},
            input_data={"queries": keras.random.normal((2, 3, 8)), "features": keras.random.normal((2, 4, 4, 8))},
            expected_output_shape=(2, 3, 8),
            # cross-attention: 8; 2 LayerNorms: 4; MLP: 4. (Self-attention is checked against numpy below.)
            expected_num_trainable_weights=16,
            expected_num_non_trainable_variables=1,  # the dropout seed
        )

    def test_self_attention_serializes(self):
        block = MaskCrossAttentionBlock(hidden_dim=4, num_heads=2, mlp_dim=6, self_attention=True)
        self.run_serialization_test(block)
        block.build((1, 2, 4), (1, 3, 3, 4))
        self.assertLen(block.trainable_weights, 26)  # + self-attention 8, its LayerNorm 2

    def test_matches_numpy(self):
        rng = np.random.default_rng(0)
        queries = rng.normal(size=(2, 3, 8)).astype("float32")
        features = rng.normal(size=(2, 4, 5, 8)).astype("float32")
        # With self-attention the block runs every branch: self-attention, cross-attention, MLP.
        block = MaskCrossAttentionBlock(hidden_dim=8, num_heads=2, mlp_dim=12, self_attention=True)
        output = to_numpy(block(queries, features.reshape(2, 20, 8)))
        expected = numpy_block(block, queries.astype("float64"), features.astype("float64"))
        self.assertAllClose(output, expected, atol=1e-4, rtol=1e-4)
        # [B, H, W, D] features are flattened to the same [B, H*W, D] keys.
        self.assertAllClose(to_numpy(block(queries, features)), output, atol=1e-5, rtol=1e-5)

    def test_bad_arguments(self):
        with self.assertRaisesRegex(ValueError, "num_heads"):
            MaskCrossAttentionBlock(hidden_dim=6, num_heads=4, mlp_dim=8)
        block = MaskCrossAttentionBlock(hidden_dim=4, num_heads=2, mlp_dim=8)
        with self.assertRaisesRegex(ValueError, "features"):
            block(np.zeros((2, 3, 4)), np.zeros((2, 5, 5, 6)))
        with self.assertRaisesRegex(ValueError, "queries"):
            block(np.zeros((2, 4)), np.zeros((2, 5, 5, 4)))
        with self.assertRaisesRegex(ValueError, "batch size"):
            block(np.zeros((2, 3, 4)), np.zeros((3, 5, 5, 4)))
