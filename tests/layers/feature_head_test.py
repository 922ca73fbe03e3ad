import keras
import numpy as np
from keras_hub.src.tests.test_case import TestCase

from keras_openseg.layers import FeatureHead


class FeatureHeadTest(TestCase):
    def test_layer_behaviors(self):
        self.run_layer_test(
            cls=FeatureHead,
            init_kwargs={"filters": 4, "num_convs": 2, "output_dim": 3},
            input_data=keras.random.normal((2, 4, 4, 4)),  # FPNFusion's test output: jax reuses compiled ops
            expected_output_shape=(2, 4, 4, 3),
            # dense, two convolutions, projection: kernel + bias each.
            expected_num_trainable_weights=8,
        )

    def test_last_layer_is_linear_without_projection(self):
        head = FeatureHead(filters=4, num_convs=2)
        output = keras.ops.convert_to_numpy(head(np.random.default_rng(0).normal(size=(2, 4, 4, 4))))
        self.assertEqual(output.shape, (2, 4, 4, 4))
        self.assertLess(output.min(), 0.0)  # not cut by a ReLU: features dotted with queries need both signs

    def test_no_convs(self):
        head = FeatureHead(filters=4, num_convs=0)
        x = np.random.default_rng(1).normal(size=(1, 3, 3, 2)).astype("float32")
        output = keras.ops.convert_to_numpy(head(x))
        kernel, bias = (keras.ops.convert_to_numpy(w) for w in head.dense.weights)
        self.assertAllClose(output, x @ kernel + bias, atol=1e-5, rtol=1e-5)

    def test_bad_rank(self):
        with self.assertRaisesRegex(ValueError, "inputs"):
            FeatureHead(filters=4)(np.zeros((2, 5, 3)))
