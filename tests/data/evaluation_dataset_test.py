"""The evaluation pipeline: images padded to a multiple of 32, labels resized alike and padded with ignore."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_openseg.data import make_evaluation_dataset

pytestmark = pytest.mark.backend_independent


def _examples(shapes):
    def generate():
        for index, (height, width) in enumerate(shapes):
            semantic = (np.arange(height * width).reshape(height, width, 1) % 3).astype(np.uint16)
            yield {"image": np.full((height, width, 3), index + 1, np.uint8), "semantic": semantic}

    signature = {
        "image": tf.TensorSpec([None, None, 3], tf.uint8),
        "semantic": tf.TensorSpec([None, None, 1], tf.uint16),
    }
    return tf.data.Dataset.from_generator(generate, output_signature=signature)


def test_native_size_is_padded_to_the_divisor_with_ignore_labels():
    batches = list(tfds.as_numpy(make_evaluation_dataset(_examples([(40, 70), (33, 20)]), batch_size=2)))
    assert len(batches) == 1
    batch = batches[0]
    assert batch["images"].shape == (2, 64, 96, 3) and batch["images"].dtype == np.float32
    assert batch["semantic"].shape == (2, 64, 96) and batch["semantic"].dtype == np.int32
    np.testing.assert_array_equal(batch["valid_size"], [[40, 70], [33, 20]])
    expected = np.arange(40 * 70).reshape(40, 70) % 3
    np.testing.assert_array_equal(batch["semantic"][0, :40, :70], expected)
    assert np.all(batch["semantic"][0, 40:] == 255) and np.all(batch["semantic"][0, :, 70:] == 255)
    assert np.all(batch["semantic"][1, 33:] == 255) and np.all(batch["images"][1, 33:] == 0)


def test_fixed_size_resizes_the_long_side_and_pads_to_a_square():
    dataset = make_evaluation_dataset(_examples([(50, 100), (100, 100)]), image_size=48, batch_size=2, ignore_label=99)
    batch = next(iter(tfds.as_numpy(dataset)))
    assert batch["images"].shape == (2, 64, 64, 3)
    np.testing.assert_array_equal(batch["valid_size"], [[24, 48], [48, 48]])
    assert set(np.unique(batch["semantic"][0, :24, :48])) <= {0, 1, 2}
    assert np.all(batch["semantic"][0, 24:] == 99)
    np.testing.assert_allclose(batch["images"][1, :48, :48], 2.0)


def test_shapes_held_out_split(shapes_data_dir):
    builder = tfds.builder("openseg_shapes/tiny", data_dir=shapes_data_dir)
    dataset = make_evaluation_dataset(builder.as_dataset(split="held_out"), batch_size=4)
    batch = next(iter(tfds.as_numpy(dataset)))
    assert batch["images"].shape == (4, 64, 64, 3)
    assert batch["semantic"].max() < len(builder.info.metadata["class_names"])


def test_bad_arguments():
    with pytest.raises(ValueError, match="semantic"):
        make_evaluation_dataset(tf.data.Dataset.from_tensor_slices({"image": np.zeros((1, 4, 4, 3), np.uint8)}))
    with pytest.raises(ValueError, match="size_divisor"):
        make_evaluation_dataset(_examples([(4, 4)]), size_divisor=0)
