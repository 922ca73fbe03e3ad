"""OpenSegTeacher: mask selection (confidence, NMS, top-M), pseudo labels at image resolution, L_S training."""

import keras
import numpy as np
import pytest
from tiny_openseg import NUM_QUERIES
from tiny_openseg import images
from tiny_openseg import tiny_teacher

from keras_openseg.models.openseg_teacher import select_masks


def square_logits(num_queries=5, size=8):
    """Mask logits of hand-made proposals: +-4 inside / outside a rectangle (confidence ~0.98)."""
    logits = np.full((1, num_queries, size, size), -4.0, "float32")
    logits[0, 0, :4, :4] = 4.0  # A
    logits[0, 1, :4, :4] = 3.0  # A again, less confident: a duplicate
    logits[0, 2, 4:, 4:] = 5.0  # B, the most confident
    logits[0, 3, :4, 4:] = 0.5  # C, barely above 0.5: low confidence
    return logits  # query 4 is empty


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_select_masks_keeps_confident_distinct_masks_best_first():
    probabilities, scores, valid = (
        keras.ops.convert_to_numpy(t) for t in select_masks(square_logits(), max_masks=4, score_threshold=0.7)
    )
    np.testing.assert_array_equal(valid, [[True, True, False, False]])
    np.testing.assert_allclose(scores, [[sigmoid(5.0), sigmoid(4.0), 0.0, 0.0]], rtol=1e-5)
    np.testing.assert_allclose(probabilities[0, 0], sigmoid(square_logits()[0, 2]), rtol=1e-5)
    np.testing.assert_allclose(probabilities[0, 1], sigmoid(square_logits()[0, 0]), rtol=1e-5)
    assert not probabilities[0, 2:].any()
    # No NMS and more slots than proposals: the four non-empty proposals, then padding.
    _, _, valid = select_masks(square_logits(), max_masks=7, score_threshold=0.0, nms_iou=1.0)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(valid), [[True] * 4 + [False] * 3])


def test_pseudo_label_outputs_student_labels():
    teacher = tiny_teacher()
    labels = teacher.pseudo_label(images(2, 64, 64), max_masks=3, score_threshold=0.0, nms_iou=1.0)
    assert labels["masks"].shape == (2, 3, 64, 64) and labels["masks"].dtype == np.float32
    assert set(np.unique(labels["masks"])) <= {0.0, 1.0}
    assert labels["mask_valid"].shape == (2, 3) and labels["mask_valid"].dtype == bool
    assert labels["scores"].shape == (2, 3)
    assert np.all(np.diff(labels["scores"], axis=1) <= 0)  # best first
    assert not labels["masks"][~labels["mask_valid"]].any()
    odd = teacher.pseudo_label([images(1, 50, 70)[0], images(1, 64, 48)[0]], max_masks=NUM_QUERIES + 2)
    assert [m.shape for m in odd["masks"]] == [(NUM_QUERIES + 2, 50, 70), (NUM_QUERIES + 2, 64, 48)]
    assert not odd["mask_valid"][:, NUM_QUERIES:].any()
    with pytest.raises(ValueError, match="max_masks"):
        teacher.pseudo_label(images(1, 32, 32), max_masks=0)


@pytest.mark.slow
def test_teacher_trains_the_mask_branch_only():
    teacher = tiny_teacher()
    region_before = [keras.ops.convert_to_numpy(w) for w in teacher.backbone.region_head.weights]
    raw = images(2, 64, 64)
    y = {"masks": np.zeros((2, 2, 64, 64), "float32"), "mask_valid": np.array([[1, 0], [1, 1]], bool)}
    y["masks"][:, :, 8:40, 16:48] = 1.0
    history = teacher.fit(raw, y, batch_size=2, epochs=1, verbose=0)
    assert set(history.history) == {"loss", "dice_loss"}
    np.testing.assert_allclose(history.history["loss"], history.history["dice_loss"], rtol=1e-6)
    for before, after in zip(region_before, teacher.backbone.region_head.weights):
        np.testing.assert_array_equal(before, keras.ops.convert_to_numpy(after))
    assert teacher.backbone.region_head.trainable  # unfrozen again for a student on this backbone
