"""GroundingMeanIoU: restricting the argmax to each image's ground-truth classes, by hand."""

import keras
import numpy as np
import pytest

from keras_openseg.evaluation import GroundingMeanIoU
from keras_openseg.evaluation import MeanIoU
from keras_openseg.evaluation import grounded_predictions


def _logits(per_pixel):
    """[[c0, c1, c2] per pixel of a 1 x W image] -> [1, 3, 1, W]."""
    return np.array(per_pixel, np.float32).T[None, :, None, :]


# Image 1: ground truth [0, 0, 1, 1]; absent class 2 wins pixels 1 and 2 over the full vocabulary.
Y1 = np.array([[[0, 0, 1, 1]]])
L1 = _logits([[3, 1, 0], [2, 1, 5], [0, 2, 5], [0, 4, 1]])
# Image 2: ground truth [2, 2, 1, ignore]; absent class 0 wins pixel 0; pixel 1 is wrong in any setting.
Y2 = np.array([[[2, 2, 1, 255]]])
L2 = _logits([[9, 0, 1], [0, 3, 1], [0, 3, 1], [9, 0, 0]])


def test_grounded_predictions():
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(grounded_predictions(L1, Y1)), [[[0, 0, 1, 1]]])
    both = grounded_predictions(keras.ops.convert_to_tensor(np.concatenate([L1, L2])), np.concatenate([Y1, Y2]))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(both), [[[0, 0, 1, 1]], [[2, 1, 1, 1]]])


def test_restriction_changes_the_answer():
    full, grounding = MeanIoU(3), GroundingMeanIoU(3)
    full.update_state(Y1, np.argmax(L1, axis=1))  # predictions [0, 2, 2, 1]
    grounding.update_state(Y1, keras.ops.convert_to_tensor(L1))  # predictions [0, 0, 1, 1]
    assert full.result() == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)
    assert grounding.result() == pytest.approx(1.0)
    # Adding image 2: (2,2) (2,1) (1,1) -> class 0: 2/2, class 1: TP 3 / (GT 3 + predicted 4 - 3), class 2: 1/2.
    grounding.update_state(Y2, L2)
    np.testing.assert_allclose(grounding.per_class_iou(), [1.0, 3 / 4, 1 / 2])
    assert grounding.result() == pytest.approx(0.75)


def test_query_labels_map_several_queries_to_one_class():
    # Queries: class 0, class 1, and a second name of class 0 (e.g. a background name).
    logits = _logits([[0, 1, 5], [0, 5, 1]])
    predictions = grounded_predictions(logits, [[[0, 1]]], query_labels=[0, 1, 0])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(predictions), [[[0, 1]]])
    # Only class 1 present: the class-0 queries may not win.
    predictions = grounded_predictions(logits, [[[1, 1]]], query_labels=[0, 1, 0])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(predictions), [[[1, 1]]])


def test_bad_shapes():
    with pytest.raises(ValueError, match="logits"):
        grounded_predictions(np.zeros((3, 1, 4)), Y1)
    with pytest.raises(ValueError, match="y_true"):
        grounded_predictions(L1, np.zeros((1, 2, 4), int))
    with pytest.raises(ValueError, match="query_labels"):
        grounded_predictions(L1, Y1, query_labels=[0, 1])
