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
from keras_openseg.datasets import semantic_segmentation
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
    # ADE_val_00000001: wall (object index 2978), floor (976 = R 30, G 208) and unannotated pixels.
    semantic = _semantics(builder, "validation")["ADE_val_00000001.jpg"]
    assert names[semantic[0, 0]] == "wall" and names[semantic[0, 5]] == "floor, flooring"
    assert semantic[3, 0] == 65535
    # ADE_val_00000002: aircraft carrier (object index 3144); "street sign" (2601 here) is no A-847 class.
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


def _copy_full_release(tmp_path):
    manual_dir = tmp_path / "manual"
    shutil.copytree(DUMMY_DATA / "ADE20K_2021_17_01", manual_dir / "ADE20K_2021_17_01")
    return manual_dir


def _write_class_mask(path, class_mask):
    """Writes an ADE full-release `_seg.png` (R / 10 * 256 + G = object index, B = instance)."""
    seg = np.stack([class_mask // 256 * 10, class_mask % 256, np.full_like(class_mask, 7)], axis=-1)
    Image.fromarray(seg.astype(np.uint8)).save(path)


@pytest.mark.backend_independent
def test_ade847_object_indices_are_the_shared_list(shared_data_dir):
    rows = [line.split("\t") for line in (shared_data_dir / "vocabularies/ade847_ids.tsv").read_text().splitlines()]
    assert rows[0] == ["train_id", "ade_id", "name"]
    assert [int(train_id) for train_id, _, _ in rows[1:]] == list(range(847))
    assert list(ade20k.ADE847_OBJECT_INDICES) == [int(ade_id) for _, ade_id, _ in rows[1:]]
    assert list(ade20k.ADE847_CLASS_NAMES) == [name for _, _, name in rows[1:]]


@pytest.mark.backend_independent
def test_ade847_labels_by_object_index_not_by_name(tmp_path):
    # objectnames repeats names; only the class's own object index carries its label.
    manual_dir = _copy_full_release(tmp_path)
    index_file = manual_dir / "ADE20K_2021_17_01/index_ade20k.pkl"
    index = pickle.loads(index_file.read_bytes())
    assert index["objectnames"][2977] == "wall" and index["objectnames"][4] == "dummy object 4"
    index["objectnames"][4] = "wall"  # another ADE object of the same name, index 5
    index_file.write_bytes(pickle.dumps(index))
    seg_file = manual_dir / "ADE20K_2021_17_01/images/ADE/validation/home_or_hotel/bedroom/ADE_val_00000001_seg.png"
    seg = np.asarray(Image.open(seg_file)).astype(np.int64)
    class_mask = seg[..., 0] // 10 * 256 + seg[..., 1]
    class_mask[0, 1] = 5
    _write_class_mask(seg_file, class_mask)

    semantic = _semantics(_prepare("847", tmp_path / "tfds", manual_dir), "validation")["ADE_val_00000001.jpg"]
    names = ade20k.ADE847_CLASS_NAMES
    assert names[semantic[0, 0]] == "wall" and class_mask[0, 0] == 2978
    assert semantic[0, 1] == 65535


@pytest.mark.backend_independent
def test_ade847_index_whose_name_differs_is_named(tmp_path):
    index = pickle.loads((DUMMY_DATA / "ADE20K_2021_17_01/index_ade20k.pkl").read_bytes())
    objectnames = list(index["objectnames"])
    ade20k.ade847_lookup_table(objectnames)
    objectnames[2977] = "wall socket"
    with pytest.raises(
        _manual_dir.ManualDirError, match=r"objectnames\[2977\] \(ADE object index 2978\) is 'wall socket'"
    ):
        ade20k.ade847_lookup_table(objectnames)


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    "height, width, expected",
    [(600, 800, (512, 683)), (800, 600, (683, 512)), (512, 2000, (512, 2000)), (300, 400, (300, 400)),
     (1024, 1024, (512, 512)), (513, 1025, (512, 1023))],
)  # fmt: skip
def test_shorter_side_rule(height, width, expected):
    assert semantic_segmentation.shorter_side_size(height, width, 512) == expected
    expected_long = round(max(height, width) / min(height, width) * 512) if min(height, width) > 512 else None
    if expected_long is not None:
        assert max(expected) == expected_long


def _numpy_linear(pixels, size):
    """OpenCV INTER_LINEAR, one output pixel at a time: half-pixel centres, clamped at the edges."""
    source_h, source_w = pixels.shape[:2]
    out = np.zeros(tuple(size) + pixels.shape[2:])
    for y in range(size[0]):
        for x in range(size[1]):
            sy, sx = (y + 0.5) * source_h / size[0] - 0.5, (x + 0.5) * source_w / size[1] - 0.5
            y0, x0 = int(np.floor(sy)), int(np.floor(sx))
            fy, fx = sy - y0, sx - x0
            if y0 < 0:
                y0, fy = 0, 0.0
            if y0 >= source_h - 1:
                y0, fy = source_h - 1, 0.0
            if x0 < 0:
                x0, fx = 0, 0.0
            if x0 >= source_w - 1:
                x0, fx = source_w - 1, 0.0
            y1, x1 = min(y0 + 1, source_h - 1), min(x0 + 1, source_w - 1)
            top = (1 - fx) * pixels[y0, x0].astype(float) + fx * pixels[y0, x1]
            bottom = (1 - fx) * pixels[y1, x0].astype(float) + fx * pixels[y1, x1]
            out[y, x] = (1 - fy) * top + fy * bottom
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _numpy_nearest(labels, size):
    """OpenCV INTER_NEAREST: output pixel (y, x) takes source (floor(y * H / h), floor(x * W / w))."""
    source_h, source_w = labels.shape
    out = np.zeros(size, labels.dtype)
    for y in range(size[0]):
        for x in range(size[1]):
            out[y, x] = labels[
                min(int(y * source_h / size[0]), source_h - 1), min(int(x * source_w / size[1]), source_w - 1)
            ]
    return out


@pytest.mark.backend_independent
@pytest.mark.parametrize("source, size", [((9, 13, 3), (5, 7)), ((6, 5, 3), (6, 11)), ((10, 8), (4, 4))])
def test_resizes_match_numpy_references(source, size):
    pixels = np.random.default_rng(0).integers(0, 256, source, dtype=np.uint8)
    np.testing.assert_array_equal(semantic_segmentation.resize_bilinear(pixels, size), _numpy_linear(pixels, size))
    labels = np.arange(source[0] * source[1]).reshape(source[:2])
    np.testing.assert_array_equal(semantic_segmentation.resize_nearest(labels, size), _numpy_nearest(labels, size))


def _smooth_image(height, width):
    y, x = np.mgrid[:height, :width]
    return np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)], -1).astype(np.uint8)


@pytest.mark.backend_independent
@pytest.mark.parametrize("config", ["150", "847", "150_original_size", "847_original_size"])
def test_validation_is_resized_to_a_shorter_side_of_512(tmp_path, config):
    height, width, size = 520, 700, (512, 689)
    pixels = _smooth_image(height, width)
    labels = (np.add.outer(np.arange(height) // 7, np.arange(width) // 11) % 3).astype(np.int64)
    if config.startswith("150"):
        manual_dir = tmp_path / "manual"
        shutil.copytree(DUMMY_DATA / "ADEChallengeData2016", manual_dir / "ADEChallengeData2016")
        root = manual_dir / "ADEChallengeData2016"
        Image.fromarray(pixels).save(root / "images/validation/ADE_val_00000001.jpg", quality=95)
        Image.fromarray((labels + 1).astype(np.uint8)).save(root / "annotations/validation/ADE_val_00000001.png")
        train_pixels = _smooth_image(600, 520)
        Image.fromarray(train_pixels).save(root / "images/training/ADE_train_00000001.jpg", quality=95)
        Image.fromarray(np.ones((600, 520), np.uint8)).save(root / "annotations/training/ADE_train_00000001.png")
        expected_labels = labels
    else:
        manual_dir = _copy_full_release(tmp_path)
        folder = manual_dir / "ADE20K_2021_17_01/images/ADE/validation/home_or_hotel/bedroom"
        Image.fromarray(pixels).save(folder / "ADE_val_00000001.jpg", quality=95)
        indices = np.array([2978, 976, 0])  # wall, floor, unannotated
        _write_class_mask(folder / "ADE_val_00000001_seg.png", indices[labels])
        expected_labels = np.array([0, 5, 65535])[labels]  # wall is class 0, "floor, flooring" class 5
    builder = _prepare(config, tmp_path / "tfds", manual_dir)
    metadata = builder.info.metadata
    example = next(
        e
        for e in tfds.as_numpy(builder.as_dataset(split="validation"))
        if e["image/filename"] == b"ADE_val_00000001.jpg"
    )
    if config.endswith("original_size"):
        assert metadata["validation_max_shorter_side"] is None
        assert example["image"].shape == (height, width, 3)
        np.testing.assert_array_equal(example["semantic"][..., 0], expected_labels)
        return
    assert metadata["validation_max_shorter_side"] == 512 and "512" in metadata["preparation"]["validation"]
    assert example["image"].shape == size + (3,) and example["semantic"].shape == size + (1,)
    np.testing.assert_array_equal(example["semantic"][..., 0], _numpy_nearest(expected_labels, size))
    decoded = np.asarray(Image.open(next(manual_dir.rglob("ADE_val_00000001.jpg"))).convert("RGB"))
    reference = _numpy_linear(decoded, size)
    # Only the JPEG re-encoding (quality 75) separates the stored image from the bilinear reference.
    assert np.abs(example["image"].astype(int) - reference).mean() < 2.0
    if config == "150":  # the train split keeps its size
        train = {e["image/filename"]: e["image"] for e in tfds.as_numpy(builder.as_dataset(split="train"))}
        assert train[b"ADE_train_00000001.jpg"].shape == (600, 520, 3)
