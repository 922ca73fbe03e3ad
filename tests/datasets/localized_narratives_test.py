"""Tests of `localized_narratives` on its dummy data (official JSONL format and image layouts)."""

import json
import os
import pathlib
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets import testing as tfds_testing

from keras_openseg.datasets import _manual_dir
from keras_openseg.datasets.localized_narratives import LocalizedNarratives

DUMMY_DATA = pathlib.Path(os.fspath(LocalizedNarratives.code_path.parent)) / "dummy_data"


@pytest.mark.backend_independent
class LocalizedNarrativesCocoTest(tfds_testing.DatasetBuilderTestCase):
    DATASET_CLASS = LocalizedNarratives
    BUILDER_CONFIG_NAMES_TO_TEST = ["coco"]
    SPLITS = {"train": 3, "validation": 1}
    SKIP_CHECKSUMS = True


@pytest.mark.backend_independent
class LocalizedNarrativesFlickr30kTest(tfds_testing.DatasetBuilderTestCase):
    DATASET_CLASS = LocalizedNarratives
    BUILDER_CONFIG_NAMES_TO_TEST = ["flickr30k"]
    SPLITS = {"train": 2, "validation": 1, "test": 1}
    SKIP_CHECKSUMS = True


@pytest.mark.backend_independent
class LocalizedNarrativesOpenImagesTest(tfds_testing.DatasetBuilderTestCase):
    DATASET_CLASS = LocalizedNarratives
    BUILDER_CONFIG_NAMES_TO_TEST = ["open_images"]
    SPLITS = {"train": 2, "validation": 1, "test": 1}
    SKIP_CHECKSUMS = True


def _prepare(config, manual_dir, data_dir):
    builder = LocalizedNarratives(config=config, data_dir=data_dir)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    return builder


@pytest.mark.backend_independent
def test_no_ade20k_part():
    assert set(LocalizedNarratives.builder_configs) == {"coco", "flickr30k", "open_images"}


@pytest.mark.backend_independent
def test_narratives_grouped_per_image_and_open_images_ids_round_trip(tmp_path):
    coco = _prepare("coco", DUMMY_DATA, tmp_path)
    (validation,) = tfds.as_numpy(coco.as_dataset(split="validation"))
    assert validation["image/id"] == 139 and validation["image/filename"] == b"000000000139.jpg"
    jsonl = DUMMY_DATA / "coco/annotations/coco_val_localized_narratives.jsonl"
    narratives = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [caption.decode() for caption in validation["captions"]] == [n["caption"] for n in narratives]

    open_images = _prepare("open_images", DUMMY_DATA, tmp_path)
    for example in tfds.as_numpy(open_images.as_dataset(split="train")):
        hex_id = example["image/filename"].decode().removesuffix(".jpg")
        assert f"{int(np.int64(example['image/id']).view(np.uint64)):016x}" == hex_id
    assert open_images.info.features["image/id"].np_dtype == np.int64


@pytest.mark.backend_independent
def test_missing_images_are_counted_and_a_wrong_layout_is_an_error(tmp_path):
    manual_dir = tmp_path / "manual"
    shutil.copytree(DUMMY_DATA / "flickr30k", manual_dir / "flickr30k")
    (manual_dir / "flickr30k/images/10002456.jpg").unlink()
    builder = _prepare("flickr30k", manual_dir, tmp_path / "tfds")
    assert builder.info.splits["train"].num_examples == 1
    report = builder.info.metadata["data_report"]["train"]
    assert report["images_missing"] == 1 and report["missing_image_ids"] == ["10002456"]
    assert report["narratives"] == 2 and report["examples"] == 1

    # All images of a split absent: the folder is wrong, not a partial copy.
    for image in (manual_dir / "flickr30k/images").iterdir():
        image.unlink()
    (manual_dir / "flickr30k/images/unrelated.jpg").write_bytes(b"")
    with pytest.raises(_manual_dir.ManualDirError, match="none of the 2 images of the train narratives"):
        _prepare("flickr30k", manual_dir, tmp_path / "tfds2")


@pytest.mark.backend_independent
def test_missing_shard_and_truncated_jsonl_are_named(tmp_path):
    manual_dir = tmp_path / "manual"
    shutil.copytree(DUMMY_DATA / "coco", manual_dir / "coco")
    shard = manual_dir / "coco/annotations/coco_train_localized_narratives-00002-of-00004.jsonl"
    shard.unlink()
    with pytest.raises(_manual_dir.ManualDirError, match="incomplete shards for .*coco_train_localized"):
        _prepare("coco", manual_dir, tmp_path / "tfds")

    shutil.copy(DUMMY_DATA / "coco/annotations" / shard.name, shard)
    val = manual_dir / "coco/annotations/coco_val_localized_narratives.jsonl"
    val.write_text(val.read_text()[:-40])
    with pytest.raises(_manual_dir.ManualDirError, match="coco_val_localized_narratives.jsonl in .*: line 2"):
        _prepare("coco", manual_dir, tmp_path / "tfds")
