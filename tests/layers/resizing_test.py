import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from keras_openseg.layers.resizing import resize


def numpy_bilinear(x, size, axes):
    """Half-pixel bilinear resize, one axis at a time, written out with plain loops over output pixels."""
    for axis, out_size in zip(axes, size):
        in_size = x.shape[axis]
        slices = []
        for o in range(out_size):
            c = min(max((o + 0.5) * in_size / out_size - 0.5, 0.0), in_size - 1)
            lo = int(np.floor(c))
            hi = min(lo + 1, in_size - 1)
            f = c - lo
            slices.append((1 - f) * np.take(x, lo, axis=axis) + f * np.take(x, hi, axis=axis))
        x = np.stack(slices, axis=axis)
    return x


def numpy_area(x, size, axes):
    """Exact box filter: repeat every pixel up to the least common multiple, then average blocks."""
    for axis, out_size in zip(axes, size):
        in_size = x.shape[axis]
        common = np.lcm(in_size, out_size)
        x = np.repeat(x, common // in_size, axis=axis)
        shape = list(x.shape)
        shape[axis : axis + 1] = [out_size, common // out_size]
        x = x.reshape(shape).mean(axis=axis + 1)
    return x


@pytest.mark.parametrize("in_size,out_size", [((5, 7), (9, 4)), ((8, 8), (16, 16)), ((6, 9), (3, 3)), ((4, 4), (4, 4))])
def test_bilinear_matches_numpy_and_tf(in_size, out_size):
    x = np.random.default_rng(0).normal(size=(2,) + in_size + (3,)).astype("float32")
    got = ops.convert_to_numpy(resize(x, out_size))
    np.testing.assert_allclose(got, numpy_bilinear(x, out_size, (1, 2)), atol=1e-5)
    expected_tf = tf.image.resize(x, out_size, method="bilinear", antialias=False).numpy()
    np.testing.assert_allclose(got, expected_tf, atol=1e-5)


@pytest.mark.parametrize("in_size,out_size", [((8, 12), (4, 3)), ((7, 10), (3, 4)), ((5, 5), (7, 6))])
def test_area_matches_numpy_and_tf(in_size, out_size):
    masks = np.random.default_rng(1).uniform(size=(2, 3) + in_size).astype("float32")
    got = ops.convert_to_numpy(resize(masks, out_size, axes=(2, 3), interpolation="area"))
    np.testing.assert_allclose(got, numpy_area(masks, out_size, (2, 3)), atol=1e-5)
    channels_last = np.transpose(masks, (0, 2, 3, 1))
    expected_tf = np.transpose(tf.image.resize(channels_last, out_size, method="area").numpy(), (0, 3, 1, 2))
    np.testing.assert_allclose(got, expected_tf, atol=1e-5)


def test_nearest_picks_source_pixels():
    x = np.arange(12, dtype="float32").reshape(1, 3, 4, 1)
    got = ops.convert_to_numpy(resize(x, (6, 8), interpolation="nearest"))
    np.testing.assert_array_equal(got, np.repeat(np.repeat(x, 2, axis=1), 2, axis=2))


def test_bad_interpolation():
    with pytest.raises(ValueError, match="interpolation"):
        resize(np.zeros((1, 2, 2, 1)), (4, 4), interpolation="cubic")


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="dynamic shapes only exist in TF graphs")
def test_dynamic_sizes_in_tf_graph():
    @tf.function(input_signature=[tf.TensorSpec((None, None, None, 2)), tf.TensorSpec((None, None, None, 2))])
    def resize_like(x, like):
        return (
            resize(x, tf.shape(like)[1:3]),
            resize(x, tf.shape(like)[1:3], interpolation="area"),
            resize(x, tf.shape(like)[1:3], interpolation="nearest"),
        )

    x = np.random.default_rng(2).normal(size=(1, 6, 10, 2)).astype("float32")
    bilinear, area, _ = resize_like(x, np.zeros((1, 3, 4, 2), "float32"))
    np.testing.assert_allclose(bilinear.numpy(), numpy_bilinear(x, (3, 4), (1, 2)), atol=1e-5)
    np.testing.assert_allclose(area.numpy(), numpy_area(x, (3, 4), (1, 2)), atol=1e-5)
