"""Scale jitter / crop / pad / flip keep the image, the id map and the masks aligned (property tests)."""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import strategies as st

from keras_openseg.data import augmentation

pytestmark = pytest.mark.backend_independent


@st.composite
def scenes(draw):
    """A partition of an H x W image into rectangles with large ids, and a jitter geometry."""
    height, width = draw(st.integers(8, 40)), draw(st.integers(8, 40))
    row_cuts = sorted(draw(st.sets(st.integers(1, height - 1), max_size=3)))
    col_cuts = sorted(draw(st.sets(st.integers(1, width - 1), max_size=3)))
    rows = np.searchsorted(row_cuts, np.arange(height), side="right")
    cols = np.searchsorted(col_cuts, np.arange(width), side="right")
    ids = 1000 + 7 * (rows[:, None] * 4 + cols[None, :])  # spans several bytes, like panoptic ids
    image_size = draw(st.sampled_from([16, 24, 32]))
    seed = draw(st.tuples(st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1)))
    flip = draw(st.booleans())
    return ids.astype(np.int32), image_size, seed, flip


def _palette(ids):
    # A distinct color per id, so the image tells which segment a pixel shows.
    return np.stack([(ids * 37) % 251, (ids * 91) % 241, (ids * 13) % 239], -1).astype(np.float32)


def _geometry_and_outputs(ids, image_size, seed, flip):
    geometry = augmentation.random_geometry(tf.constant(seed, tf.int64), ids.shape, image_size, (0.8, 1.2), flip)
    out_ids = augmentation.apply_geometry(tf.constant(ids)[..., None], geometry, image_size, method="nearest")
    out_image = augmentation.apply_geometry(tf.constant(_palette(ids)), geometry, image_size)
    return geometry, out_ids.numpy()[..., 0], out_image.numpy()


@given(scenes())
def test_id_map_partitions_the_crop_and_pads_with_void(scene):
    ids, image_size, seed, flip = scene
    geometry, out_ids, _ = _geometry_and_outputs(ids, image_size, seed, flip)
    height, width = int(geometry.height), int(geometry.width)
    # The long side is image_size * [0.8, 1.2].
    assert 0.8 * image_size - 1 <= max(height, width) <= 1.2 * image_size + 1
    assert 0 <= int(geometry.offset_y) <= max(height - image_size, 0)
    assert 0 <= int(geometry.offset_x) <= max(width - image_size, 0)
    content = out_ids[: min(height, image_size), : min(width, image_size)]
    assert np.all(np.isin(content, np.unique(ids)))  # every content pixel belongs to exactly one segment
    padding = out_ids.copy()
    padding[: min(height, image_size), : min(width, image_size)] = 0
    assert np.all(padding == 0)


@given(scenes())
def test_segment_areas_scale_with_the_resize(scene):
    ids, image_size, seed, flip = scene
    geometry, out_ids, _ = _geometry_and_outputs(ids, image_size, seed, flip)
    height, width = int(geometry.height), int(geometry.width)
    scale_y, scale_x = height / ids.shape[0], width / ids.shape[1]
    top, left = int(geometry.offset_y), int(geometry.offset_x)
    bottom, right = top + min(height, image_size), left + min(width, image_size)
    for segment in np.unique(ids):
        rows, cols = np.nonzero(np.any(ids == segment, axis=1))[0], np.nonzero(np.any(ids == segment, axis=0))[0]
        # The rectangle in the resized frame, clipped to the crop window.
        y0, y1 = max(rows[0] * scale_y, top), min((rows[-1] + 1) * scale_y, bottom)
        x0, x1 = max(cols[0] * scale_x, left), min((cols[-1] + 1) * scale_x, right)
        expected_h, expected_w = max(y1 - y0, 0), max(x1 - x0, 0)
        area = np.sum(out_ids == segment)
        # Nearest-neighbour rounding moves each edge by at most one pixel.
        assert abs(area - expected_h * expected_w) <= 2 * (expected_h + expected_w) + 4


@given(scenes())
def test_image_stays_aligned_with_the_segments(scene):
    ids, image_size, seed, flip = scene
    geometry, out_ids, out_image = _geometry_and_outputs(ids, image_size, seed, flip)
    scale = max(int(geometry.height) / ids.shape[0], int(geometry.width) / ids.shape[1])
    radius = int(np.ceil(max(scale, 1.0))) + 1
    height, width = min(int(geometry.height), image_size), min(int(geometry.width), image_size)
    padded = np.pad(out_ids[:height, :width], radius, mode="edge")
    # Pixels deep inside a segment (no other segment within `radius`) show exactly that segment's color.
    interior = np.ones((height, width), bool)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            shifted = padded[radius + dy : radius + dy + height, radius + dx : radius + dx + width]
            interior &= shifted == out_ids[:height, :width]
    # Edge padding copies the border: exclude the border band too, where outside pixels were cropped away.
    interior[:radius], interior[-radius:], interior[:, :radius], interior[:, -radius:] = False, False, False, False
    expected = _palette(out_ids[:height, :width])
    np.testing.assert_allclose(out_image[:height, :width][interior], expected[interior], atol=1.0)


@given(scenes())
def test_soft_masks_follow_the_id_map(scene):
    ids, image_size, seed, flip = scene
    geometry, out_ids, _ = _geometry_and_outputs(ids, image_size, seed, flip)
    segments = np.unique(ids)
    stack = np.stack([ids == s for s in segments], -1).astype(np.float32)
    masks = augmentation.apply_geometry(tf.constant(stack), geometry, image_size).numpy() >= 0.5
    for k, segment in enumerate(segments):
        expected = out_ids == segment
        if expected.sum() < 16:
            continue
        iou = np.sum(masks[..., k] & expected) / np.sum(masks[..., k] | expected)
        assert iou > 0.6


def test_flip_mirrors_the_crop():
    ids = np.arange(12, dtype=np.int32).reshape(3, 4) + 1
    geometry = augmentation.Geometry(*(tf.constant(v) for v in (3, 4, 0, 0)), tf.constant(True))
    out = augmentation.apply_geometry(tf.constant(ids)[..., None], geometry, 4, method="nearest").numpy()[..., 0]
    np.testing.assert_array_equal(out[:3], ids[:, ::-1])
    np.testing.assert_array_equal(out[3], 0)


@given(
    height=st.integers(8, 80),
    width=st.integers(8, 80),
    scale=st.floats(0.5, 1.5),
    flip=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_padding_mask_is_one_exactly_on_the_image(height, width, scale, flip, seed):
    """The mask marks the pixels `apply_geometry` fills from the image (a strictly positive image)."""
    geometry = augmentation.random_geometry(
        tf.constant([seed, 1]), tf.constant([height, width, 3]), 32, scale_range=(scale, scale), flip=flip
    )
    image = tf.ones([height, width, 1], tf.float32)
    placed = augmentation.apply_geometry(image, geometry, 32)[..., 0].numpy()
    mask = augmentation.padding_mask(geometry, 32).numpy()
    assert mask.shape == (32, 32) and mask.dtype == np.float32
    np.testing.assert_array_equal(mask, (placed > 0).astype(np.float32))


def _hue_rotated(image, shift):
    """numpy / colorsys reference: every pixel's hue turned by `shift` of the wheel, saturation and value kept."""
    import colorsys

    flat = image.reshape(-1, 3) / 255.0
    turned = [colorsys.hsv_to_rgb(*(((h + shift) % 1.0), s, v)) for h, s, v in (colorsys.rgb_to_hsv(*p) for p in flat)]
    return np.asarray(turned).reshape(image.shape) * 255.0


def test_hue_rotation_against_colorsys():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (6, 7, 3)).astype(np.float32)
    image[0] = 90.0  # grey pixels and ...
    image[1] = 0.0  # ... the zero padding have no hue: they stay
    rotations = 0
    for index in range(40):
        seed = tf.constant([index, 3], tf.int64)
        output, rotated = augmentation.random_hue_rotation(seed, tf.constant(image), 0.5)
        output = output.numpy()
        if not bool(rotated):
            np.testing.assert_array_equal(output, image)
            continue
        rotations += 1
        shift = float(tf.random.stateless_uniform([2], seed)[1]) - 0.5  # the angle the function drew
        # float32 against colorsys' float64 on a 0..255 scale: 1.7e-4 at most over 200 draws.
        np.testing.assert_allclose(output, _hue_rotated(image, shift), atol=5e-4)
        np.testing.assert_array_equal(output[:2], image[:2])
        # Value (the largest channel) is what a rotation keeps, exactly.
        np.testing.assert_array_equal(output.max(axis=-1), image.max(axis=-1))
    assert 10 < rotations < 30  # probability 0.5 of 40 draws


def test_hue_rotation_probability_extremes():
    image = tf.constant(np.random.default_rng(1).uniform(0, 255, (4, 4, 3)), tf.float32)
    for index in range(10):
        seed = tf.constant([index, 0], tf.int64)
        never, rotated = augmentation.random_hue_rotation(seed, image, 0.0)
        assert not bool(rotated) and np.array_equal(never.numpy(), image.numpy())
        assert bool(augmentation.random_hue_rotation(seed, image, 1.0)[1])


def test_chromatic_colour_words_leave_the_achromatic_ones():
    words = set(augmentation.CHROMATIC_COLOUR_WORDS)
    assert {"red", "blue", "yellow", "purple", "green"} <= words
    assert not words & {"black", "white", "grey", "gray"}  # a hue rotation keeps these true
