import keras
import numpy as np
from keras_hub.src.tests.test_case import TestCase

from keras_openseg.layers import MaskPooling


def numpy_bilinear(x, size, axes):
    """Half-pixel bilinear resize, one axis at a time, with plain loops over output pixels."""
    for axis, out_size in zip(axes, size):
        in_size = x.shape[axis]
        slices = []
        for o in range(out_size):
            c = min(max((o + 0.5) * in_size / out_size - 0.5, 0.0), in_size - 1)
            lo = int(np.floor(c))
            hi = min(lo + 1, in_size - 1)
            slices.append((1 - (c - lo)) * np.take(x, lo, axis=axis) + (c - lo) * np.take(x, hi, axis=axis))
        x = np.stack(slices, axis=axis)
    return x


class MaskPoolingTest(TestCase):
    def test_layer_behaviors(self):
        self.run_layer_test(
            cls=MaskPooling,
            init_kwargs={},
            input_data={"masks": keras.random.uniform((2, 3, 4, 4)), "features": keras.random.normal((2, 4, 4, 5))},
            expected_output_shape=(2, 3, 5),
        )

    def test_matches_numpy_einsum(self):
        rng = np.random.default_rng(0)
        for batch_size, num_masks, size, dim in ((1, 1, (1, 1), 1), (2, 5, (6, 4), 3), (3, 2, (8, 8), 7)):
            masks = rng.uniform(size=(batch_size, num_masks) + size).astype("float32")
            features = rng.normal(size=(batch_size,) + size + (dim,)).astype("float32")
            output = keras.ops.convert_to_numpy(MaskPooling()(masks, features))
            self.assertAllClose(output, np.einsum("bnhw,bhwd->bnd", masks, features), atol=1e-4, rtol=1e-5)
            listed = keras.ops.convert_to_numpy(MaskPooling()([masks, features]))
            self.assertAllClose(listed, output)

    def test_masks_at_another_resolution(self):
        rng = np.random.default_rng(1)
        masks = rng.uniform(size=(2, 3, 12, 10)).astype("float32")
        features = rng.normal(size=(2, 6, 4, 5)).astype("float32")
        output = keras.ops.convert_to_numpy(MaskPooling()(masks, features))
        resized = numpy_bilinear(masks, (6, 4), (2, 3))
        self.assertAllClose(output, np.einsum("bnhw,bhwd->bnd", resized, features), atol=1e-4, rtol=1e-5)

    def test_bad_arguments(self):
        with self.assertRaisesRegex(ValueError, "batch size"):
            MaskPooling()(np.zeros((2, 3, 4, 4)), np.zeros((3, 4, 4, 5)))
        with self.assertRaisesRegex(ValueError, "masks"):
            MaskPooling()(np.zeros((2, 4, 4)), np.zeros((2, 4, 4, 5)))
        with self.assertRaisesRegex(ValueError, "features"):
            MaskPooling()(np.zeros((2, 3, 4, 4)), np.zeros((2, 16, 5)))
