"""`keras-openseg demo --quick`: the whole demo at smoke-test size (what CI runs of the README's first command)."""

import argparse
import json
import math

import keras
import numpy as np
import pytest

from keras_openseg import demo


def _parse(argv):
    return demo.add_arguments(argparse.ArgumentParser()).parse_args(argv)


def test_arguments_default_to_the_full_demo_in_demo_output():
    args = _parse([])
    assert args.output == "demo_output" and not args.quick and not args.no_baseline
    assert demo.SETTINGS["quick"].dataset == "openseg_shapes/tiny"
    assert demo.SETTINGS["full"].dataset == "openseg_shapes/default"


def test_per_pixel_baseline_grounds_words_in_pixels():
    backbone, preprocessor, matching = demo.build_demo_backbone(demo.SETTINGS["quick"], embedding_dim=8)
    model = demo.PerPixelGroundingModel(backbone, preprocessor, matching=matching)
    images = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    x = {"images": images, "word_embeddings": np.ones((2, 3, 8), "float32"), "word_valid": np.ones((2, 3), bool)}
    y = {"masks": np.zeros((2, 4, 64, 64), "float32"), "mask_valid": np.zeros((2, 4), bool)}
    y_pred = model(preprocessor.image_converter(images))
    loss = float(keras.ops.convert_to_numpy(model.compute_loss(x=x, y=y, y_pred=y_pred)))
    # No valid mask: the loss is the grounding loss alone, over 8 x 8 pooled pixels instead of 4 regions.
    assert math.isfinite(loss) and loss > 0


def test_summary_table_marks_targets():
    per_class = {"circle": 0.5, "sky": 0.9}
    result = {"miou": 0.7, "grounding_miou": 0.8, "per_class_iou": per_class, "recall@0.5": 0.9,
              "recall@0.7": 0.5, "recall@0.9": 0.1, "held_out_miou": None}
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


@pytest.mark.slow
def test_quick_demo_trains_evaluates_and_saves(tmp_path):
    output = tmp_path / "demo_output"
    args = _parse(["--quick", "--output", str(output), "--data-dir", str(tmp_path / "tfds")])
    assert demo.run(args) == 0

    metrics = json.loads((output / "metrics.json").read_text())
    for key in ("miou", "grounding_miou", "recall@0.5", "recall@0.7", "recall@0.9", "unseen_synonyms_miou",
                "baseline_miou", "min_class_iou", "synonym_ratio", "miou_gain"):
        assert isinstance(metrics[key], float), key
    assert set(metrics["per_class_iou"]) >= {"circle", "hexagon", "sky"}
    overlays = sorted(p.name for p in (output / "overlays").glob("*.png"))
    assert len(overlays) == 2 * demo.SETTINGS["quick"].overlay_images
    assert any("unseen_synonyms" in name for name in overlays)

    from keras_openseg.models import OpenSegModel

    model = OpenSegModel.from_preset(str(output / "preset"))
    result = model.segment(np.zeros((64, 64, 3), "uint8"), queries=["round", "turf"])
    assert result["labels"].shape == (1, 64, 64)
