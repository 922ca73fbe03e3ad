"""`keras-openseg evaluate`: argument parsing, the call to evaluate(), printed tables and the JSON file."""

import argparse
import json

import pytest
from fake_openseg_model import EXAMPLES
from fake_openseg_model import FakeModel
from fake_openseg_model import dataset_of

from keras_openseg import cli as main_cli
from keras_openseg.evaluation import cli


def _parse(argv):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_defaults_and_options():
    args = _parse(["--preset", "p", "--dataset", "ade20k/150"])
    assert (args.split, args.prompts, args.synonyms, args.no_proposals, args.max_examples) == (
        None, "none", False, False, None,
    )  # fmt: skip
    assert (args.batch_size, args.image_size, args.data_dir, args.json) == (4, 0, None, None)
    args = _parse(
        ["--preset", "p", "--dataset", "pascal_voc/20", "--split", "train", "--prompts", "single", "--synonyms",
         "--no-proposals", "--max-examples", "5", "--batch-size", "2", "--image-size", "512", "--data-dir", "d"]
    )  # fmt: skip
    assert (args.split, args.prompts, args.synonyms, args.no_proposals) == ("train", "single", True, True)
    assert (args.max_examples, args.batch_size, args.image_size, args.data_dir) == (5, 2, 512, "d")
    with pytest.raises(SystemExit):
        _parse(["--preset", "p", "--dataset", "d", "--prompts", "many"])


def test_run_writes_json_and_prints_paper_tables(monkeypatch, tmp_path, capsys):
    model = FakeModel()
    loaded = {}

    def load_dataset(name, split, data_dir):
        loaded.update(name=name, split=split, data_dir=data_dir)
        metadata = {"class_names": ["cat", "dog", "grass"], "ignore_label": 255, "held_out_class_names": ["grass"]}
        return dataset_of(EXAMPLES), "validation", metadata

    monkeypatch.setattr(cli, "_load_model", lambda preset: model if preset == "tiny" else None)
    monkeypatch.setattr(cli, "_load_dataset", load_dataset)
    out = tmp_path / "results.json"
    code = main_cli.main(
        ["evaluate", "--preset", "tiny", "--dataset", "openseg_shapes", "--data-dir", str(tmp_path),
         "--prompts", "single", "--synonyms", "--json", str(out), "--no-progress", "--per-class"]
    )  # fmt: skip
    assert code == 0
    assert loaded == {"name": "openseg_shapes", "split": None, "data_dir": str(tmp_path)}
    assert model.text_embedder.calls == [(["cat", "dog", "grass"], ("a photo of a {}.",))]
    results = json.loads(out.read_text())
    assert results["miou"] == pytest.approx((3 / 7 + 9 / 11 + 0.8) / 3)  # as in evaluator_test
    assert results["recall@0.7"] == pytest.approx(0.75)
    assert results["held_out_miou"] == pytest.approx(0.8)
    assert results["per_class_iou"]["dog"] == pytest.approx(9 / 11)
    assert (results["dataset"], results["split"], results["preset"]) == ("openseg_shapes", "validation", "tiny")
    printed = capsys.readouterr().out
    assert "| Method" in printed and "A-847 | PC-459 | A-150 | PC-59 | PAS-20 | openseg_shapes" in printed
    assert "Grounding mIoU (%)" in printed and "Proposal recall (%)" in printed and "| dog" in printed


def _evaluate_voc(monkeypatch, dataset_name, metadata):
    captured = {}

    def fake_evaluate(model, dataset, class_names, **kwargs):
        captured.update(kwargs, class_names=class_names)
        return {"miou": 0.5, "grounding_miou": 0.6}

    monkeypatch.setattr(cli, "_load_model", lambda preset: FakeModel())
    monkeypatch.setattr(cli, "_load_dataset", lambda name, split, data_dir: (None, "validation", metadata))
    monkeypatch.setattr("keras_openseg.evaluation.evaluator.evaluate", fake_evaluate)
    args = _parse(["--preset", "p", "--dataset", dataset_name, "--synonyms", "--no-proposals", "--no-progress"])
    assert cli.run(args) == 0
    return captured


def test_pas20_scores_no_background(monkeypatch):
    captured = _evaluate_voc(monkeypatch, "pascal_voc/20", {"class_names": ["aeroplane", "cat"], "ignore_label": 255})
    assert "background_label" not in captured and "background_class_names" not in captured
    assert captured["synonyms"] == "voc20"


def test_pas20b_uses_the_background_rule(monkeypatch):
    from keras_openseg.evaluation.background_rule import PASCAL_CONTEXT_59_CLASS_NAMES
    from keras_openseg.evaluation.background_rule import VOC_CLASS_NAMES

    outside_voc = [name for name in PASCAL_CONTEXT_59_CLASS_NAMES if name not in VOC_CLASS_NAMES]
    metadata = {
        "class_names": ["background", "cat"],
        "ignore_label": 255,
        "background_label": 0,
        "background_class_names": outside_voc,
    }
    captured = _evaluate_voc(monkeypatch, "pascal_voc/20b", metadata)
    assert captured["background_label"] == 0 and captured["background_class_names"] == outside_voc
    assert captured["synonyms"] == "voc20" and captured["use_proposals"] is False
    assert captured["image_size"] is None and captured["ignore_label"] == 255
