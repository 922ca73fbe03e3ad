"""`keras-openseg demo --quick`: the whole demo at smoke-test size (what CI runs of the README's first command)."""

import argparse
import json

import keras
import numpy as np
import pytest

from keras_openseg import demo
from keras_openseg.losses import grounding_loss
from keras_openseg.models import PerPixelGroundingModel


def _parse(argv):
    return demo.add_arguments(argparse.ArgumentParser()).parse_args(argv)


def test_arguments_default_to_the_full_demo_in_demo_output():
    args = _parse([])
    assert args.output == "demo_output" and not args.quick and not args.no_baseline
    assert demo.SETTINGS["quick"].dataset == "openseg_shapes/tiny"
    assert demo.SETTINGS["full"].dataset == "openseg_shapes/default"


def test_per_pixel_baseline_grounds_words_in_pixels():
    backbone, preprocessor, _ = demo.build_demo_backbone(demo.SETTINGS["quick"], embedding_dim=8)
    model = PerPixelGroundingModel(backbone, preprocessor)  # "max" matching: no in-graph loop to trace
    rng = np.random.default_rng(0)
    pixels = rng.normal(size=(2, 16, 16, 8)).astype("float32")
    words = rng.normal(size=(2, 3, 8)).astype("float32")
    x = {"images": np.zeros((2, 64, 64, 3), "float32"), "word_embeddings": words, "word_valid": np.ones((2, 3), bool)}
    y = {"masks": np.zeros((2, 4, 64, 64), "float32"), "mask_valid": np.zeros((2, 4), bool)}
    y_pred = {
        "mask_logits": np.zeros((2, 8, 16, 16), "float32"),
        "region_embeddings": np.ones((2, 8, 8), "float32"),
        "pixel_embeddings": pixels,
    }
    loss = float(keras.ops.convert_to_numpy(model.compute_loss(x=x, y=y, y_pred=y_pred)))
    # No valid mask: the loss is the grounding loss alone, with the 2x2-averaged pixels as the regions.
    pooled = pixels.reshape(2, 8, 2, 8, 2, 8).mean(axis=(2, 4)).reshape(2, 64, 8)
    expected = grounding_loss(pooled, words, np.ones((2, 3), bool), temperature=model.temperature_layer())
    assert loss == pytest.approx(float(keras.ops.convert_to_numpy(expected)), rel=1e-5)


def test_summary_table_marks_targets():
    per_class = {"circle": 0.5, "sky": 0.9}
    result = {
        "miou": 0.7,
        "grounding_miou": 0.8,
        "per_class_iou": per_class,
        "recall@0.5": 0.9,
        "recall@0.7": 0.5,
        "recall@0.9": 0.1,
        "held_out_miou": None,
    }
    results = {
        "openseg": result,
        "openseg_unseen_synonyms": {"miou": 0.35, "grounding_miou": 0.5},
        "openseg_per_pixel_readout": {"miou": 0.6},
        "baseline": {"miou": 0.6, "grounding_miou": 0.7},
        "baseline_unseen_synonyms": {"miou": 0.3},
    }
    summary = demo.summarize(results, metadata={})
    assert summary["min_class"] == "circle" and summary["synonym_ratio"] == pytest.approx(0.5)
    summary.update(preset="p", overlays="o", output="out", wall_seconds=61.0, backend="tensorflow")
    table = demo.format_summary(summary)
    assert "lowest class IoU (circle)" in table
    assert table.count(" ok") == 5 and table.count("MISS") == 1  # only the synonym ratio misses
    assert "smoke test" not in table
    summary.update(settings={"architecture": "quick"})
    assert "--quick is a smoke test" in demo.format_summary(summary)


# The slowest test of the suite (teacher, pseudo labels, student, baseline, five evaluations, presets: about a
# minute of CPU on TensorFlow, 40 s on torch, 100 s on JAX, measured on 2 shared cores), so it runs once, on
# torch's pass: CI's `make demo-wheel` runs the same quick demo on TensorFlow (Keras' default backend) from the
# built wheel, so between the two both backends run it end to end on every CI run.
@pytest.mark.slow
@pytest.mark.end_to_end("torch", covered_by="CI's `make demo-wheel` runs the quick demo on tensorflow")
def test_quick_demo_trains_evaluates_and_saves(tmp_path):
    output = tmp_path / "demo_output"
    # Threshold 0: every mask NMS keeps becomes a pseudo label (the default, 0.9, runs in CI's wheel demo).
    # bfloat16 here (mixed precision through every stage and a preset saved from it), CI's wheel demo the default.
    flags = ["--quick", "--output", str(output), "--data-dir", str(tmp_path / "tfds"), "--pseudo-label-threshold", "0"]
    flags += ["--precision", "bfloat16"]
    # And the mask shape embedding through every stage (teacher, pseudo labels, student, baseline, preset); the
    # wheel demo runs without it.
    flags += ["--region-shape-embedding"]
    # And hue rotation (half the training images, every stage); the wheel demo runs without it.
    flags += ["--hue-rotation", "0.5"]
    assert demo.run(_parse(flags)) == 0

    metrics = json.loads((output / "metrics.json").read_text())
    for key in (
        "miou",
        "grounding_miou",
        "recall@0.5",
        "recall@0.7",
        "recall@0.9",
        "unseen_synonyms_miou",
        "baseline_miou",
        "min_class_iou",
        "miou_gain",
    ):
        assert isinstance(metrics[key], float), key
    # The synonym / name ratio only where the names score something (a few steps may leave mIoU ~ 0).
    ratio = metrics["synonym_ratio"]
    assert (ratio is None) == (metrics["miou"] < 0.05)
    assert ratio is None or ratio == pytest.approx(metrics["unseen_synonyms_miou"] / metrics["miou"])
    assert set(metrics["per_class_iou"]) >= {"circle", "hexagon", "sky"}
    assert metrics["pseudo_label_threshold"] == 0.0
    assert metrics["precision"] == "bfloat16"
    assert metrics["backbone_options"] == {"region_shape_embedding": True}
    assert metrics["hue_rotation"] == 0.5
    assert 0.0 <= metrics["pseudo_masks_per_image"] <= demo.SETTINGS["quick"].max_masks
    # One panel row per held-out image (class names), the summary sheet and the never-seen synonyms' sheet.
    count = demo.SETTINGS["quick"].overlay_images
    overlays = sorted(p.name for p in (output / "overlays").glob("*.png"))
    assert overlays == sorted(
        [f"held_out_{i}_class_names.png" for i in range(count)] + ["summary.png", "unseen_synonyms.png"]
    )
    queries = json.loads((output / "overlays" / "queries.json").read_text())
    assert "plus sign" in queries["unseen_synonyms"]  # the queries as typed, as the legends show them
    from PIL import Image

    from keras_openseg.visualization import summary_sheet

    blank = np.zeros((64, 64), np.int32)  # the tiny split's 64 px images, four panels, the class names' legend
    panels = {"OpenSeg": blank, "per-pixel baseline": blank, "ground truth": blank}
    expected = summary_sheet([(np.zeros((64, 64, 3), np.uint8), panels)] * count, queries["class_names"])
    with Image.open(output / "overlays" / "summary.png") as sheet:
        assert sheet.size == (expected.shape[1], expected.shape[0])

    from keras_openseg.models import OpenSegModel

    model = OpenSegModel.from_preset(str(output / "preset"))
    assert model.backbone.region_shape_embedding and model.backbone.mask_shape_embedding is not None
    result = model.segment(np.zeros((64, 64, 3), "uint8"), queries=["round", "turf"])
    assert result["labels"].shape == (1, 64, 64)


def test_region_shape_embedding_flag():
    assert not _parse([]).region_shape_embedding
    assert _parse(["--region-shape-embedding"]).region_shape_embedding


def test_hue_rotation_flag_reaches_every_stage(tmp_path):
    assert _parse([]).hue_rotation == 0.0
    assert _parse(["--hue-rotation", "0.25"]).hue_rotation == 0.25
    run = demo._Demo(demo.SETTINGS["quick"], str(tmp_path), hue_rotation=0.25)
    assert run._config("teacher", steps=2, teacher=True).hue_rotation == 0.25
    assert run._config("student", steps=2).hue_rotation == 0.25
    assert demo._Demo(demo.SETTINGS["quick"], str(tmp_path))._config("student", steps=2).hue_rotation == 0.0
    with pytest.raises(ValueError, match="--hue-rotation"):
        demo._Demo(demo.SETTINGS["quick"], str(tmp_path), hue_rotation=2.0)


def test_pseudo_label_threshold_outside_0_1_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--pseudo-label-threshold"):
        demo._Demo(demo.SETTINGS["quick"], str(tmp_path), pseudo_label_threshold=1.5)


def test_precision_auto_is_bfloat16_where_it_is_fast(monkeypatch):
    from keras_openseg.models import compilation

    assert _parse([]).precision == demo.DEFAULT_PRECISION
    assert _parse(["--precision", "float32"]).precision == "float32"
    for fast, expected in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(compilation, "fast_bfloat16", lambda fast=fast: fast)
        assert demo.resolve_precision("auto") == expected
        assert demo.resolve_precision("float32") == "float32"  # an explicit choice is kept
    with pytest.raises(ValueError, match="--precision"):
        demo.resolve_precision("float64")
    with pytest.raises(ValueError, match="precision"):
        demo._Demo(demo.SETTINGS["quick"], "unused", precision="auto")  # resolved before a run starts
