"""Paper table 4's ground-truth-mask oracle (issue 14 item 5): `evaluate(gt_masks=True)` / `--gt-masks`.

The expectation is numpy: the ground-truth segments mask-pool the backbone's raw `pixel_embeddings` (exact box
filter onto F_z's stride-4 grid), eq. (6) with those masks as s, and a confusion-matrix mIoU.
"""

import pathlib
import sys

import numpy as np
import pytest
from fake_openseg_model import EXAMPLES
from fake_openseg_model import FakeModel
from fake_openseg_model import dataset_of
from fake_openseg_model import example
from numpy_miou import numpy_confusion
from numpy_miou import numpy_miou

from keras_openseg import cli as main_cli
from keras_openseg.evaluation import cli
from keras_openseg.evaluation import evaluate
from keras_openseg.evaluation.evaluator import gt_mask_logits

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "models"))

from tiny_openseg import OFFSET  # noqa: E402
from tiny_openseg import SCALE  # noqa: E402
from tiny_openseg import FakeTextEmbedder  # noqa: E402
from tiny_openseg import tiny_backbone  # noqa: E402
from tiny_openseg import tiny_model  # noqa: E402

CLASS_NAMES = ["cat", "dog", "grass", "sky"]
# Both images round up to a 64 x 64 canvas, alone or together.
SIZES = ((40, 52), (33, 64))


@pytest.fixture(scope="module")
def model():
    import keras

    keras.utils.set_random_seed(3)
    return tiny_model(text_embedder=FakeTextEmbedder())


def _examples():
    rng = np.random.default_rng(0)
    examples = []
    for index, (h, w) in enumerate(SIZES):
        semantic = np.zeros((h, w), np.int64)
        semantic[h // 2 :] = 2
        semantic[: h // 2, w // 3 :] = 1 + 2 * index  # dog or sky
        semantic[h - 5 :, w - 7 :] = 255  # ignored
        ids = np.where(semantic == 2, 7, 3 + index)
        ids[:, w // 2 :] += 10  # two instances per class: the masks split there
        ids[semantic == 255] = 0
        ex = example(
            semantic, np.zeros((h, w), int), np.zeros((h, w), int), ids, [(i, False) for i in np.unique(ids) if i]
        )
        ex["image"] = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
        examples.append(ex)
    return examples


def _unit(x):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-6)


def _numpy_oracle(model, image, masks, text):
    """[C, H, W] eq. (6) logits with `masks` [M, H, W] as s, region = box-filtered mask pooling of F_z."""
    h, w = image.shape[:2]
    canvas = np.zeros((1, 64, 64, 3), np.float32)
    canvas[0, :h, :w] = image.astype(np.float32) * np.asarray(SCALE, np.float32) + np.asarray(OFFSET, np.float32)
    padding_mask = np.zeros((1, 64, 64), np.float32)
    padding_mask[0, :h, :w] = 1.0  # the image's pixels: the padding takes no part in F_z
    inputs = {"images": canvas, "padding_mask": padding_mask}
    features = np.asarray(model.backbone.predict_on_batch(inputs)["pixel_embeddings"], np.float32)[0]
    fh, fw, _ = features.shape
    on_canvas = np.zeros((len(masks), 64, 64), np.float32)
    on_canvas[:, :h, :w] = masks
    on_grid = on_canvas.reshape(len(masks), fh, 64 // fh, fw, 64 // fw).mean(axis=(2, 4))
    regions = _unit(np.einsum("nhw,hwe->ne", on_grid, features))
    return np.einsum("nc,nhw->chw", regions @ _unit(text).T, masks.astype(np.float32))


def test_gt_mask_logits_is_eq6_with_the_ground_truth_masks(model):
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, size + (3,)).astype(np.uint8) for size in SIZES]
    masks = []
    for h, w in SIZES:
        m = np.zeros((3, h, w), bool)
        m[0, : h // 2], m[1, h // 2 :, : w // 3], m[2, h // 2 :, w // 3 :] = True, True, True
        masks.append(m)
    text = rng.normal(size=(5, model.backbone.embedding_dim)).astype(np.float32)
    logits = gt_mask_logits(model, images, masks, text)
    for image, m, image_logits in zip(images, masks, logits):
        expected = _numpy_oracle(model, image, m, text)
        assert image_logits.shape == expected.shape
        np.testing.assert_allclose(image_logits, expected, rtol=1e-4, atol=1e-5)
        # One mask, one label: every pixel of a ground-truth mask gets that mask's class.
        labels = image_logits.argmax(0)
        for mask in m:
            assert len(np.unique(labels[mask])) == 1


def test_gt_mask_logits_pools_as_the_backbone_does():
    # A backbone with a mask shape embedding: the oracle's regions are the backbone's own pooling of the
    # ground-truth masks, z = z / |z| + g(s) (`OpenSegBackbone.pool_regions`), not a bare mask pooling.
    import keras

    keras.utils.set_random_seed(4)
    backbone = tiny_backbone(region_shape_embedding=True)
    shape = backbone.mask_shape_embedding
    kernel = np.random.default_rng(2).normal(size=shape.output_dense.kernel.shape).astype(np.float32)
    shape.output_dense.kernel.assign(kernel)
    shaped = tiny_model(backbone=backbone, text_embedder=FakeTextEmbedder())
    rng = np.random.default_rng(3)
    h, w = SIZES[0]
    image = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
    masks = np.zeros((2, h, w), bool)
    masks[0, 4:20, 6:30], masks[1] = True, True
    masks[1, 4:20, 6:30] = False
    text = rng.normal(size=(3, backbone.embedding_dim)).astype(np.float32)
    (logits,) = gt_mask_logits(shaped, [image], [masks], text)
    canvas = np.zeros((1, 64, 64, 3), np.float32)
    canvas[0, :h, :w] = image.astype(np.float32) * np.asarray(SCALE, np.float32) + np.asarray(OFFSET, np.float32)
    padding_mask = np.zeros((1, 64, 64), np.float32)
    padding_mask[0, :h, :w] = 1.0
    features = np.asarray(
        backbone.predict_on_batch({"images": canvas, "padding_mask": padding_mask})["pixel_embeddings"]
    )
    on_canvas = np.zeros((2, 64, 64), np.float32)
    on_canvas[:, :h, :w] = masks
    on_grid = on_canvas.reshape(2, 16, 4, 16, 4).mean(axis=(2, 4))
    shape_embeddings = keras.ops.convert_to_numpy(shape(on_grid[None]))[0]
    assert np.abs(shape_embeddings).max() > 1e-3
    regions = _unit(_unit(np.einsum("nhw,hwe->ne", on_grid, features[0])) + shape_embeddings)
    expected = np.einsum("nc,nhw->chw", regions @ _unit(text).T, masks.astype(np.float32))
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5)


def test_evaluate_gt_masks_matches_numpy(model):
    examples = _examples()
    results = evaluate(model, dataset_of(examples), CLASS_NAMES, batch_size=2, gt_masks=True, progress=False)
    text = np.asarray(model.text_embedder.embed(CLASS_NAMES), np.float32)
    pairs, num_masks = [], 0
    for ex in examples:
        semantic = ex["semantic"][..., 0].astype(np.int64)
        ids = ex["panoptic_image"].astype(np.int64) @ np.array([1, 256, 65536])
        covered = semantic != 255
        keys = np.unique(np.stack([semantic[covered], ids[covered]], -1), axis=0)
        masks = np.stack([(semantic == c) & (ids == i) & covered for c, i in keys])
        num_masks += len(masks)
        labels = _numpy_oracle(model, ex["image"], masks, text).argmax(0)
        pairs.append((semantic, labels))
    miou = numpy_miou(pairs, len(CLASS_NAMES))
    confusion = numpy_confusion(pairs, len(CLASS_NAMES))
    accuracy = np.trace(confusion) / confusion.sum()
    assert results["num_gt_masks"] == num_masks == 2 * 5  # 3 classes per image, 2 instances of two of them
    assert results["gt_mask_miou"] == pytest.approx(miou, abs=1e-9)
    assert results["gt_mask_pixel_accuracy"] == pytest.approx(accuracy, abs=1e-9)
    assert set(results["per_class_gt_mask_iou"]) == set(CLASS_NAMES)
    # The confusion matrices on request: the oracle's is the numpy one, with a last column for no class.
    with_confusion = evaluate(
        model, dataset_of(examples), CLASS_NAMES, batch_size=2, gt_masks=True, confusion=True, progress=False
    )
    np.testing.assert_array_equal(with_confusion["gt_mask_confusion_matrix"][:, : len(CLASS_NAMES)], confusion)
    assert with_confusion["gt_mask_confusion_matrix"].shape == (len(CLASS_NAMES), len(CLASS_NAMES) + 1)
    assert with_confusion["confusion_matrix"].sum() == confusion.sum()
    assert "confusion_matrix" not in results
    # The proposals' mIoU is still there, computed apart.
    plain = evaluate(model, dataset_of(examples), CLASS_NAMES, batch_size=2, progress=False)
    assert results["miou"] == pytest.approx(plain["miou"]) and "gt_mask_miou" not in plain


def test_gt_masks_errors_and_cli(monkeypatch, tmp_path, model, capsys):
    with pytest.raises(ValueError, match="backbone"):
        evaluate(FakeModel(), dataset_of(EXAMPLES), ["cat", "dog", "grass"], gt_masks=True, progress=False)
    metadata = {"class_names": CLASS_NAMES, "ignore_label": 255}
    monkeypatch.setattr(cli, "_load_model", lambda preset: model)
    monkeypatch.setattr(cli, "_load_dataset", lambda *args: (dataset_of(_examples()), "validation", metadata))
    out = tmp_path / "results.json"
    argv = ["evaluate", "--preset", "p", "--dataset", "openseg_shapes", "--no-progress", "--gt-masks"]
    assert main_cli.main(argv + ["--json", str(out)]) == 0
    assert "Ground-truth-mask mIoU (%)" in capsys.readouterr().out
    import json

    assert json.loads(out.read_text())["gt_mask_miou"] >= 0.0
    code = main_cli.main(["evaluate", "--saved-model", "x", "--dataset", "d", "--gt-masks"])
    err = capsys.readouterr().err
    assert code == 2 and "--gt-masks" in err and len(err.splitlines()) == 1
