"""TrainingConfig: the paper's defaults, JSON / YAML files, flag overrides, validation messages."""

import argparse
import json

import pytest

from keras_openseg import cli as keras_openseg_cli
from keras_openseg.training import TrainingConfig
from keras_openseg.training import cli

pytestmark = pytest.mark.backend_independent


def parse(*flags):
    return cli.add_arguments(argparse.ArgumentParser()).parse_args(list(flags))


def test_defaults_are_the_paper_recipe():
    config = TrainingConfig()
    assert (config.learning_rate, config.weight_decay, config.keep_prob, config.image_size) == (0.005, 1e-5, 0.5, 640)
    assert config.sync_loss is False  # the paper's per-core ("unsync") grounding loss
    assert config.supervision == "captions"  # the paper's weak supervision, not the supervised upper bound
    assert config.total_warmup_steps == config.steps // 20
    assert TrainingConfig(datasets="a,b").datasets == ("a", "b")


def test_file_then_flags(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"steps": 7, "batch_size": 4, "datasets": ["openseg_shapes/tiny"]}))
    (tmp_path / "run.yaml").write_text("steps: 9\nmixed_precision: bfloat16\nsync_loss: true\n")
    config = cli.config_from_args(parse("--config", str(tmp_path / "run.json"), "--steps", "11", "--teacher"))
    assert (config.steps, config.batch_size, config.datasets, config.teacher) == (11, 4, ("openseg_shapes/tiny",), True)
    config = cli.config_from_args(parse("--config", str(tmp_path / "run.yaml"), "--dataset", "a,b"))
    assert (config.steps, config.mixed_precision, config.sync_loss) == (9, "bfloat16", True)
    assert config.datasets == ("a", "b")


def test_hue_rotation_flag_reaches_the_pipeline(monkeypatch):
    from keras_openseg import data
    from keras_openseg.training import recipe

    config = cli.config_from_args(parse("--hue-rotation", "0.5", "--image-size", "32", "--batch-size", "2"))
    assert config.hue_rotation == 0.5 and TrainingConfig().hue_rotation == 0.0
    seen = {}
    monkeypatch.setattr(data, "make_training_dataset", lambda *args, **kwargs: seen.update(kwargs) or "dataset")
    assert recipe.build_training_dataset(config, table=None, sources=[]) == "dataset"
    assert seen["hue_rotation"] == 0.5


def test_resume_continues_the_saved_config(tmp_path):
    TrainingConfig(steps=5, image_size=32, output=str(tmp_path)).save(str(tmp_path / "training_config.json"))
    config = cli.config_from_args(parse("--output", str(tmp_path), "--resume", "--steps", "8"))
    assert (config.image_size, config.steps, config.resume) == (32, 8, True)


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"steps": 0}, "steps"),
        ({"keep_prob": 0.0}, "keep_prob"),
        ({"hue_rotation": 1.5}, "hue_rotation"),
        ({"hue_rotation": -0.1}, "hue_rotation"),
        ({"hue_rotation": "0.5"}, "hue_rotation"),
        ({"distribution": "pipeline"}, "distribution"),
        ({"mixed_precision": "int8"}, "mixed_precision"),
        ({"optimizer": "lamb"}, "optimizer"),
        ({"batch_size": 6, "group_size": 4}, "group_size"),
        ({"warmup_steps": 2000}, "warmup_steps"),
        ({"datasets": ()}, "datasets"),
        ({"supervision": "bad"}, "supervision"),
        ({"supervision": "labels", "teacher": True}, "supervision"),
    ],
)
def test_bad_values_name_the_field(changes, field):
    with pytest.raises(ValueError, match=field):
        TrainingConfig(**changes)


def test_unknown_fields_are_refused(tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps({"stepz": 3}))
    with pytest.raises(ValueError, match="stepz"):
        TrainingConfig.from_file(str(tmp_path / "bad.json"))
    # The command reports it as one `keras-openseg: error:` line with status 2 (keras_openseg.cli catches it).
    with pytest.raises(ValueError, match="stepz"):
        cli.run(parse("--config", str(tmp_path / "bad.json")))
    assert keras_openseg_cli.main(["train", "--config", str(tmp_path / "bad.json")]) == 2
