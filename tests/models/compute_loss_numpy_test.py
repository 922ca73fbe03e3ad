"""`OpenSegModel.compute_loss` against a plain numpy L = L_G + alpha * L_S (eqs. 1-5) at `group_size=None`.

At `group_size=1` L_G is exactly 0 (each image is contrasted with its own caption only), so the model test's
comparison cannot see the temperature or `word_valid`; here the whole batch is contrasted, one caption has a
padded word slot, and one has no valid word at all (it takes no part, neither as positive nor as negative).
"""

import keras
import numpy as np
import pytest
from tiny_openseg import OFFSET
from tiny_openseg import SCALE
from tiny_openseg import tiny_backbone
from tiny_openseg import training_batch

from keras_openseg.models import OpenSegModel


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _logsumexp(x, axis):
    peak = x.max(axis=axis, keepdims=True)
    return (peak + np.log(np.exp(x - peak).sum(axis=axis, keepdims=True))).squeeze(axis)


def numpy_grounding_loss(regions, words, word_valid, temperature):
    """Eqs. 2-4: G(I_a, C_c) = mean_j sum_i softmax_i(<z_ai, w_cj> / tau) <z_ai, w_cj>, then the symmetric
    contrastive loss over the examples with a valid word."""
    z, w, valid = _unit(regions.astype(np.float64)), _unit(words.astype(np.float64)), word_valid.astype(np.float64)
    similarity = np.einsum("and,ckd->acnk", z, w)
    attention = np.exp(similarity / temperature)
    attention /= attention.sum(axis=2, keepdims=True)
    word_scores = (attention * similarity).sum(axis=2)  # [a, c, k]
    scores = (word_scores * valid[None]).sum(-1) / np.maximum(valid.sum(-1), 1.0)[None]  # [a, c]
    logits = scores / temperature
    kept = np.flatnonzero(valid.sum(-1) > 0)
    logits = logits[np.ix_(kept, kept)]
    positive = np.diag(logits)
    per_example = (_logsumexp(logits, 0) - positive) + (_logsumexp(logits, 1) - positive)
    return per_example.mean()


def numpy_dice_loss(probabilities, masks, mask_valid, smooth=1.0):
    """Eq. 1: each valid label mask (box-filtered to the prediction grid) takes its best predicted mask."""
    batch, num_masks, size, _ = masks.shape
    h, w = probabilities.shape[2:]
    labels = masks.reshape(batch, num_masks, h, size // h, w, size // w).mean(axis=(3, 5))
    p, t = probabilities.reshape(batch, len(probabilities[0]), -1), labels.reshape(batch, num_masks, -1)
    dice = (2 * np.einsum("bnp,bmp->bnm", p, t) + smooth) / (p.sum(-1)[:, :, None] + t.sum(-1)[:, None] + smooth)
    losses = []
    for b in range(batch):
        if mask_valid[b].any():
            losses.append((1.0 - dice[b].max(axis=0))[mask_valid[b]].mean())
    return np.mean(losses)


@pytest.mark.parametrize("temperature, alpha", [(0.07, 1.0), (0.1, 0.3)])
def test_compute_loss_matches_numpy_at_group_size_none(temperature, alpha):
    keras.utils.set_random_seed(0)
    model = OpenSegModel(tiny_backbone(), alpha=alpha, temperature=temperature, group_size=None)
    x, y = training_batch(batch=4, num_words=3, seed=2)
    x["word_valid"][2] = False  # a caption without a valid word
    assert x["word_valid"][0].sum() == 2  # and one with a padded slot (its random embedding must not count)
    normalized = {**x, "images": x["images"].astype("float32") * SCALE + OFFSET}
    y_pred = model(normalized)
    loss = float(keras.ops.convert_to_numpy(model.compute_loss(x=normalized, y=y, y_pred=y_pred)))

    outputs = {key: np.asarray(keras.ops.convert_to_numpy(value), np.float64) for key, value in y_pred.items()}
    grounding = numpy_grounding_loss(outputs["region_embeddings"], x["word_embeddings"], x["word_valid"], temperature)
    dice = numpy_dice_loss(1 / (1 + np.exp(-outputs["mask_logits"])), y["masks"], y["mask_valid"])
    assert grounding > 0.1  # far from the group_size=1 zero
    np.testing.assert_allclose(loss, grounding + alpha * dice, rtol=1e-4)

    # The comparison sees a wrong temperature and an ignored `word_valid`: each moves the loss by > 10 x rtol.
    regions, words = outputs["region_embeddings"], x["word_embeddings"]
    wrong_temperature = numpy_grounding_loss(regions, words, x["word_valid"], 2 * temperature)
    ignored_valid = numpy_grounding_loss(regions, words, np.ones_like(x["word_valid"]), temperature)
    for wrong in (wrong_temperature, ignored_valid):
        assert abs(loss - (wrong + alpha * dice)) > 1e-3 * loss
