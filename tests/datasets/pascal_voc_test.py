"""Tests of the `pascal_voc` builder on its dummy data (VOC 2012's on-disk format, palette PNG labels)."""

import json
import os
import pathlib
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image
from tensorflow_datasets import testing as tfds_testing

from keras_openseg.datasets import _manual_dir
from keras_openseg.datasets.pascal_voc import pascal_voc
from keras_openseg.datasets.pascal_voc.pascal_voc import PascalVOC

DUMMY_DATA = pathlib.Path(os.fspath(PascalVOC.code_path.parent)) / "dummy_data"
VOC_ROOT = DUMMY_DATA / "VOCdevkit" / "VOC2012"


@pytest.mark.backend_independent
class PascalVOCBuilderTest(tfds_testing.DatasetBuilderTestCase):
    DATASET_CLASS = PascalVOC
    BUILDER_CONFIG_NAMES_TO_TEST = ["20", "20b"]
    SPLITS = {"train": 2, "validation": 2}
    SKIP_CHECKSUMS = True


def _validation_examples(config, data_dir):
    builder = PascalVOC(config=config, data_dir=data_dir)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=DUMMY_DATA))
    examples = tfds.as_numpy(builder.as_dataset(split="validation"))
    return builder, {example["image/filename"].decode(): example for example in examples}


@pytest.fixture(scope="module")
def validation_examples(tmp_path_factory):
    """PAS-20b: VOC's raw labels."""
    return _validation_examples("20b", tmp_path_factory.mktemp("tfds"))


@pytest.mark.backend_independent
def test_pas20_does_not_score_background(tmp_path):
    builder, examples = _validation_examples("20", tmp_path)
    metadata = builder.info.metadata
    assert metadata["benchmark"] == "PAS-20" and metadata["class_names"] == list(pascal_voc.CLASS_NAMES[1:])
    assert metadata["ignore_label"] == 255 and "background_class_names" not in metadata
    for filename, example in examples.items():
        raw = np.asarray(Image.open(VOC_ROOT / "SegmentationClass" / filename.replace(".jpg", ".png"))).astype(int)
        expected = np.where((raw == 0) | (raw == 255), 255, raw - 1)
        np.testing.assert_array_equal(example["semantic"][..., 0], expected)
    semantic = examples["2007_000039.jpg"]["semantic"][..., 0]
    assert set(np.unique(semantic)) == {19, 255} and metadata["class_names"][19] == "tvmonitor"


@pytest.mark.backend_independent
def test_pas20b_names_its_background_rule(validation_examples, shared_data_dir):
    builder, _ = validation_examples
    metadata = builder.info.metadata
    assert metadata["benchmark"] == "PAS-20b" and metadata["background_label"] == 0
    pc59 = json.loads((shared_data_dir / "vocabularies/pc59.json").read_text())
    voc20 = json.loads((shared_data_dir / "vocabularies/voc20.json").read_text())
    assert metadata["background_class_names"] == [name for name in pc59 if name not in voc20]
    assert len(metadata["background_class_names"]) == 39


@pytest.mark.backend_independent
def test_palette_indices_are_stored_not_rgb(validation_examples):
    _, examples = validation_examples
    for filename, example in examples.items():
        palette_png = Image.open(VOC_ROOT / "SegmentationClass" / filename.replace(".jpg", ".png"))
        assert palette_png.mode == "P"
        expected = np.asarray(palette_png)
        np.testing.assert_array_equal(example["semantic"][..., 0], expected)
        assert example["semantic"].dtype == np.uint16
    # 2007_000039 paints a tvmonitor (class 20, drawn in colour (0, 64, 128)) inside a void outline.
    semantic = examples["2007_000039.jpg"]["semantic"][..., 0]
    assert set(np.unique(semantic)) == {0, 20, 255}
    assert tuple(np.asarray(Image.open(VOC_ROOT / "SegmentationClass" / "2007_000039.png").convert("RGB"))[2, 3]) == (
        0,
        64,
        128,
    )


@pytest.mark.backend_independent
def test_metadata(validation_examples):
    builder, _ = validation_examples
    class_names = builder.info.metadata["class_names"]
    assert len(class_names) == 21 and class_names[0] == "background" and class_names[20] == "tvmonitor"
    assert builder.info.metadata["ignore_label"] == 255


@pytest.mark.backend_independent
def test_rgb_label_file_is_rejected():
    rgb = np.zeros((2, 3, 3), np.uint8)
    with pytest.raises(_manual_dir.ManualDirError, match="palette PNG"):
        pascal_voc.read_class_indices(rgb, "SegmentationClass/x.png")
    with pytest.raises(_manual_dir.ManualDirError, match=r"\[21\]"):
        pascal_voc.read_class_indices(np.full((2, 3), 21, np.uint8), "SegmentationClass/x.png")


@pytest.mark.backend_independent
def test_truncated_manual_dir_names_the_missing_folder(tmp_path):
    manual_dir = tmp_path / "manual"
    shutil.copytree(DUMMY_DATA, manual_dir)
    shutil.rmtree(manual_dir / "VOCdevkit" / "VOC2012" / "SegmentationClass")
    builder = PascalVOC(config="20", data_dir=tmp_path / "tfds")
    with pytest.raises(_manual_dir.ManualDirError, match="VOCdevkit/VOC2012/SegmentationClass"):
        _manual_dir.check_manual_dir(manual_dir, builder.required_manual_paths(), builder.info.full_name)
    # tfds's own entry point reaches the same check before writing anything.
    with pytest.raises(_manual_dir.ManualDirError, match="SegmentationClass"):
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
