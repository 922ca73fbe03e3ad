"""Tests of `build_dataset` and the `keras-openseg build-dataset` command on the builders' dummy data."""

import os
import pathlib
import re
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds

import keras_openseg.datasets
from keras_openseg import cli
from keras_openseg.datasets import _manual_dir
from keras_openseg.datasets import build
from keras_openseg.datasets import build_dataset

pytestmark = pytest.mark.backend_independent


def _dummy_data(name):
    return pathlib.Path(os.fspath(keras_openseg.datasets.BUILDERS[name].code_path.parent)) / "dummy_data"


def test_build_dataset_returns_the_prepared_builder(tmp_path):
    manual_dir = _dummy_data("localized_narratives")
    builder = build_dataset("localized_narratives/flickr30k", manual_dir=manual_dir, data_dir=tmp_path)
    assert builder.info.full_name == "localized_narratives/flickr30k/1.0.0"
    assert {split: info.num_examples for split, info in builder.info.splits.items()} == {
        "train": 2,
        "validation": 1,
        "test": 1,
    }
    # tfds.load finds it afterwards, and a second build reuses it without needing the manual dir.
    assert len(list(tfds.load("localized_narratives/flickr30k", split="test", data_dir=tmp_path))) == 1
    assert build_dataset("localized_narratives", config="flickr30k", manual_dir=tmp_path / "x", data_dir=tmp_path)


def test_cli_builds_from_dummy_data(tmp_path, capsys):
    manual_dir = _dummy_data("coco_panoptic_captions")
    argv = ["build-dataset", "coco_panoptic_captions", "--manual-dir", str(manual_dir), "--data-dir", str(tmp_path)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "coco_panoptic_captions/2017/1.1.0 ready in" in out and "train 2, validation 1" in out
    assert tfds.builder("coco_panoptic_captions", data_dir=tmp_path).info.splits["train"].num_examples == 2


def test_cli_reports_incomplete_manual_dir_before_tfds_starts(tmp_path, capsys):
    manual_dir = tmp_path / "coco"
    shutil.copytree(_dummy_data("coco_panoptic_captions"), manual_dir)
    (manual_dir / "annotations/panoptic_val2017.json").unlink()
    shutil.rmtree(manual_dir / "val2017")
    (manual_dir / "annotations/captions_train2017.json").unlink()  # no split is complete
    argv = ["build-dataset", "coco_panoptic_captions", "--manual-dir", str(manual_dir)]
    assert cli.main(argv + ["--data-dir", str(tmp_path / "tfds")]) == 2
    err = capsys.readouterr().err
    assert f"missing annotations/panoptic_val2017.json, val2017 in {manual_dir}" in err
    assert f"train: missing annotations/captions_train2017.json in {manual_dir}" in err
    assert "Traceback" not in err
    assert not (tmp_path / "tfds" / "coco_panoptic_captions").exists()  # nothing written


def test_cli_reports_truncated_file_without_traceback(tmp_path, capsys):
    manual_dir = tmp_path / "ln"
    shutil.copytree(_dummy_data("localized_narratives") / "open_images", manual_dir / "open_images")
    image = manual_dir / "open_images/images/validation/0001eeaf4aed83f9.jpg"
    image.write_bytes(image.read_bytes()[:200])
    argv = ["build-dataset", "localized_narratives/open_images", "--manual-dir", str(manual_dir)]
    assert cli.main(argv + ["--data-dir", str(tmp_path / "tfds")]) == 2
    err = capsys.readouterr().err
    assert "open_images/images/validation/0001eeaf4aed83f9.jpg in" in err and "truncated" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["no_such_dataset"], "name: expected one of"),
        (["localized_narratives", "--config", "ade20k"], "has configs coco, flickr30k, open_images; got 'ade20k'"),
        (["localized_narratives/coco", "--config", "flickr30k"], "contradicts"),
    ],
)
def test_cli_rejects_unknown_name_or_config(argv, message, tmp_path, capsys):
    assert cli.main(["build-dataset", *argv, "--data-dir", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_builder_without_manual_download_needs_no_manual_dir(tmp_path, monkeypatch):
    class TinyProcedural(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({"x": np.int64}))

        def _split_generators(self, dl_manager):
            return {"train": ((i, {"x": i}) for i in range(3))}

        def _generate_examples(self):
            raise NotImplementedError

    monkeypatch.setitem(keras_openseg.datasets.BUILDERS, "tiny_procedural", TinyProcedural)
    builder = build_dataset("tiny_procedural", data_dir=tmp_path)
    assert builder.info.splits["train"].num_examples == 3


@pytest.mark.parametrize("name", sorted(keras_openseg.datasets.BUILDERS))
def test_every_manual_builder_declares_the_layout_of_its_dummy_data(name, tmp_path):
    builder_cls = keras_openseg.datasets.BUILDERS[name]
    if not builder_cls.MANUAL_DOWNLOAD_INSTRUCTIONS:
        pytest.skip(f"{name} needs no manual download")
    for config in builder_cls.builder_configs:
        builder = builder_cls(config=config, data_dir=tmp_path)
        paths = builder.required_manual_paths()
        _manual_dir.check_manual_dir(_dummy_data(name), paths, builder.info.full_name)
        with pytest.raises(_manual_dir.ManualDirError, match="missing " + re.escape(paths[0])):
            _manual_dir.check_manual_dir(tmp_path, paths, builder.info.full_name)


def test_add_arguments_parses_the_documented_command():
    import argparse

    parser = argparse.ArgumentParser()
    build.add_arguments(parser)
    args = parser.parse_args(["localized_narratives", "--manual-dir", "m", "--data-dir", "d", "--config", "coco"])
    assert (args.name, args.manual_dir, args.data_dir, args.config) == ("localized_narratives", "m", "d", "coco")
