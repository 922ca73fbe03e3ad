"""ProposalRecall at IoU 0.5 / 0.7 / 0.9 on hand-built segments and proposals."""

import keras
import numpy as np
import pytest

from keras_openseg.evaluation import ProposalRecall
from keras_openseg.evaluation import binarize_proposals


def _logits(*masks):
    return np.where(np.stack(masks), 8.0, -8.0).astype(np.float32)


def _box(rows, cols, size=10):
    mask = np.zeros((size, size), bool)
    mask[rows[0] : rows[1], cols[0] : cols[1]] = True
    return mask


def test_three_thresholds_by_hand():
    # Image 1 (10 x 10): segments A (top half, 50 px), B (bottom-left 25 px), C (bottom-right 25 px), and D,
    # a crowd segment marked invalid. Proposals:
    #   p0 = A + 2 px of row 5 -> IoU(A) = 50 / 52 = 0.96     p1 = B + column 5 -> IoU(B) = 25 / 30 = 0.83
    #   p2 = rows 7-9 of C -> IoU(C) = 15 / 25 = 0.6          p1 also covers D exactly, but D does not count.
    seg_a, seg_b, seg_c = _box((0, 5), (0, 10)), _box((5, 10), (0, 5)), _box((5, 10), (5, 10))
    seg_d = _box((5, 10), (0, 6))
    p0 = seg_a | _box((5, 6), (0, 2))
    p1, p2 = _box((5, 10), (0, 6)), _box((7, 10), (5, 10))
    recall = ProposalRecall()
    recall.update_state(
        keras.ops.convert_to_tensor(np.stack([seg_a, seg_b, seg_c, seg_d])[None]),
        keras.ops.convert_to_tensor(_logits(p0, p1, p2)[None]),
        gt_valid=np.array([[True, True, True, False]]),
    )
    assert recall.result() == pytest.approx({0.5: 1.0, 0.7: 2 / 3, 0.9: 1 / 3})
    # Image 2: one segment, no proposal covers it (IoU 0).
    recall.update_state(_box((0, 4), (0, 4))[None, None], _logits(np.zeros((10, 10), bool))[None])
    assert recall.result() == pytest.approx({0.5: 3 / 4, 0.7: 2 / 4, 0.9: 1 / 4})
    assert recall.num_segments == 4
    recall.reset_state()
    assert np.isnan(recall.result()[0.5])


def test_ignore_mask_removes_void_pixels_from_proposals():
    segment = _box((0, 2), (0, 4), size=4)  # 8 px
    proposal = _box((0, 4), (0, 4), size=4)  # 16 px: IoU 1/2, or 1 without the void rows 2-3
    void = _box((2, 4), (0, 4), size=4)
    recall = ProposalRecall(thresholds=(0.5, 0.9))
    recall.update_state(segment[None, None], _logits(proposal)[None])
    assert recall.result() == {0.5: 1.0, 0.9: 0.0}
    recall.reset_state()
    recall.update_state(segment[None, None], _logits(proposal)[None], ignore_mask=void[None])
    assert recall.result() == {0.5: 1.0, 0.9: 1.0}


def test_low_resolution_logits_are_upsampled_before_thresholding():
    logits = np.array([[[[5.0, -5.0], [-5.0, -5.0]]]])  # [1, 1, 2, 2]: the top-left quarter
    masks = keras.ops.convert_to_numpy(binarize_proposals(logits, (4, 4)))
    np.testing.assert_array_equal(masks[0, 0], _box((0, 2), (0, 2), size=4))
    recall = ProposalRecall()
    recall.update_state(_box((0, 2), (0, 2), size=4)[None, None], logits)
    assert recall.result()[0.9] == 1.0


def test_bad_inputs():
    with pytest.raises(ValueError, match="thresholds"):
        ProposalRecall(thresholds=(0.5, 1.5))
    with pytest.raises(ValueError, match="gt_masks"):
        ProposalRecall().update_state(np.zeros((4, 4), bool), np.zeros((1, 1, 4, 4)))
    with pytest.raises(ValueError, match="gt_valid"):
        ProposalRecall().update_state(np.zeros((1, 2, 4, 4), bool), np.zeros((1, 1, 4, 4)), gt_valid=[[True]])
