"""OpenSegTeacher: mask selection (confidence, NMS, top-M), pseudo labels at image resolution, L_S training."""

import warnings

import keras
import numpy as np
import pytest
from tiny_openseg import NUM_QUERIES
from tiny_openseg import OFFSET
from tiny_openseg import SCALE
from tiny_openseg import images
from tiny_openseg import tiny_backbone
from tiny_openseg import tiny_teacher

from keras_openseg.datasets.openseg_shapes import world
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
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def mask_confidence(probabilities, mask_threshold=0.5):
    """numpy: the IoU of each mask's binary form B = {p > t} with its probabilities p, 0 for an empty mask.

    sum_{x in B} p(x) / (|B| + sum_{x not in B} p(x)), over the last two axes of `probabilities`.
    """
    p = np.asarray(probabilities, np.float64)
    binary = p > mask_threshold
    intersection = np.where(binary, p, 0.0).sum(axis=(-2, -1))
    union = binary.sum(axis=(-2, -1)) + np.where(binary, 0.0, p).sum(axis=(-2, -1))
    return np.where(binary.any(axis=(-2, -1)), intersection / np.maximum(union, 1e-12), 0.0)


def numpy_outputs(*tensors):
    return [keras.ops.convert_to_numpy(t) for t in tensors]


def test_select_masks_keeps_confident_distinct_masks_best_first():
    probabilities, scores, valid = (
        keras.ops.convert_to_numpy(t) for t in select_masks(square_logits(), max_masks=4, score_threshold=0.7)
    )
    np.testing.assert_array_equal(valid, [[True, True, False, False]])
    confidence = mask_confidence(sigmoid(square_logits()))[0]  # B 0.94, A 0.93, A again 0.90, C 0.59, empty 0
    np.testing.assert_allclose(scores, [[confidence[2], confidence[0], 0.0, 0.0]], rtol=1e-5)
    np.testing.assert_allclose(probabilities[0, 0], sigmoid(square_logits()[0, 2]), rtol=1e-5)
    np.testing.assert_allclose(probabilities[0, 1], sigmoid(square_logits()[0, 0]), rtol=1e-5)
    assert not probabilities[0, 2:].any()
    # No NMS and more slots than proposals: the four non-empty proposals, then padding.
    _, _, valid = select_masks(square_logits(), max_masks=7, score_threshold=0.0, nms_iou=1.0)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(valid), [[True] * 4 + [False] * 3])


def test_the_default_threshold_drops_masks_that_do_not_separate_their_region():
    logits = np.full((1, 4, 8, 8), -6.0, "float32")
    logits[0, 0, :4, :4] = 6.0  # certain inside and outside: kept
    logits[0, 1, 4:, 4:] = 6.0
    logits[0, 1, 4:, :4] = -0.5  # certain inside, but p = 0.38 on the square beside it
    logits[0, 2, :4, 4:] = 0.5  # barely above 0.5 inside
    # (query 3 is empty.) The mean probability inside the mask, the score before, gave 0.998, 0.998 and 0.62:
    # every non-empty mask passed a threshold of 0.5.
    probabilities, scores, valid = numpy_outputs(*select_masks(logits, max_masks=4))
    np.testing.assert_array_equal(valid, [[True, False, False, False]])
    confidence = mask_confidence(sigmoid(logits))[0]
    assert 0.99 < confidence[0] and confidence[1] < 0.75 and confidence[2] < 0.65 and confidence[3] == 0.0
    np.testing.assert_allclose(scores[0, 0], confidence[0], rtol=1e-5)
    np.testing.assert_allclose(probabilities[0, 0], sigmoid(logits[0, 0]), rtol=1e-5)
    # The same masks in a canvas whose bottom-left quarter is padding: the doubt there takes no part.
    pixel_valid = np.ones((1, 8, 8), bool)
    pixel_valid[0, 4:, :4] = False
    _, scores, valid = numpy_outputs(*select_masks(logits, max_masks=4, pixel_valid=pixel_valid))
    np.testing.assert_array_equal(valid, [[True, True, False, False]])
    expected = mask_confidence(sigmoid(logits) * pixel_valid[:, None])[0]
    np.testing.assert_allclose(scores[0, :2], sorted(expected[:2], reverse=True), rtol=1e-5)


@pytest.fixture(scope="module")
def random_teacher():
    """A random-init tiny teacher with a fixed seed, shared by the tests that only run it (building is slow on JAX)."""
    keras.utils.set_random_seed(0)
    return tiny_teacher()


def shapes_images(count=4, size=64):
    """openseg_shapes training images (drawn by its world, seeded by split and index)."""
    return np.stack([world.render_example("train", index, size)["image"] for index in range(count)])


def test_score_on_teacher_outputs_equals_numpy_and_thresholds_remove_monotonically(random_teacher):
    teacher = random_teacher
    raw = shapes_images()
    logits = keras.ops.convert_to_numpy(teacher.backbone.predict_on_batch(raw * SCALE + OFFSET)["mask_logits"])
    # Every proposal (no threshold, no NMS), best first: the numpy score of each, on every backend.
    probabilities, scores, valid = numpy_outputs(
        *select_masks(logits, max_masks=NUM_QUERIES, score_threshold=0.0, nms_iou=1.0)
    )
    expected = mask_confidence(sigmoid(logits))
    np.testing.assert_allclose(scores, -np.sort(-expected, axis=1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scores[valid], mask_confidence(probabilities)[valid], rtol=1e-5)
    assert valid.sum() >= 3 * len(raw)  # the random teacher proposes many masks
    _, all_scores, all_valid = numpy_outputs(*select_masks(logits, NUM_QUERIES, score_threshold=0.0))
    kept_before = int(all_valid.sum())
    for threshold in np.quantile(all_scores[all_valid], [0.25, 0.5, 0.75]):
        _, kept_scores, kept = numpy_outputs(*select_masks(logits, NUM_QUERIES, score_threshold=float(threshold)))
        # Exactly the masks kept without a threshold that score at least `threshold`: nothing comes back.
        for image in range(len(raw)):
            np.testing.assert_array_equal(
                kept_scores[image][kept[image]], all_scores[image][all_valid[image] & (all_scores[image] >= threshold)]
            )
        assert kept.sum() <= kept_before
        kept_before = int(kept.sum())
    assert kept_before < all_valid.sum()
    # The teacher's pseudo_label applies select_masks' defaults to the same outputs.
    labels = teacher.pseudo_label(raw)
    _, default_scores, default_valid = numpy_outputs(*select_masks(logits, max_masks=32))
    np.testing.assert_array_equal(labels["mask_valid"], default_valid)
    np.testing.assert_allclose(labels["scores"], default_scores, rtol=1e-5, atol=1e-6)


def test_pseudo_label_outputs_student_labels(random_teacher):
    teacher = random_teacher
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
    # With a mask shape embedding, a region-only part too: frozen in the teacher (no warning of variables
    # without gradients), trainable again afterwards.
    teacher = tiny_teacher(backbone=tiny_backbone(region_shape_embedding=True))
    region_parts = [teacher.backbone.region_head, teacher.backbone.mask_shape_embedding]
    region_before = [keras.ops.convert_to_numpy(w) for part in region_parts for w in part.weights]
    raw = images(2, 64, 64)
    y = {"masks": np.zeros((2, 2, 64, 64), "float32"), "mask_valid": np.array([[1, 0], [1, 1]], bool)}
    y["masks"][:, :, 8:40, 16:48] = 1.0
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="Gradients do not exist")
        history = teacher.fit(raw, y, batch_size=2, epochs=1, verbose=0)
    assert set(history.history) == {"loss", "dice_loss"}
    np.testing.assert_allclose(history.history["loss"], history.history["dice_loss"], rtol=1e-6)
    for before, after in zip(region_before, [w for part in region_parts for w in part.weights]):
        np.testing.assert_array_equal(before, keras.ops.convert_to_numpy(after))
    assert all(part.trainable for part in region_parts)  # unfrozen again for a student on this backbone
