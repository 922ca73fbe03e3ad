import keras
import numpy as np
from keras_hub.src.tests.test_case import TestCase

from keras_openseg.layers import LearnedPositionEmbedding
from keras_openseg.layers.position_embedding import sincos_position_table


def numpy_sincos(height, width, dim):
    """2D sin/cos code written per entry: first half codes the row, second half the column."""
    quarter = dim // 4
    table = np.zeros((height, width, dim))
    for i in range(height):
        for j in range(width):
            for k in range(quarter):
                frequency = 10000.0 ** (-k / quarter)
                table[i, j, k] = np.sin(i * frequency)
                table[i, j, quarter + k] = np.cos(i * frequency)
                table[i, j, 2 * quarter + k] = np.sin(j * frequency)
                table[i, j, 3 * quarter + k] = np.cos(j * frequency)
    return table


def numpy_bilinear(x, size):
    """Half-pixel bilinear resize of a [h, w, D] table, one output pixel at a time."""
    (in_h, in_w), (out_h, out_w) = x.shape[:2], size
    out = np.zeros((out_h, out_w, x.shape[-1]))

    def source(o, in_size, out_size):
        c = min(max((o + 0.5) * in_size / out_size - 0.5, 0.0), in_size - 1)
        lo = int(np.floor(c))
        return lo, min(lo + 1, in_size - 1), c - lo

    for i in range(out_h):
        y0, y1, fy = source(i, in_h, out_h)
        for j in range(out_w):
            x0, x1, fx = source(j, in_w, out_w)
            top = (1 - fx) * x[y0, x0] + fx * x[y0, x1]
            bottom = (1 - fx) * x[y1, x0] + fx * x[y1, x1]
            out[i, j] = (1 - fy) * top + fy * bottom
    return out


class LearnedPositionEmbeddingTest(TestCase):
    def test_layer_behaviors(self):
        self.run_layer_test(
            cls=LearnedPositionEmbedding,
            init_kwargs={"grid": (3, 4), "initializer": "sincos"},
            input_data=keras.random.normal((2, 4, 4, 8)),
            expected_output_shape=(2, 4, 4, 8),
            expected_num_trainable_weights=1,
        )

    def test_sincos_table(self):
        self.assertAllClose(sincos_position_table(4, 5, 8), numpy_sincos(4, 5, 8), atol=1e-6, rtol=1e-6)
        self.assertEqual(sincos_position_table(3, 3, 6).shape, (3, 3, 6))  # D not a multiple of 4

    def test_added_at_grid_size_and_resized_elsewhere(self):
        layer = LearnedPositionEmbedding(grid=(3, 4), initializer="random_normal")
        zeros = np.zeros((2, 3, 4, 8), "float32")
        at_grid = keras.ops.convert_to_numpy(layer(zeros))
        table = keras.ops.convert_to_numpy(layer.position_table)
        self.assertAllClose(at_grid, np.broadcast_to(table, at_grid.shape))
        features = np.random.default_rng(0).normal(size=(2, 4, 4, 8)).astype("float32")
        output = keras.ops.convert_to_numpy(layer(features))
        self.assertAllClose(output, features + numpy_bilinear(table, (4, 4))[None], atol=1e-5, rtol=1e-5)

    def test_serializes_custom_initializer(self):
        layer = LearnedPositionEmbedding(grid=(2, 2), initializer=keras.initializers.RandomNormal(stddev=0.3))
        revived = LearnedPositionEmbedding.from_config(layer.get_config())
        self.assertAllClose(revived.initializer.stddev, 0.3)

    def test_bad_arguments(self):
        with self.assertRaisesRegex(ValueError, "grid"):
            LearnedPositionEmbedding(grid=(3,))
        with self.assertRaisesRegex(ValueError, "inputs"):
            LearnedPositionEmbedding(grid=(3, 3))(np.zeros((2, 9, 4)))
