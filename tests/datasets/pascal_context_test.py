"""Tests of the `pascal_context` builder on its dummy data (VOC 2010 JPEGs, PASCAL-Context .mat LabelMaps)."""

import json
import os
import pathlib
import shutil

import numpy as np
import pytest
import scipy.io
import tensorflow_datasets as tfds
from tensorflow_datasets import testing as tfds_testing

from keras_openseg.datasets import _manual_dir
from keras_openseg.datasets.pascal_context import pascal_context
from keras_openseg.datasets.pascal_context.pascal_context import PascalContext

DUMMY_DATA = pathlib.Path(os.fspath(PascalContext.code_path.parent)) / "dummy_data"
PC_ROOT = DUMMY_DATA / "VOCdevkit" / "VOC2010"


@pytest.mark.backend_independent
class PascalContext59BuilderTest(tfds_testing.DatasetBuilderTestCase):
    DATASET_CLASS = PascalContext
    BUILDER_CONFIG_NAMES_TO_TEST = ["59"]
    SPLITS = {"train": 2, "validation": 2}
    SKIP_CHECKSUMS = True


@pytest.mark.backend_independent
class PascalContext459BuilderTest(tfds_testing.DatasetBuilderTestCase):
    DATASET_CLASS = PascalContext
    BUILDER_CONFIG_NAMES_TO_TEST = ["459"]
    SPLITS = {"train": 2, "validation": 2}
    SKIP_CHECKSUMS = True


def _label_map(image_id):
    return scipy.io.loadmat(PC_ROOT / "trainval" / f"{image_id}.mat")["LabelMap"].astype(np.int64)


@pytest.fixture(scope="module", params=["59", "459"])
def built(request, tmp_path_factory):
    builder = PascalContext(config=request.param, data_dir=tmp_path_factory.mktemp("tfds"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=DUMMY_DATA))
    examples = tfds.as_numpy(builder.as_dataset(split="validation"))
    return builder, {example["image/filename"].decode()[:-4]: example["semantic"][..., 0] for example in examples}


@pytest.mark.backend_independent
def test_semantic_values_follow_the_label_map(built):
    builder, semantics = built
    names = builder.info.metadata["class_names"]
    ignore = builder.info.metadata["ignore_label"]
    for image_id, semantic in semantics.items():
        label_map = _label_map(image_id)
        for value in np.unique(label_map):
            stored = np.unique(semantic[label_map == value])
            assert stored.size == 1
            name = pascal_context.PC459_CLASS_NAMES[value - 1] if value else None
            if builder.builder_config.name == "459":
                expected = ignore if value == 0 else value - 1
            else:
                name = {"table": "diningtable"}.get(name, name)
                expected = names.index(name) if name in names else ignore
            assert stored[0] == expected, (image_id, value, name)
    # 2008_000007 paints a table (labels.txt 397), a person (284) and an air conditioner (3).
    semantic = semantics["2008_000007"]
    if builder.builder_config.name == "59":
        assert names[semantic[0, 0]] == "diningtable" and names[semantic[0, 4]] == "person"
        assert semantic[4, 5] == 255 and semantic[2, 5] == 255  # a non-59 class and unlabeled
    else:
        assert names[semantic[0, 0]] == "table" and names[semantic[4, 5]] == "air conditioner"
        assert semantic[2, 5] == 65535


@pytest.mark.backend_independent
def test_pc59_mapping_matches_the_shared_benchmark_lists(shared_data_dir):
    pc459 = json.loads((shared_data_dir / "vocabularies" / "pc459.json").read_text())
    pc59 = json.loads((shared_data_dir / "vocabularies" / "pc59.json").read_text())
    assert [name.replace(" ", "") for name in pascal_context.PC459_CLASS_NAMES] == pc459
    assert list(pascal_context.PC59_CLASS_NAMES) == pc59
    table = pascal_context.label_map_lookup_table("59")
    mapped = {int(value): int(index) for value, index in enumerate(table) if index != 255}
    # The PC-59 label values of the mmsegmentation / PyTorch-Encoding conversion (459-label ids kept for PC-59).
    assert sorted(mapped) == [
        2, 9, 18, 19, 22, 23, 25, 31, 33, 34, 44, 45, 46, 59, 65, 68, 72, 80, 85, 98, 104, 105, 113, 115, 144, 158,
        159, 162, 187, 189, 207, 220, 232, 258, 259, 260, 284, 295, 296, 308, 324, 326, 347, 349, 354, 355, 360,
        366, 368, 397, 415, 416, 420, 424, 427, 440, 445, 454, 458,
    ]  # fmt: skip
    assert sorted(mapped.values()) == list(range(59))
    assert [pc459[value - 1] for value in sorted(mapped)] == [{"diningtable": "table"}.get(n, n) for n in pc59]


@pytest.mark.backend_independent
def test_labels_txt_check():
    names = pascal_context.PC459_CLASS_NAMES
    joined = "".join(f"{value}: {name.replace(' ', '')}\n" for value, name in enumerate(names, start=1))
    pascal_context.check_labels_txt(joined)
    swapped = joined.replace("1: accordion\n2: aeroplane", "1: aeroplane\n2: accordion")
    with pytest.raises(_manual_dir.ManualDirError, match="2 label values differ"):
        pascal_context.check_labels_txt(swapped)


@pytest.mark.backend_independent
@pytest.mark.parametrize("removed", ["VOCdevkit/VOC2010/trainval", "VOCdevkit/VOC2010/labels.txt"])
def test_truncated_manual_dir_names_the_missing_path(tmp_path, removed):
    manual_dir = tmp_path / "manual"
    shutil.copytree(DUMMY_DATA, manual_dir)
    path = manual_dir / removed
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    builder = PascalContext(config="59", data_dir=tmp_path / "tfds")
    with pytest.raises(_manual_dir.ManualDirError, match=removed):
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))


@pytest.mark.backend_independent
def test_damaged_mat_file_is_named(tmp_path):
    (tmp_path / "broken.mat").write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    with pytest.raises(_manual_dir.ManualDirError, match="broken.mat"):
        pascal_context.read_label_map(tmp_path, "broken.mat")


@pytest.mark.backend_independent
def test_validation_is_the_fields_5104_images(shared_data_dir, tmp_path):
    shipped = pascal_context.FIELD_VALIDATION_IDS
    assert len(shipped) == len(set(shipped)) == 5104
    assert list(shipped) == (shared_data_dir / "splits/pascal_context_val_5104.txt").read_text().split()
    # A val.txt image outside the field's list (VOC 2010's val.txt has one) is left out and named.
    manual_dir = tmp_path / "manual"
    shutil.copytree(DUMMY_DATA, manual_dir)
    root = manual_dir / "VOCdevkit/VOC2010"
    extra = "2008_000005"
    assert extra not in shipped
    for folder, suffix in (("JPEGImages", ".jpg"), ("trainval", ".mat")):
        shutil.copy(root / folder / f"2008_000009{suffix}", root / folder / f"{extra}{suffix}")
    val_txt = root / "ImageSets/Main/val.txt"
    val_txt.write_text(val_txt.read_text() + f"{extra}\n")
    builder = PascalContext(config="59", data_dir=tmp_path / "tfds")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    ids = {e["image/filename"].decode()[:-4] for e in tfds.as_numpy(builder.as_dataset(split="validation"))}
    assert ids == {"2008_000007", "2008_000009"} and ids <= set(shipped)
    assert builder.info.metadata["validation_excluded_ids"] == [extra]
    assert "5,104" in builder.info.metadata["validation_ids"]
    train = {e["image/filename"].decode()[:-4] for e in tfds.as_numpy(builder.as_dataset(split="train"))}
    assert not train & set(shipped)


@pytest.mark.backend_independent
def test_train_is_the_fields_list_when_the_manual_dir_has_it(tmp_path):
    manual_dir = tmp_path / "manual"
    shutil.copytree(DUMMY_DATA, manual_dir)
    builder = PascalContext(config="59", data_dir=tmp_path / "tfds_main")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    assert builder.info.splits["train"].num_examples == 2
    assert "Main/train.txt: 2 images" in builder.info.metadata["train_ids"]
    # mmsegmentation's converter writes the field's 4,996 train ids (Detail API) to SegmentationContext/.
    field_list = manual_dir / pascal_context.FIELD_TRAIN_LIST
    field_list.parent.mkdir(parents=True)
    field_list.write_text("2008_000015\n")
    builder = PascalContext(config="59", data_dir=tmp_path / "tfds_field")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    train = [e["image/filename"].decode() for e in tfds.as_numpy(builder.as_dataset(split="train"))]
    assert train == ["2008_000015.jpg"]
    assert "SegmentationContext/train.txt: 1 images (the field's train list)" in builder.info.metadata["train_ids"]
    # A list naming images outside VOC's train list is not PASCAL-Context's: named, not silently used.
    field_list.write_text("2008_000015\n2008_000007\n")
    with pytest.raises(_manual_dir.ManualDirError, match="2008_000007"):
        pascal_context.train_ids(manual_dir, ["2008_000008", "2008_000015"])
