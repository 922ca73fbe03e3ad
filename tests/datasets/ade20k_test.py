"""Tests of the `ade20k` builder on its dummy data (ADEChallengeData2016 and ADE20K_2021_17_01 formats)."""

import json
import os
import pathlib
import pickle
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image
from tensorflow_datasets import testing as tfds_testing

from keras_openseg.datasets import _manual_dir
from keras_openseg.datasets.ade20k import ade20k
from keras_openseg.datasets.ade20k.ade20k import ADE20K

DUMMY_DATA = pathlib.Path(os.fspath(ADE20K.code_path.parent)) / "dummy_data"


@pytest.mark.backend_independent
class ADE20K150BuilderTest(tfds_testing.DatasetBuilderTestCase):
    DATASET_CLASS = ADE20K
    BUILDER_CONFIG_NAMES_TO_TEST = ["150"]
    SPLITS = {"train": 2, "validation": 2}
    SKIP_CHECKSUMS = True


@pytest.mark.backend_independent
class ADE20K847BuilderTest(tfds_testing.DatasetBuilderTestCase):
    DATASET_CLASS = ADE20K
    BUILDER_CONFIG_NAMES_TO_TEST = ["847"]
    SPLITS = {"train": 2, "validation": 2}
    SKIP_CHECKSUMS = True


def _prepare(config, data_dir, manual_dir=DUMMY_DATA):
    builder = ADE20K(config=config, data_dir=data_dir)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    return builder


def _semantics(builder, split):
    examples = tfds.as_numpy(builder.as_dataset(split=split))
    return {example["image/filename"].decode(): example["semantic"][..., 0] for example in examples}


@pytest.mark.backend_independent
def test_ade150_shifts_labels_and_ignores_other(tmp_path):
    builder = _prepare("150", tmp_path)
    assert builder.info.metadata["ignore_label"] == 255
    assert len(builder.info.metadata["class_names"]) == 150
    annotations = DUMMY_DATA / "ADEChallengeData2016/annotations/validation"
    for filename, semantic in _semantics(builder, "validation").items():
        raw = np.asarray(Image.open(annotations / f"{filename[:-4]}.png"))
        np.testing.assert_array_equal(semantic, np.where(raw == 0, 255, raw.astype(np.int64) - 1))
    semantic = _semantics(builder, "validation")["ADE_val_00000001.jpg"]
    names = builder.info.metadata["class_names"]
    # The PNG paints 2 (building), 150 (flag, the last class) and 0 ("other") in its lower left corner.
    assert {names[value] for value in np.unique(semantic) if value != 255} == {"building", "flag"}
    assert semantic[5, 0] == 255


@pytest.mark.backend_independent
def test_ade847_class_mask_decodes_r_over_10_times_256_plus_g():
    seg = np.array([[[10, 44, 3], [0, 5, 0], [0, 0, 0], [20, 1, 9]]], np.uint8)
    np.testing.assert_array_equal(ade20k.decode_class_mask(seg), [[300, 5, 0, 513]])


@pytest.mark.backend_independent
def test_ade847_maps_objectnames_to_benchmark_order(tmp_path):
    builder = _prepare("847", tmp_path)
    names = builder.info.metadata["class_names"]
    assert len(names) == 847 and builder.info.metadata["ignore_label"] == 65535
    index = pickle.loads((DUMMY_DATA / "ADE20K_2021_17_01/index_ade20k.pkl").read_bytes())
    expected_by_value = {0: 65535}
    for value, name in enumerate(index["objectnames"], start=1):
        expected_by_value[value] = names.index(name) if name in names else 65535
    for split in ("train", "validation"):
        for filename, semantic in _semantics(builder, split).items():
            seg_file = next((DUMMY_DATA / "ADE20K_2021_17_01/images/ADE").rglob(f"{filename[:-4]}_seg.png"))
            seg = np.asarray(Image.open(seg_file)).astype(np.int64)
            class_mask = seg[..., 0] // 10 * 256 + seg[..., 1]
            np.testing.assert_array_equal(semantic, np.vectorize(expected_by_value.get)(class_mask))
    # ADE_val_00000001: wall (value 5), floor (value 261 = R 10, G 5) and unannotated pixels.
    semantic = _semantics(builder, "validation")["ADE_val_00000001.jpg"]
    assert names[semantic[0, 0]] == "wall" and names[semantic[0, 5]] == "floor, flooring"
    assert semantic[3, 0] == 65535
    # ADE_val_00000002: aircraft carrier (value 300 = R 10, G 44); "street sign" (101) is no A-847 class.
    semantic = _semantics(builder, "validation")["ADE_val_00000002.jpg"]
    assert names[semantic[0, 0]].startswith("aircraft carrier") and semantic[0, 5] == 65535


@pytest.mark.backend_independent
def test_ade847_names_are_the_shared_benchmark_list(shared_data_dir):
    assert list(ade20k.ADE847_CLASS_NAMES) == json.loads((shared_data_dir / "vocabularies/ade847.json").read_text())
    ade150 = json.loads((shared_data_dir / "vocabularies/ade150.json").read_text())
    assert list(ade20k.ADE150_CLASS_NAMES) == [name.strip() for name in ade150]


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    "config, removed",
    [
        ("150", "ADEChallengeData2016/annotations/validation"),
        ("847", "ADE20K_2021_17_01/index_ade20k.pkl"),
    ],
)
def test_truncated_manual_dir_names_the_missing_path(tmp_path, config, removed):
    manual_dir = tmp_path / "manual"
    shutil.copytree(DUMMY_DATA, manual_dir)
    path = manual_dir / removed
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    with pytest.raises(_manual_dir.ManualDirError, match=removed):
        _prepare(config, tmp_path / "tfds", manual_dir)


@pytest.mark.backend_independent
def test_index_must_cover_the_class_masks(tmp_path):
    manual_dir = tmp_path / "manual"
    shutil.copytree(DUMMY_DATA / "ADE20K_2021_17_01", manual_dir / "ADE20K_2021_17_01")
    index_file = manual_dir / "ADE20K_2021_17_01/index_ade20k.pkl"
    index = pickle.loads(index_file.read_bytes())
    index["objectnames"] = index["objectnames"][:200]  # the images paint classes 261 and 300
    index_file.write_bytes(pickle.dumps(index))
    with pytest.raises(_manual_dir.ManualDirError, match="same ADE20K_2021_17_01 release"):
        _prepare("847", tmp_path / "tfds", manual_dir)
