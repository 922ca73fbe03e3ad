"""Teacher pseudo labels: resumable shards + index, read back as a training source (runs on every backend)."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_openseg.data import TrainingSource
from keras_openseg.data import load_pseudo_labels
from keras_openseg.data import make_training_dataset
from keras_openseg.data import write_pseudo_labels
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


class BrightnessTeacher:
    """Stands in for an OpenSegTeacher: one mask, the pixels brighter than mid-grey; can be 'killed'."""

    def __init__(self, fail_after=None):
        self.images_seen = 0
        self.fail_after = fail_after

    def pseudo_label(self, images, max_masks=32, **kwargs):
        if self.fail_after is not None and self.images_seen >= self.fail_after:
            raise KeyboardInterrupt("killed")
        self.images_seen += len(images)
        masks = np.zeros((len(images), max_masks) + images.shape[1:3], "float32")
        masks[:, 0] = images[..., 0] > 127
        valid = np.zeros((len(images), max_masks), bool)
        valid[:, 0] = True
        return {"masks": masks, "mask_valid": valid}


def _images():
    def generate():
        for index, (height, width) in enumerate([(20, 40), (40, 40), (30, 10)]):
            image = np.zeros((height, width, 3), np.uint8)
            image[: height // 2] = 255
            yield {"image": image, "captions": np.array([f"caption {index}"], object)}

    signature = {"image": tf.TensorSpec([None, None, 3], tf.uint8), "captions": tf.TensorSpec([None], tf.string)}
    return tf.data.Dataset.from_generator(generate, output_signature=signature)


def caption_images(count=10, size=16):
    images = np.zeros((count, size, size, 3), np.uint8)
    for index in range(count):
        images[index, :, : index + 1] = 255  # image i: its first i + 1 columns bright
    captions = [[f"image {index}", "shapes"] for index in range(count)]
    return tf.data.Dataset.from_tensor_slices({"image": images, "captions": captions})


def test_pseudo_labels_are_saved_reused_and_trainable(tmp_path):
    teacher = ThresholdTeacher()
    write_pseudo_labels(
        teacher, _images(), tmp_path / "labels", image_size=32, batch_size=2, max_masks=3, shard_size=2, verbose=0
    )
    dataset = load_pseudo_labels(tmp_path / "labels")
    examples = list(dataset.as_numpy_iterator())
    assert teacher.calls == 2 and len(examples) == 3
    assert [e["image"].shape for e in examples] == [(16, 32, 3), (32, 32, 3), (32, 11, 3)]
    first = examples[0]
    assert first["masks"].shape == (3, 16, 32) and first["masks"].dtype == np.uint8
    np.testing.assert_array_equal(first["mask_valid"], [True, True, False])
    np.testing.assert_array_equal(first["masks"][0], first["image"][..., 0] > 127)
    assert first["captions"].tolist() == [b"caption 0"]

    write_pseudo_labels(teacher, _images(), tmp_path / "labels", image_size=32, verbose=0)
    assert teacher.calls == 2  # a finished folder is reused
    assert len(list(load_pseudo_labels(tmp_path / "labels"))) == 3

    source = TrainingSource(dataset, caption_words={f"caption {i}": ["caption"] for i in range(3)})
    assert source.kind == "masks"
    table = WordEmbeddingTable(["caption"], np.ones((1, 4), np.float32), encoder_id="test")
    x, y = next(iter(make_training_dataset(source, table, image_size=32, batch_size=3, max_masks=4, seed=0)))
    assert keras.ops.convert_to_tensor(y["masks"]).shape == (3, 4, 32, 32)
    assert np.all(y["mask_valid"].numpy()[:, :2]) and not y["mask_valid"].numpy()[:, 2:].any()
    assert np.all(x["word_valid"].numpy()[:, 0])


def test_shards_index_and_resume(tmp_path):
    output = str(tmp_path / "pseudo")
    sizes = dict(image_size=16, batch_size=2, max_masks=3, shard_size=4)
    with pytest.raises(KeyboardInterrupt):
        write_pseudo_labels(BrightnessTeacher(fail_after=6), caption_images(), output, verbose=0, **sizes)
    assert sorted(os.listdir(output)) == ["chunk-00000"]  # the finished shard only, no index
    teacher = BrightnessTeacher()
    index = write_pseudo_labels(teacher, caption_images(), output, num_examples=10, verbose=0, **sizes)
    assert teacher.images_seen == 6  # shard 0 was skipped
    assert index == {"chunks": 3, "examples": 10, "image_size": 16, "max_masks": 3}
    examples = list(load_pseudo_labels(output).as_numpy_iterator())
    assert len(examples) == 10
    for position, example in enumerate(examples):
        assert example["captions"][0].decode() == f"image {position}"
        assert example["masks"].shape == (3, 16, 16) and list(example["mask_valid"]) == [True, False, False]
        assert example["masks"][0].sum() == 16 * (position + 1)
    # Finished: a new call changes nothing.
    assert write_pseudo_labels(BrightnessTeacher(fail_after=0), caption_images(), output, verbose=0) == index


def test_a_half_written_shard_is_redone(tmp_path):
    output = tmp_path / "pseudo"
    (output / "chunk-00000.partial").mkdir(parents=True)  # what a run killed inside `Dataset.save` leaves
    teacher = BrightnessTeacher()
    write_pseudo_labels(teacher, caption_images(4), output, image_size=16, shard_size=4, verbose=0)
    assert teacher.images_seen == 4 and sorted(os.listdir(output)) == ["chunk-00000", "pseudo_labels.json"]


def test_folders_written_before_still_load(tmp_path):
    # `pseudo_label_dataset` (the second writer, now gone) wrote the same shards and an index without "examples".
    write_pseudo_labels(BrightnessTeacher(), caption_images(3), tmp_path, image_size=16, shard_size=2, verbose=0)
    (tmp_path / "pseudo_labels.json").write_text(json.dumps({"chunks": 2, "image_size": 16, "max_masks": 32}))
    assert len(list(load_pseudo_labels(tmp_path))) == 3


def test_bad_input_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        write_pseudo_labels(BrightnessTeacher(), caption_images().take(0), str(tmp_path), image_size=16, verbose=0)
    with pytest.raises(ValueError, match="shard_size"):
        write_pseudo_labels(BrightnessTeacher(), caption_images(), tmp_path, shard_size=0, verbose=0)
    with pytest.raises(ValueError, match="'image'"):
        write_pseudo_labels(BrightnessTeacher(), tf.data.Dataset.range(3), tmp_path, verbose=0)
    with pytest.raises(ValueError, match="no finished pseudo labels"):
        load_pseudo_labels(tmp_path / "missing")


def test_progress_in_a_log_is_one_line_without_terminal_codes(tmp_path, capsys):
    # stdout is captured (not a terminal): the default progress prints once, at the end, with no cursor or colour
    # codes (a demo log is what people paste into issues).
    write_pseudo_labels(ThresholdTeacher(), _images(), tmp_path / "labels", image_size=32, batch_size=1, num_examples=3)
    out = capsys.readouterr().out
    assert "3/3" in out and "\x1b" not in out and "\r" not in out
    assert out.count("/3") == 1
