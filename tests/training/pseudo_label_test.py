"""write_pseudo_labels: shards + index readable by load_pseudo_labels, resumable after a kill."""

import os

import numpy as np
import pytest
import tensorflow as tf

from keras_openseg.data import load_pseudo_labels
from keras_openseg.training.pseudo_label import write_pseudo_labels


class BrightnessTeacher:
    """Stands in for an OpenSegTeacher: one mask, the pixels brighter than mid-grey."""

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


def caption_images(count=10, size=16):
    images = np.zeros((count, size, size, 3), np.uint8)
    for index in range(count):
        images[index, :, : index + 1] = 255  # image i: its first i + 1 columns bright
    captions = [[f"image {index}", "shapes"] for index in range(count)]
    return tf.data.Dataset.from_tensor_slices({"image": images, "captions": captions})


def test_shards_index_and_resume(tmp_path):
    output = str(tmp_path / "pseudo")
    with pytest.raises(KeyboardInterrupt):
        write_pseudo_labels(
            BrightnessTeacher(fail_after=6),
            caption_images(),
            output,
            image_size=16,
            batch_size=2,
            max_masks=3,
            shard_size=4,
            verbose=0,
        )
    assert sorted(os.listdir(output)) == ["chunk-00000"]  # the finished shard only, no index
    teacher = BrightnessTeacher()
    index = write_pseudo_labels(
        teacher,
        caption_images(),
        output,
        image_size=16,
        batch_size=2,
        max_masks=3,
        shard_size=4,
        num_examples=10,
        verbose=0,
    )
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


def test_empty_dataset_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        write_pseudo_labels(BrightnessTeacher(), caption_images().take(0), str(tmp_path), image_size=16, verbose=0)
