"""Teacher pseudo-labels saved once and read back as a training source (runs on every backend)."""

import keras
import numpy as np
import tensorflow as tf

from keras_openseg.data import TrainingSource
from keras_openseg.data import load_pseudo_labels
from keras_openseg.data import make_training_dataset
from keras_openseg.data import pseudo_label_dataset
from keras_openseg.text import WordEmbeddingTable


class ThresholdTeacher:
    """Stands in for `OpenSegTeacher`: one mask of bright pixels, one of dark pixels, one invalid slot."""

    def __init__(self):
        self.calls = 0

    def pseudo_label(self, images, max_masks=3, **kwargs):
        self.calls += 1
        gray = keras.ops.mean(keras.ops.convert_to_tensor(images), axis=-1)
        bright = keras.ops.cast(gray > 127, "float32")
        masks = keras.ops.stack([bright, 1.0 - bright, keras.ops.zeros_like(bright)], axis=1)[:, :max_masks]
        valid = keras.ops.convert_to_tensor(np.tile([True, True, False], (images.shape[0], 1))[:, :max_masks])
        return {"masks": masks, "mask_valid": valid, "scores": keras.ops.ones(keras.ops.shape(valid))}


def _images():
    def generate():
        for index, (height, width) in enumerate([(20, 40), (40, 40), (30, 10)]):
            image = np.zeros((height, width, 3), np.uint8)
            image[: height // 2] = 255
            yield {"image": image, "captions": np.array([f"caption {index}"], object)}

    signature = {"image": tf.TensorSpec([None, None, 3], tf.uint8), "captions": tf.TensorSpec([None], tf.string)}
    return tf.data.Dataset.from_generator(generate, output_signature=signature)


def test_pseudo_labels_are_saved_reused_and_trainable(tmp_path):
    teacher = ThresholdTeacher()
    dataset = pseudo_label_dataset(
        teacher, _images(), tmp_path / "labels", image_size=32, batch_size=2, max_masks=3, chunk_size=2
    )
    examples = list(dataset.as_numpy_iterator())
    assert teacher.calls == 2 and len(examples) == 3
    assert [e["image"].shape for e in examples] == [(16, 32, 3), (32, 32, 3), (32, 11, 3)]
    first = examples[0]
    assert first["masks"].shape == (3, 16, 32) and first["masks"].dtype == np.uint8
    np.testing.assert_array_equal(first["mask_valid"], [True, True, False])
    np.testing.assert_array_equal(first["masks"][0], first["image"][..., 0] > 127)
    assert first["captions"].tolist() == [b"caption 0"]

    again = pseudo_label_dataset(teacher, _images(), tmp_path / "labels", image_size=32)
    assert teacher.calls == 2  # a finished folder is reused
    assert len(list(load_pseudo_labels(tmp_path / "labels"))) == len(list(again)) == 3

    source = TrainingSource(dataset, caption_words={f"caption {i}": ["caption"] for i in range(3)})
    assert source.kind == "masks"
    table = WordEmbeddingTable(["caption"], np.ones((1, 4), np.float32), encoder_id="test")
    x, y = next(iter(make_training_dataset(source, table, image_size=32, batch_size=3, max_masks=4, seed=0)))
    assert keras.ops.convert_to_tensor(y["masks"]).shape == (3, 4, 32, 32)
    assert np.all(y["mask_valid"].numpy()[:, :2]) and not y["mask_valid"].numpy()[:, 2:].any()
    assert np.all(x["word_valid"].numpy()[:, 0])
