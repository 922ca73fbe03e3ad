"""evaluate() with a real tiny OpenSegModel, against an expectation built without the package's inference code.

The expectation is numpy from the backbone's raw outputs on the canvas `segment` builds (the images zero-padded
bottom-right to 32 x 32, with the padding mask of each image): eq. (6) logit_c(p) = sum_n sigmoid(mask_logit_n(p))
<z^_n, w^_c> on the stride-4 grid, cropped to the cells covering each image (ceil), upsampled bilinearly
(half-pixel centers) by 4 and cropped to the image; then a numpy confusion-matrix mIoU and Grounding mIoU (the
argmax over the classes present in the image).
"""

import pathlib
import sys

import keras
import keras_hub
import numpy as np
import pytest
from fake_openseg_model import EXAMPLES
from fake_openseg_model import dataset_of
from numpy_miou import numpy_miou

from keras_openseg import models
from keras_openseg.evaluation import evaluate

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "models"))
from tiny_openseg import FixedTextEmbedder  # noqa: E402


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _bilinear(x, size, axis):
    """Half-pixel bilinear resize of numpy `x` along `axis` (tf.image.resize / torch align_corners=False)."""
    length = x.shape[axis]
    source = np.clip((np.arange(size) + 0.5) * length / size - 0.5, 0, length - 1)
    low = np.floor(source).astype(int)
    high = np.minimum(low + 1, length - 1)
    shape = [1] * x.ndim
    shape[axis] = size
    frac = (source - low).reshape(shape)
    return np.take(x, low, axis=axis) * (1 - frac) + np.take(x, high, axis=axis) * frac


@pytest.mark.slow
def test_tiny_openseg_model_end_to_end():
    keras.utils.set_random_seed(1)
    encoder = keras_hub.models.ResNetBackbone(
        input_conv_filters=[8], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 8, 8, 8],
        stackwise_num_blocks=[1, 1, 1, 1], stackwise_num_strides=[1, 2, 2, 2], block_type="basic_block_vd",
        image_shape=(None, None, 3),
    )  # fmt: skip
    backbone = models.OpenSegBackbone(
        encoder, num_queries=4, hidden_dim=16, embedding_dim=8, decoder_heads=2, decoder_layers=1, head_convs=1
    )
    # No preprocessor: the canvas holds the raw pixels, zero-padded to 32 x 32.
    canvas = np.zeros((len(EXAMPLES), 32, 32, 3), np.float32)
    padding_mask = np.zeros((len(EXAMPLES), 32, 32), np.float32)
    for index, example in enumerate(EXAMPLES):
        h, w = example["image"].shape[:2]
        canvas[index, :h, :w] = example["image"]
        padding_mask[index, :h, :w] = 1.0
    inputs = {"images": canvas, "padding_mask": padding_mask}
    outputs = {
        k: np.asarray(keras.ops.convert_to_numpy(v), np.float64) for k, v in backbone.predict_on_batch(inputs).items()
    }
    # The classes' texts are the directions of the eq. (6) pixel features f(p) = sum_n s_n(p) z^_n at three
    # valid cells that differ most (the ends of f's first principal axis and the far end of the
    # second): class c's logit <f(p), w_c> = |f(p)| cos is largest at its own cell, so several classes win
    # pixels whatever the random initialization (a fixed recipe such as "the first regions" can leave one class
    # winning everywhere on one backend's initial weights).
    cells = []
    for index, example in enumerate(EXAMPLES):
        image_masks = 1 / (1 + np.exp(-outputs["mask_logits"][index]))  # [N, 8, 8]
        image_features = np.einsum("nc,nhw->hwc", _unit(outputs["region_embeddings"][index]), image_masks)
        h, w = example["image"].shape[:2]
        cells.append(image_features[: -(-h // 4), : -(-w // 4)].reshape(-1, image_features.shape[-1]))
    features = np.concatenate(cells)
    centered = features - features.mean(0)
    axes = np.linalg.svd(centered, full_matrices=False)[2]
    first, second = centered @ axes[0], centered @ axes[1]
    text = _unit(features[[np.argmax(first), np.argmin(first), np.argmax(np.abs(second))]])
    model = models.OpenSegModel(backbone, text_embedder=FixedTextEmbedder(text))
    class_names = ["cat", "dog", "grass"]
    results = evaluate(model, dataset_of(EXAMPLES), class_names, batch_size=2, progress=False)

    masks = 1 / (1 + np.exp(-outputs["mask_logits"]))  # [B, N, 8, 8]
    logits = np.einsum("bnc,bnhw->bchw", _unit(outputs["region_embeddings"]) @ text.T, masks)
    plain, grounding = [], []
    for example, image_logits in zip(EXAMPLES, logits):
        y_true = example["semantic"][..., 0].astype(np.int64)
        rows, columns = -(-y_true.shape[0] // 4), -(-y_true.shape[1] // 4)
        image_logits = image_logits[:, :rows, :columns]  # no value from a padded cell
        image_logits = _bilinear(_bilinear(image_logits, 4 * rows, axis=1), 4 * columns, axis=2)
        image_logits = image_logits[:, : y_true.shape[0], : y_true.shape[1]]
        plain.append((y_true, image_logits.argmax(0)))
        present = np.unique(y_true[y_true != 255])
        grounding.append((y_true, present[image_logits[present].argmax(0)]))
    assert len(np.unique(np.concatenate([labels.ravel() for _, labels in plain]))) > 1  # not one constant label
    assert results["miou"] == pytest.approx(numpy_miou(plain, 3))
    assert results["grounding_miou"] == pytest.approx(numpy_miou(grounding, 3))
    assert results["grounding_miou"] >= results["miou"] - 0.2  # fewer queries rarely hurt much
    assert results["num_proposals"] == 4 and results["num_segments"] == 4
    assert all(0.0 <= results[f"recall@{t}"] <= 1.0 for t in (0.5, 0.7, 0.9))
