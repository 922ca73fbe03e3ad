"""mask_iou and greedy mask_nms against numpy, eagerly and inside the backend's compiled function."""

import keras
import numpy as np
import pytest

from keras_openseg.models import mask_iou
from keras_openseg.models import mask_nms


def numpy_nms(masks, scores, iou_threshold, score_threshold):
    keep = np.zeros(scores.shape, bool)
    for b in range(scores.shape[0]):
        kept = []
        for i in np.argsort(-scores[b], kind="stable"):
            if scores[b, i] < score_threshold or masks[b, i].sum() == 0:
                continue
            ious = [
                np.logical_and(masks[b, i], masks[b, j]).sum() / np.logical_or(masks[b, i], masks[b, j]).sum()
                for j in kept
            ]
            if all(iou <= iou_threshold for iou in ious):
                kept.append(i)
        keep[b, kept] = True
    return keep


@pytest.fixture
def masks_and_scores():
    rng = np.random.default_rng(0)
    masks = np.zeros((3, 8, 12, 12), "float32")
    for b in range(3):
        for n in range(8):
            top, left = rng.integers(0, 8, 2)
            masks[b, n, top : top + rng.integers(2, 5), left : left + rng.integers(2, 5)] = 1.0
    masks[0, 3] = masks[0, 1]  # an exact duplicate
    masks[1, 5] = 0.0  # an empty mask
    scores = rng.uniform(size=(3, 8)).astype("float32")
    return masks, scores


def test_mask_iou(masks_and_scores):
    masks, _ = masks_and_scores
    iou = keras.ops.convert_to_numpy(mask_iou(masks))
    a, b = masks[2, 0].astype(bool), masks[2, 4].astype(bool)
    np.testing.assert_allclose(iou[2, 0, 4], (a & b).sum() / (a | b).sum(), rtol=1e-6)
    np.testing.assert_allclose(iou[0, 1, 3], 1.0)
    assert iou[1, 5, 5] == 0.0


@pytest.mark.parametrize("iou_threshold, score_threshold", [(0.5, 0.0), (0.1, 0.3), (0.0, 0.0)])
def test_mask_nms_matches_numpy(masks_and_scores, iou_threshold, score_threshold):
    masks, scores = masks_and_scores
    keep = keras.ops.convert_to_numpy(mask_nms(masks, scores, iou_threshold, score_threshold))
    np.testing.assert_array_equal(keep, numpy_nms(masks, scores, iou_threshold, score_threshold))


def test_mask_nms_compiles(masks_and_scores):
    masks, scores = masks_and_scores
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        compiled = jax.jit(lambda m, s: mask_nms(m, s, 0.3))
    elif backend == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(lambda m, s: mask_nms(m, s, 0.3), jit_compile=True)
    else:
        import torch

        compiled = torch.compile(lambda m, s: mask_nms(m, s, 0.3), backend="eager")
    keep = compiled(keras.ops.convert_to_tensor(masks), keras.ops.convert_to_tensor(scores))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(keep), numpy_nms(masks, scores, 0.3, 0.0))
