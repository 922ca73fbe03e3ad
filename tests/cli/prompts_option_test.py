"""One text regime (issue 14 item 3): `segment`, `evaluate()` and `keras-openseg evaluate` share `--prompts`.

none | single | default | FILE, resolved by `keras_openseg.text.prompts.resolve_prompts`, default none (bare
names, as `WordEmbeddingTable` embeds the training caption words); the results record what was used.
"""

import argparse
import json
import pathlib
import sys

import numpy as np
import pytest
from PIL import Image

from keras_openseg import cli
from keras_openseg import segment_cli
from keras_openseg.evaluation import cli as evaluate_cli
from keras_openseg.evaluation import evaluate
from keras_openseg.evaluation import resolve_prompt_templates
from keras_openseg.models import OpenSegModel
from keras_openseg.text import WordEmbeddingTable
from keras_openseg.text import prompts

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "evaluation"))

from fake_openseg_model import EXAMPLES  # noqa: E402
from fake_openseg_model import FakeModel  # noqa: E402
from fake_openseg_model import dataset_of  # noqa: E402

QUERIES = "cat; dog, puppy; grass"


@pytest.fixture()
def template_file(tmp_path):
    path = tmp_path / "templates.txt"
    path.write_text("# my templates\na photo of the {}.\n\nthe {} .\n", encoding="utf-8")
    return str(path)


def _parse(add_arguments, argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_resolve_prompts_names_files_and_lists(template_file, tmp_path):
    assert prompts.resolve_prompts(None) == (None, {"prompts": "none", "prompt_templates": None})
    assert prompts.resolve_prompts("none") == prompts.resolve_prompts(None)
    templates, record = prompts.resolve_prompts("default")
    assert templates == prompts.DEFAULT_TEMPLATES and record == {
        "prompts": "default",
        "prompt_templates": list(templates),
    }
    templates, record = prompts.resolve_prompts(template_file)
    assert templates == ("a photo of the {}.", "the {} .")
    assert record == {"prompts": template_file, "prompt_templates": ["a photo of the {}.", "the {} ."]}
    assert resolve_prompt_templates(template_file) == templates  # the evaluation module's name, same resolver
    with pytest.raises(ValueError, match="no such file"):
        prompts.resolve_prompts(str(tmp_path / "missing.txt"))
    bad = tmp_path / "bad.txt"
    bad.write_text("no placeholder\n", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.txt"):
        prompts.resolve_prompts(str(bad))
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no template"):
        prompts.resolve_prompts(str(empty))


def test_the_default_is_how_the_training_words_were_embedded(template_file):
    # WordEmbeddingTable.build(words, embedder) embeds bare words unless given templates; its id says so.
    class Embedder:
        identity = "enc"

    assert WordEmbeddingTable.encoder_id_of(Embedder(), prompts.resolve_prompts(prompts.DEFAULT_PROMPTS)[0]) == "enc"
    segment_args = _parse(segment_cli.add_arguments, ["x.png", "--preset", "p", "--queries", "cat"])
    evaluate_args = _parse(evaluate_cli.add_arguments, ["--preset", "p", "--dataset", "d"])
    assert segment_args.prompts == evaluate_args.prompts == "none"
    for add_arguments, argv in (
        (segment_cli.add_arguments, ["x.png", "--preset", "p", "--queries", "cat"]),
        (evaluate_cli.add_arguments, ["--preset", "p", "--dataset", "d"]),
    ):
        for value in ("none", "single", "default", template_file):
            assert _parse(add_arguments, argv + ["--prompts", value]).prompts == value
        with pytest.raises(SystemExit):
            _parse(add_arguments, argv + ["--prompts", "no_such_file.txt"])


def test_evaluate_defaults_to_bare_names_and_records_the_prompts(template_file):
    model = FakeModel()
    results = evaluate(model, dataset_of(EXAMPLES), ["cat", "dog", "grass"], progress=False)
    assert model.text_embedder.calls == [(["cat", "dog", "grass"], None)]
    assert (results["prompts"], results["prompt_templates"]) == ("none", None)
    model = FakeModel()
    results = evaluate(model, dataset_of(EXAMPLES), ["cat", "dog", "grass"], prompts=template_file, progress=False)
    assert model.text_embedder.calls == [(["cat", "dog", "grass"], ("a photo of the {}.", "the {} ."))]
    assert (results["prompts"], results["prompt_templates"]) == (template_file, ["a photo of the {}.", "the {} ."])


def test_evaluate_cli_json_records_the_prompts(monkeypatch, tmp_path, template_file, capsys):
    metadata = {"class_names": ["cat", "dog", "grass"], "ignore_label": 255}
    for argv, expected in (
        ([], ("none", None)),
        (["--prompts", template_file], (template_file, ["a photo of the {}.", "the {} ."])),
    ):
        model = FakeModel()
        monkeypatch.setattr(evaluate_cli, "_load_model", lambda preset, model=model: model)
        monkeypatch.setattr(evaluate_cli, "_load_dataset", lambda *a: (dataset_of(EXAMPLES), "validation", metadata))
        out = tmp_path / "results.json"
        argv = ["evaluate", "--preset", "p", "--dataset", "openseg_shapes", "--json", str(out), "--no-progress"] + argv
        assert cli.main(argv) == 0
        results = json.loads(out.read_text())
        assert (results["prompts"], results["prompt_templates"]) == expected
        assert model.text_embedder.calls[0][1] == (None if expected[1] is None else tuple(expected[1]))


@pytest.mark.parametrize("use_file", [False, True])
def test_segment_cli_embeds_with_the_prompts_and_records_them(
    model_preset, image_files, tmp_path, capsys, template_file, use_file
):
    output = tmp_path / "out"
    argv = ["segment", image_files[0], "--preset", model_preset, "--queries", QUERIES, "--output", str(output)]
    assert cli.main(argv + (["--prompts", template_file] if use_file else [])) == 0
    templates = ("a photo of the {}.", "the {} .") if use_file else None
    model = OpenSegModel.from_preset(model_preset)
    image = np.asarray(Image.open(image_files[0]).convert("RGB"))
    expected = model.segment([image], queries=["cat", ["dog", "puppy"], "grass"], templates=templates)
    np.testing.assert_array_equal(np.asarray(Image.open(output / "image0_labels.png")), expected["labels"][0])
    if use_file:  # the templates change the text embeddings, so the logits (labels are coarse on a tiny model)
        bare = model.segment([image], queries=["cat", ["dog", "puppy"], "grass"])
        assert not np.allclose(bare["logits"][0], expected["logits"][0])
    record = json.loads((output / "segment.json").read_text())
    assert record["queries"] == [["cat"], ["dog", "puppy"], ["grass"]]
    assert record["prompts"] == (template_file if use_file else "none")
    assert record["prompt_templates"] == (list(templates) if use_file else None)
