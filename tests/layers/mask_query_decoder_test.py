import keras
import numpy as np
from keras_hub.src.tests.test_case import TestCase

from keras_openseg.layers import MaskQueryDecoder


class MaskQueryDecoderTest(TestCase):
    def test_layer_behaviors(self):
        self.run_layer_test(
            cls=MaskQueryDecoder,
            init_kwargs={"num_queries": 3, "num_layers": 1, "num_heads": 2, "mlp_dim": 6},
            input_data=keras.random.normal((2, 4, 4, 8)),
            expected_output_shape=((2, 3, 8), (2, 3, 4, 4)),
            # q0, then one block: cross-attention 8, two LayerNorms 4, MLP 4.
            expected_num_trainable_weights=17,
        )

    def test_mask_logits_are_query_feature_dot_products(self):
        features = np.random.default_rng(0).normal(size=(2, 4, 4, 8)).astype("float32")
        decoder = MaskQueryDecoder(num_queries=3, num_layers=1, num_heads=2, mlp_dim=6)
        queries, mask_logits = (keras.ops.convert_to_numpy(x) for x in decoder(features))
        self.assertEqual(mask_logits.shape, (2, 3, 4, 4))
        self.assertAllClose(mask_logits, np.einsum("bnd,bhwd->bnhw", queries, features), atol=1e-4, rtol=1e-4)

    def test_no_blocks_returns_learned_queries(self):
        decoder = MaskQueryDecoder(num_queries=3, num_layers=0)
        queries, _ = decoder(np.zeros((2, 4, 4, 6), "float32"))
        initial = keras.ops.convert_to_numpy(decoder.initial_queries)
        self.assertAllClose(keras.ops.convert_to_numpy(queries), np.broadcast_to(initial, (2, 3, 6)))

    def test_dynamic_spatial_size(self):
        inputs = keras.Input((None, None, 8))
        queries, mask_logits = MaskQueryDecoder(num_queries=3, num_layers=1, num_heads=2)(inputs)
        self.assertEqual(tuple(mask_logits.shape), (None, 3, None, None))
        model = keras.Model(inputs, mask_logits)
        output = model.predict_on_batch(np.ones((3, 6, 3, 8), "float32"))
        self.assertEqual(output.shape, (3, 3, 6, 3))

    def test_bad_arguments(self):
        with self.assertRaisesRegex(ValueError, "features"):
            MaskQueryDecoder(num_queries=3, hidden_dim=8, num_heads=2)(np.zeros((1, 4, 4, 6)))
        with self.assertRaisesRegex(ValueError, "num_heads"):
            MaskQueryDecoder(num_queries=3, hidden_dim=6, num_heads=4)
        with self.assertRaisesRegex(ValueError, "features"):
            MaskQueryDecoder(num_queries=3, num_heads=2)(np.zeros((1, 16, 6)))
