"""MeanIoU against hand-computed confusion counts (ignore label, absent classes, streaming, NO_CLASS)."""

import keras
import numpy as np
import pytest

from keras_openseg.evaluation import NO_CLASS
from keras_openseg.evaluation import MeanIoU

# Pairs (true, predicted) left after the ignore label: (0,0) (0,1) (1,1) (1,1) (2,2) (2,0).
#   class 0: TP 1, GT 2, predicted 2 -> 1 / 3     class 1: TP 2, GT 2, predicted 3 -> 2 / 3
#   class 2: TP 1, GT 2, predicted 1 -> 1 / 2     class 3: never true, predicted only on an ignored pixel -> no IoU
Y_TRUE = np.array([[[0, 0, 1, 1], [2, 2, 255, 255]]])
Y_PRED = np.array([[[0, 1, 1, 1], [2, 0, 3, 0]]])
EXPECTED = [1 / 3, 2 / 3, 1 / 2, None]


def test_hand_computed_example_with_backend_tensors():
    metric = MeanIoU(num_classes=4, class_names=["a", "b", "c", "d"])
    metric.update_state(keras.ops.convert_to_tensor(Y_TRUE), keras.ops.convert_to_tensor(Y_PRED))
    np.testing.assert_allclose(metric.per_class_iou()[:3], EXPECTED[:3])
    assert np.isnan(metric.per_class_iou()[3])
    assert metric.per_class_iou_table() == pytest.approx(dict(zip("abcd", EXPECTED)))
    assert metric.result() == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)  # class 3 stays out of the mean
    assert metric.result(classes=[1, 2]) == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert metric.pixel_accuracy() == pytest.approx(4 / 6)


def test_streaming_over_batches_equals_one_batch():
    metric = MeanIoU(num_classes=4)
    metric.update_state(Y_TRUE[:, :1], Y_PRED[:, :1])
    metric.update_state(Y_TRUE[:, 1:], Y_PRED[:, 1:])
    assert metric.result() == pytest.approx(0.5)
    metric.reset_state()
    assert np.isnan(metric.result())


def test_class_predicted_but_absent_counts_as_zero():
    metric = MeanIoU(num_classes=3)
    metric.update_state([0, 0, 1, 1], [0, 0, 1, 2])  # IoU: 1, 1/2, 0
    assert metric.result() == pytest.approx((1 + 0.5 + 0) / 3)


def test_no_class_prediction_is_a_miss():
    metric = MeanIoU(num_classes=2)
    metric.update_state([0, 0, 1, 1], [0, NO_CLASS, 1, NO_CLASS])  # IoU 1/2 and 1/2
    assert metric.result() == pytest.approx(0.5)


def test_custom_and_no_ignore_label():
    metric = MeanIoU(num_classes=2, ignore_label=65535)
    metric.update_state([0, 65535, 1], [0, 1, 1])
    assert metric.result() == 1.0
    metric = MeanIoU(num_classes=2, ignore_label=None)
    metric.update_state([0, 1], [1, 1])
    assert metric.result() == pytest.approx(0.25)


def test_bad_inputs():
    metric = MeanIoU(num_classes=2)
    with pytest.raises(ValueError, match="y_true"):
        metric.update_state([0, 7], [0, 1])
    with pytest.raises(ValueError, match="y_pred"):
        metric.update_state([0, 1], [0, 2])
    with pytest.raises(ValueError, match="same shape"):
        metric.update_state([0, 1], [0])
    with pytest.raises(ValueError, match="class_names"):
        MeanIoU(num_classes=2, class_names=["a"])
