"""mixed_bfloat16 on the real model: a bfloat16 copy of a float32 OpenSeg model gives the same regions, labels
and losses (issue 14 item 8).

Runs on every backend: TensorFlow, JAX and PyTorch all have bfloat16 kernels on CPU (oneDNN on TensorFlow and
PyTorch, XLA:CPU on JAX). keras_hub's harness skips mixed precision on torch CPU; these tests do not.

Tolerances, from the bfloat16 mantissa (8 bits, a relative rounding of 2^-9 = 0.2 % per op) and measured
on the tiny model (float32 vs bfloat16, the same weights): region-embedding cosine similarity >= 0.99999 and
the losses within 0.3 % on every backend. The tests ask for cosine >= 0.999 per region, >= 95 % equal labels
from `segment`, and the loss and its grounding and dice terms within 2 % of float32.
"""

import keras
import numpy as np
from tiny_openseg import NUM_QUERIES
from tiny_openseg import OFFSET
from tiny_openseg import SCALE
from tiny_openseg import images
from tiny_openseg import tiny_backbone
from tiny_openseg import tiny_preprocessor
from tiny_openseg import training_batch

from keras_openseg.models import OpenSegModel

LOSS_RTOL = 2e-2


def to_float64(tree):
    return keras.tree.map_structure(lambda v: np.asarray(keras.ops.convert_to_numpy(v)).astype("float64"), tree)


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def cosine(a, b):
    return np.sum(unit(a) * unit(b), axis=-1)


def float32_and_bfloat16_models():
    keras.utils.set_random_seed(0)
    full = OpenSegModel(tiny_backbone(), tiny_preprocessor())
    half = OpenSegModel(tiny_backbone(dtype="mixed_bfloat16"), tiny_preprocessor())
    half.set_weights(full.get_weights())
    return full, half


def test_a_bfloat16_copy_gives_the_float32_regions_labels_and_losses():
    full, half = float32_and_bfloat16_models()
    assert half.backbone.dtype_policy.name == "mixed_bfloat16" and full.backbone.dtype_policy.name == "float32"
    assert all(keras.backend.standardize_dtype(w.dtype) == "float32" for w in half.weights)

    raw = images(4, 64, 64, seed=5)
    normalized = raw.astype("float32") * SCALE + OFFSET
    half_outputs = half.backbone.predict_on_batch(normalized)
    assert {keras.backend.standardize_dtype(v.dtype) for v in half_outputs.values()} == {"bfloat16"}
    ours, theirs = to_float64(half_outputs), to_float64(full.backbone.predict_on_batch(normalized))

    # Region embeddings: the direction (every score and loss uses cosine similarities), per region.
    regions, reference = ours["region_embeddings"], theirs["region_embeddings"]
    assert cosine(regions, reference).min() >= 0.999

    # Labels from segment. At random init the regions of one image share one dominant direction (their
    # cosines are > 0.999), so random texts give every pixel one class. Class c's text is the part of
    # region c of image 0 that is not that common direction: the classes then win different images.
    # (Within one image the regions differ by less than bfloat16's resolution at this init, so pixels of
    # one image would test rounding, not the model; a trained model's regions differ far more.)
    common = unit(reference.mean(axis=(0, 1)))
    distinct = reference[0, :4] - reference[0, :4].mean(axis=0)
    text = unit(distinct - (distinct @ common)[:, None] * common).astype("float32")
    expected = full.segment(raw, text_embeddings=text)
    result = half.segment(raw, text_embeddings=text)
    assert len(np.unique(expected["labels"])) >= 2  # not one constant label
    agreement = float(np.mean(result["labels"] == expected["labels"]))
    assert agreement >= 0.95, agreement
    assert result["scores"].dtype == np.float32 and np.isfinite(result["scores"]).all()

    # OpenSegModel.compute_loss (eq. 5), and its two terms from the trackers: float32, finite, within 2 %.
    x, y = training_batch()
    x = {**x, "images": x["images"].astype("float32") * SCALE + OFFSET}
    losses = {}
    for name, model in (("float32", full), ("bfloat16", half)):
        loss = model.compute_loss(x=x, y=y, y_pred=model(x))
        assert keras.backend.standardize_dtype(loss.dtype) == "float32"
        losses[name] = {
            "loss": float(keras.ops.convert_to_numpy(loss)),
            "grounding": float(keras.ops.convert_to_numpy(model.grounding_loss_tracker.result())),
            "dice": float(keras.ops.convert_to_numpy(model.dice_loss_tracker.result())),
        }
    for key, value in losses["bfloat16"].items():
        assert np.isfinite(value), losses
        assert abs(value - losses["float32"][key]) <= LOSS_RTOL * abs(losses["float32"][key]), (key, losses)


def test_bfloat16_runs_at_other_sizes_with_the_same_weights():
    _, half = float32_and_bfloat16_models()
    for height, width in ((64, 64), (96, 32)):
        outputs = to_float64(half.backbone.predict_on_batch(np.zeros((3, height, width, 3), "float32")))
        assert outputs["mask_logits"].shape == (3, NUM_QUERIES, height // 4, width // 4)
        assert all(np.isfinite(v).all() for v in outputs.values())
