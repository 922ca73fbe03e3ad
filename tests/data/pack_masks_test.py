"""Panoptic decoding and packing of class-agnostic masks into fixed slots."""

import numpy as np
import pytest
import tensorflow as tf

from keras_openseg.data import masks as masks_lib

pytestmark = pytest.mark.backend_independent


def test_panoptic_ids_combine_the_three_channels():
    rng = np.random.default_rng(0)
    panoptic = rng.integers(0, 256, size=(5, 6, 3), dtype=np.uint8)
    rgb = panoptic.astype(np.int64)
    expected = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
    np.testing.assert_array_equal(masks_lib.panoptic_ids(tf.constant(panoptic)).numpy(), expected)


def _id_map():
    ids = np.zeros((6, 6), np.int32)
    ids[:, :3] = 70001  # 18 pixels
    ids[:2, 3:] = 5  # 6 pixels
    ids[2:, 3:] = 300  # 12 pixels, crowd below
    return ids


def test_pack_segment_masks_largest_first_without_crowd_or_void():
    ids = _id_map()
    masks, valid = masks_lib.pack_segment_masks(
        tf.constant(ids), tf.constant([5, 300, 70001, 9], tf.int64), tf.constant([True, False, True, True]), 4
    )
    masks, valid = masks.numpy(), valid.numpy()
    assert masks.shape == (4, 6, 6) and masks.dtype == np.float32
    np.testing.assert_array_equal(valid, [True, True, False, False])  # id 9 has no pixel, 300 is crowd
    np.testing.assert_array_equal(masks[0], ids == 70001)
    np.testing.assert_array_equal(masks[1], ids == 5)
    assert masks[2:].sum() == 0


def test_pack_segment_masks_keeps_the_largest_when_there_are_too_many():
    ids = _id_map()
    masks, valid = masks_lib.pack_segment_masks(
        tf.constant(ids), tf.constant([5, 300, 70001]), tf.constant([True, True, True]), 2
    )
    np.testing.assert_array_equal(valid.numpy(), [True, True])
    np.testing.assert_array_equal(masks.numpy()[1], ids == 300)


def test_pack_segment_masks_of_an_image_with_no_segment():
    ids = tf.zeros([4, 4], tf.int32)
    masks, valid = masks_lib.pack_segment_masks(ids, tf.zeros([0], tf.int64), tf.zeros([0], tf.bool), 3)
    assert masks.shape == (3, 4, 4) and masks.numpy().sum() == 0
    np.testing.assert_array_equal(valid.numpy(), [False, False, False])
    # A segment listed with id 0 is void, never a target.
    masks, valid = masks_lib.pack_segment_masks(ids, tf.constant([0]), tf.constant([True]), 3)
    assert not valid.numpy().any()


def test_pack_masks_drops_invalid_and_empty_masks():
    stack = np.zeros((3, 4, 4), bool)
    stack[0, :1] = True  # 4 pixels
    stack[1, :3] = True  # 12 pixels, but invalid
    masks, valid = masks_lib.pack_masks(tf.constant(stack), tf.constant([True, False, True]), 4)
    np.testing.assert_array_equal(valid.numpy(), [True, False, False, False])
    np.testing.assert_array_equal(masks.numpy()[0], stack[0])
    assert masks.numpy()[1:].sum() == 0


def test_mask_size_gives_the_area_fractions_the_loss_would_compute():
    ids = _id_map()
    masks, valid = masks_lib.pack_segment_masks(
        tf.constant(ids), tf.constant([5, 300, 70001]), tf.constant([True, True, True]), 4, mask_size=3
    )
    masks = masks.numpy()
    assert masks.shape == (4, 3, 3)
    np.testing.assert_array_equal(valid.numpy(), [True, True, True, False])
    # 2x2 block means of the full-size masks, largest segment first.
    for slot, segment in enumerate([70001, 300, 5]):
        expected = (ids == segment).reshape(3, 2, 3, 2).mean(axis=(1, 3))
        np.testing.assert_allclose(masks[slot], expected, atol=1e-6)
    empty, valid = masks_lib.pack_masks(tf.zeros([0, 6, 6], tf.bool), tf.zeros([0], tf.bool), 2, mask_size=3)
    assert empty.shape == (2, 3, 3) and not valid.numpy().any()


def test_pack_segment_masks_gives_the_class_of_each_slot_in_slot_order():
    ids = _id_map()
    segment_ids = tf.constant([5, 300, 70001, 9], tf.int64)
    valid = tf.constant([True, False, True, True])
    classes = tf.constant([12, 4, 70, 2], tf.int64)
    masks, mask_valid, mask_classes = masks_lib.pack_segment_masks(
        tf.constant(ids), segment_ids, valid, 4, segment_classes=classes
    )
    # Largest first (70001, then 5); crowd (300) and pixel-less (9) segments leave their slots without class.
    np.testing.assert_array_equal(mask_classes.numpy(), [70, 12, -1, -1])
    assert mask_classes.dtype == tf.int32 and mask_classes.shape == (4,)
    # The masks and flags are those of a call without classes, for every mask size.
    for mask_size in (None, 3):
        expected = masks_lib.pack_segment_masks(tf.constant(ids), segment_ids, valid, 4, mask_size=mask_size)
        packed = masks_lib.pack_segment_masks(
            tf.constant(ids), segment_ids, valid, 4, mask_size=mask_size, segment_classes=classes
        )
        for value, reference in zip(packed[:2], expected):
            np.testing.assert_array_equal(value.numpy(), reference.numpy())
    # Too many segments: the classes of the largest ones; no segment at all: -1 everywhere.
    _, _, kept = masks_lib.pack_segment_masks(
        tf.constant(ids), segment_ids[:3], tf.constant([True, True, True]), 2, segment_classes=classes[:3]
    )
    np.testing.assert_array_equal(kept.numpy(), [70, 4])
    _, _, none = masks_lib.pack_segment_masks(
        tf.zeros([4, 4], tf.int32), tf.zeros([0], tf.int64), tf.zeros([0], tf.bool), 3, segment_classes=tf.zeros([0])
    )
    np.testing.assert_array_equal(none.numpy(), [-1, -1, -1])
