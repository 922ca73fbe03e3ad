"""MaskShapeEmbedding and mask_crops: the crop equation against numpy loops, invariance, the zero start."""

import keras
import numpy as np
import pytest
from keras_hub.src.tests.test_case import TestCase

from keras_openseg.layers import MaskShapeEmbedding
from keras_openseg.layers import mask_crops


def numpy_crops(masks, crop_size, extent):
    """`mask_crops` with plain loops: moments, one radius, tent-weighted samples of every crop cell."""
    batch, num, height, width = masks.shape
    out = np.zeros((batch, num, crop_size, crop_size))
    for b in range(batch):
        for n in range(num):
            m = masks[b, n].astype(np.float64)
            total = max(m.sum(), 1e-6)
            rows, columns = np.arange(height) + 0.5, np.arange(width) + 0.5
            mu_y = (m.sum(1) * rows).sum() / total
            mu_x = (m.sum(0) * columns).sum() / total
            var_y = (m.sum(1) * (rows - mu_y) ** 2).sum() / total
            var_x = (m.sum(0) * (columns - mu_x) ** 2).sum() / total
            radius = extent * np.sqrt(max(var_y, var_x)) + 0.5
            for u in range(crop_size):
                y = mu_y + radius * (2 * (u + 0.5) / crop_size - 1)
                for v in range(crop_size):
                    x = mu_x + radius * (2 * (v + 0.5) / crop_size - 1)
                    value = 0.0
                    for i in range(height):
                        for j in range(width):
                            weight = max(0.0, 1 - abs(y - rows[i])) * max(0.0, 1 - abs(x - columns[j]))
                            value += weight * m[i, j]
                    out[b, n, u, v] = value
    return out


def disc(size, center, radius):
    rows, columns = np.mgrid[:size, :size] + 0.5
    return ((rows - center[0]) ** 2 + (columns - center[1]) ** 2 <= radius**2).astype("float32")


def square(size, top_left, side):
    mask = np.zeros((size, size), "float32")
    mask[top_left[0] : top_left[0] + side, top_left[1] : top_left[1] + side] = 1.0
    return mask


class MaskShapeEmbeddingTest(TestCase):
    def test_layer_behaviors(self):
        self.run_layer_test(
            cls=MaskShapeEmbedding,
            init_kwargs={"output_dim": 5, "crop_size": 8, "filters": (4, 6)},
            input_data=keras.random.uniform((2, 3, 12, 10)),
            expected_output_shape=(2, 3, 5),
            expected_num_trainable_weights=6,
        )

    def test_crops_match_numpy(self):
        rng = np.random.default_rng(0)
        for shape, crop_size, extent in (((1, 1, 3, 4), 4, 2.5), ((2, 3, 9, 7), 6, 2.0), ((1, 2, 12, 12), 8, 1.5)):
            masks = rng.uniform(size=shape).astype("float32") ** 3
            expected = numpy_crops(masks, crop_size, extent)
            output = keras.ops.convert_to_numpy(mask_crops(masks, crop_size, extent))
            self.assertAllClose(output, expected, atol=1e-4, rtol=1e-4)

    def test_crops_do_not_depend_on_position_or_size(self):
        # A square twice as large elsewhere crops like the small one; a disc of the same area does not.
        masks = np.stack([square(32, (2, 3), 8), square(32, (12, 10), 16), disc(32, (20, 12), 9.0)])[None]
        crops = keras.ops.convert_to_numpy(mask_crops(masks, crop_size=12))
        same = np.abs(crops[0, 0] - crops[0, 1]).mean()
        other = np.abs(crops[0, 1] - crops[0, 2]).mean()
        assert same < 0.05, same
        assert other > 3 * same, (same, other)

    def test_empty_mask_gives_a_zero_crop(self):
        crops = keras.ops.convert_to_numpy(mask_crops(np.zeros((1, 2, 6, 6), "float32"), crop_size=4))
        assert np.all(np.isfinite(crops)) and np.abs(crops).max() == 0.0

    def test_starts_at_zero_and_learns(self):
        masks = np.stack([square(16, (2, 2), 6), disc(16, (8, 8), 5.0)])[None]
        layer = MaskShapeEmbedding(output_dim=3, crop_size=8)
        self.assertAllClose(layer(masks), np.zeros((1, 2, 3)))
        rng = np.random.default_rng(1)
        layer.output_dense.kernel.assign(rng.normal(size=layer.output_dense.kernel.shape).astype("float32"))
        output = keras.ops.convert_to_numpy(layer(masks))
        assert np.abs(output[0, 0] - output[0, 1]).max() > 1e-3  # a square and a disc embed differently

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="output_dim"):
            MaskShapeEmbedding(output_dim=0)
        with pytest.raises(ValueError, match="crop_size"):
            MaskShapeEmbedding(output_dim=2, crop_size=2, filters=(4, 4, 4))
        with pytest.raises(ValueError, match="extent"):
            MaskShapeEmbedding(output_dim=2, extent=0.0)
        with pytest.raises(ValueError, match="masks"):
            MaskShapeEmbedding(output_dim=2)(np.zeros((2, 4, 4), "float32"))
