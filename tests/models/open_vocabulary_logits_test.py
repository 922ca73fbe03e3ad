"""segmentation_logits (eq. 6), pixel_logits, region_pooled_pixel_features against plain numpy."""

import keras
import numpy as np
import pytest

from keras_openseg.models import pixel_logits
from keras_openseg.models import region_pooled_pixel_features
from keras_openseg.models import segmentation_logits


def normalize(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def numpy_segmentation_logits(masks, regions, words, name_valid, ensemble):
    """logit_c(p) = sum_n s_n(p) <w_c, z^_n>, names merged by max or by the mean embedding, in loops."""
    batch, num_masks, height, width = masks.shape
    regions = normalize(regions.astype("float64"))
    words = normalize(words.astype("float64"))
    logits = np.zeros((batch, words.shape[0], height, width))
    for c in range(words.shape[0]):
        names = [words[c, s] for s in range(words.shape[1]) if name_valid[c, s]]
        if ensemble == "mean":
            names = [normalize(np.mean(names, axis=0))]
        per_name = [np.einsum("bn,bnhw->bhw", regions @ w, masks) for w in names]
        logits[:, c] = np.max(per_name, axis=0)
    return logits


@pytest.fixture
def inputs():
    rng = np.random.default_rng(0)
    masks = rng.uniform(size=(2, 5, 6, 7)).astype("float32")
    regions = rng.normal(size=(2, 5, 8)).astype("float32") * 3.0
    words = rng.normal(size=(4, 3, 8)).astype("float32")
    name_valid = np.array([[1, 1, 1], [1, 0, 0], [1, 1, 0], [0, 1, 0]], bool)
    # Padded names hold garbage that must not leak into the result.
    words[~name_valid] = 100.0
    return masks, regions, words, name_valid


@pytest.mark.parametrize("ensemble", ["max", "mean"])
def test_segmentation_logits_match_numpy(inputs, ensemble):
    masks, regions, words, name_valid = inputs
    logits = segmentation_logits(masks, regions, words, name_valid, ensemble=ensemble)
    expected = numpy_segmentation_logits(masks, regions, words, name_valid, ensemble)
    assert tuple(logits.shape) == (2, 4, 6, 7)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(logits), expected, rtol=1e-5, atol=1e-5)


def test_single_name_categories_and_scale_invariance(inputs):
    masks, regions, words, _ = inputs
    flat = words[:, 0]
    logits = keras.ops.convert_to_numpy(segmentation_logits(masks, regions, flat))
    expected = numpy_segmentation_logits(masks, regions, flat[:, None], np.ones((4, 1), bool), "max")
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    # Only directions count: rescaling region or text embeddings changes nothing.
    rescaled = segmentation_logits(masks, regions * 7.0, flat * 0.1)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(rescaled), logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("ensemble", ["max", "mean"])
def test_pixel_logits_are_cosine_similarities(inputs, ensemble):
    _, _, words, name_valid = inputs
    pixels = np.random.default_rng(1).normal(size=(2, 6, 7, 8)).astype("float32")
    logits = keras.ops.convert_to_numpy(pixel_logits(pixels, words, name_valid, ensemble=ensemble))
    # A pixel embedding is a one-mask region covering only that pixel.
    for i, j in [(0, 0), (3, 5), (5, 6)]:
        masks = np.zeros((2, 1, 1, 1), "float32") + 1.0
        expected = numpy_segmentation_logits(masks, pixels[:, i, j][:, None], words, name_valid, ensemble)
        np.testing.assert_allclose(logits[:, :, i, j], expected[:, :, 0, 0], rtol=1e-5, atol=1e-5)


def test_region_pooled_pixel_features(inputs):
    masks, regions, words, _ = inputs
    features = keras.ops.convert_to_numpy(region_pooled_pixel_features(masks, regions))
    expected = np.einsum("bnhw,bne->bhwe", masks, normalize(regions)) / masks.sum(axis=1)[..., None]
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-5)
    # Dotted with a unit text embedding, the feature gives eq. (6) divided by the total mask weight.
    word = normalize(words[0, 0])
    logits = keras.ops.convert_to_numpy(segmentation_logits(masks, regions, word[None]))[:, 0]
    np.testing.assert_allclose(features @ word, logits / masks.sum(axis=1), rtol=1e-4, atol=1e-5)


def test_invalid_inputs(inputs):
    masks, regions, words, name_valid = inputs
    with pytest.raises(ValueError, match="ensemble"):
        segmentation_logits(masks, regions, words, name_valid, ensemble="sum")
    with pytest.raises(ValueError, match=r"categories \[1\] have none"):
        segmentation_logits(masks, regions, words, np.array([[1, 0, 0], [0, 0, 0], [1, 0, 0], [1, 0, 0]], bool))
    with pytest.raises(ValueError, match="name_valid"):
        segmentation_logits(masks, regions, words, name_valid[:, :2])
    with pytest.raises(ValueError, match="embedding_dim"):
        segmentation_logits(masks, regions, words[..., :4])
    with pytest.raises(ValueError, match=r"\[B, N, H, W\]"):
        segmentation_logits(masks[0], regions, words)
