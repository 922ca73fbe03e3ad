"""Tests of `coco_panoptic_captions` on its dummy data and on two real COCO val2017 panoptic annotations."""

import json
import os
import pathlib
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets import testing as tfds_testing

from keras_openseg.datasets import _manual_dir
from keras_openseg.datasets.coco_panoptic_captions import CocoPanopticCaptions

DUMMY_DATA = pathlib.Path(os.fspath(CocoPanopticCaptions.code_path.parent)) / "dummy_data"


@pytest.mark.backend_independent
class CocoPanopticCaptionsBuilderTest(tfds_testing.DatasetBuilderTestCase):
    DATASET_CLASS = CocoPanopticCaptions
    BUILDER_CONFIG_NAMES_TO_TEST = ["2017"]
    SPLITS = {"train": 2, "validation": 1}
    SKIP_CHECKSUMS = True


def _prepare(manual_dir, data_dir):
    builder = CocoPanopticCaptions(config="2017", data_dir=data_dir)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    return builder


def _segment_ids(panoptic_image):
    rgb = panoptic_image.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


@pytest.fixture(scope="module")
def real_sample_manual_dir(shared_data_dir, tmp_path_factory):
    """The two real val2017 annotations laid out as COCO ships them: one image per split, plus captions."""
    sample = shared_data_dir / "coco_panoptic_sample"
    panoptic = json.loads((sample / "panoptic_examples.json").read_text())
    manual_dir = tmp_path_factory.mktemp("coco")
    splits = zip(("train2017", "val2017"), panoptic["images"], panoptic["annotations"])
    for coco_split, image, annotation in splits:
        (manual_dir / coco_split).mkdir()
        shutil.copy(sample / "images" / image["file_name"], manual_dir / coco_split)
        png_dir = manual_dir / "annotations" / f"panoptic_{coco_split}"
        png_dir.mkdir(parents=True)
        shutil.copy(sample / "panoptic" / annotation["file_name"], png_dir)
        split_json = {**panoptic, "images": [image], "annotations": [annotation]}
        (manual_dir / "annotations" / f"panoptic_{coco_split}.json").write_text(json.dumps(split_json))
        captions = {
            "images": [image],
            "annotations": [
                {"image_id": image["id"], "id": 2 * image["id"] + k, "caption": text}
                for k, text in enumerate([" A photo taken in a city. ", "Several things in one picture."])
            ],
        }
        (manual_dir / "annotations" / f"captions_{coco_split}.json").write_text(json.dumps(captions))
    return manual_dir, panoptic


@pytest.mark.backend_independent
def test_real_panoptic_sample_areas_match_decoded_png(real_sample_manual_dir, tmp_path):
    manual_dir, panoptic = real_sample_manual_dir
    builder = _prepare(manual_dir, tmp_path)
    annotations = {annotation["image_id"]: annotation for annotation in panoptic["annotations"]}
    images = {image["id"]: image for image in panoptic["images"]}

    seen = []
    for split in ("train", "validation"):
        for example in tfds.as_numpy(builder.as_dataset(split=split)):
            image_id = int(example["image/id"])
            seen.append(image_id)
            annotation, image = annotations[image_id], images[image_id]
            assert example["image"].shape == (image["height"], image["width"], 3)
            segment_ids = _segment_ids(example["panoptic_image"])
            segments = example["segments"]
            assert segments["id"].tolist() == [info["id"] for info in annotation["segments_info"]]
            for segment_id, area in zip(segments["id"], segments["area"]):
                assert np.sum(segment_ids == segment_id) == area
            # Every painted, non-void pixel belongs to a listed segment.
            assert set(np.unique(segment_ids)) - {0} == set(segments["id"].tolist())
            x, y, w, h = annotation["segments_info"][0]["bbox"]
            np.testing.assert_allclose(
                segments["bbox"][0],
                [y / image["height"], x / image["width"], (y + h) / image["height"], (x + w) / image["width"]],
                rtol=1e-6,
            )
            assert [caption.decode() for caption in example["captions"]] == [
                "A photo taken in a city.",
                "Several things in one picture.",
            ]
    assert sorted(seen) == sorted(annotations)

    categories = builder.info.metadata["categories"]
    assert len(categories) == 133
    assert categories[0] == {"id": 1, "name": "person", "isthing": 1}
    assert sum(category["isthing"] for category in categories) == 80
    report = builder.info.metadata["data_report"]["validation"]
    assert report["examples"] == 1 and report["rejected_panoptic_mismatch"] == 0
    assert report["segments_with_area_mismatch"] == 0


@pytest.fixture
def dummy_copy(tmp_path):
    manual_dir = tmp_path / "manual"
    shutil.copytree(DUMMY_DATA, manual_dir)
    return manual_dir


@pytest.mark.backend_independent
def test_png_mismatch_is_rejected_and_uncaptioned_image_kept_both_reported(dummy_copy, tmp_path):
    panoptic_path = dummy_copy / "annotations" / "panoptic_train2017.json"
    panoptic = json.loads(panoptic_path.read_text())
    dropped = panoptic["annotations"][0]["segments_info"].pop()  # image 9 now paints an unlisted id
    panoptic_path.write_text(json.dumps(panoptic))
    captions_path = dummy_copy / "annotations" / "captions_train2017.json"
    captions = json.loads(captions_path.read_text())
    captions["annotations"] = [a for a in captions["annotations"] if a["image_id"] != 25]
    captions_path.write_text(json.dumps(captions))

    builder = _prepare(dummy_copy, tmp_path / "tfds")
    examples = list(tfds.as_numpy(builder.as_dataset(split="train")))
    assert [int(example["image/id"]) for example in examples] == [25]
    assert examples[0]["captions"].tolist() == []
    report = builder.info.metadata["data_report"]["train"]
    assert report["rejected_panoptic_mismatch"] == 1 and report["rejected_image_ids"] == [9]
    assert report["images_without_captions"] == 1 and report["images_without_captions_ids"] == [25]
    assert report["examples"] == 1
    assert dropped["id"] not in examples[0]["segments"]["id"].tolist()
    # The metadata survives a reload from disk.
    reloaded = CocoPanopticCaptions(config="2017", data_dir=tmp_path / "tfds")
    assert reloaded.info.metadata["data_report"]["train"]["rejected_image_ids"] == [9]


@pytest.mark.backend_independent
def test_split_missing_a_file_is_named_and_the_complete_one_built(dummy_copy, tmp_path):
    (dummy_copy / "annotations/panoptic_val2017.json").unlink()
    builder = _prepare(dummy_copy, tmp_path / "tfds")
    assert list(builder.info.splits) == ["train"] and builder.info.splits["train"].num_examples == 2
    assert builder.info.metadata["incomplete_splits"]["validation"].startswith(
        "missing annotations/panoptic_val2017.json in"
    )
    (dummy_copy / "annotations/panoptic_train2017.json").unlink()
    with pytest.raises(_manual_dir.ManualDirError, match="no split is complete: train: missing annotations/pan"):
        _prepare(dummy_copy, tmp_path / "tfds2")


@pytest.mark.backend_independent
@pytest.mark.parametrize("layout", ["coco", "detectron2"])
def test_val2017_alone_builds_validation_in_both_layouts(shared_data_dir, tmp_path, layout):
    """The real sample (two val2017 images) as a val-only download, PNGs where COCO or detectron2 put them."""
    sample = shared_data_dir / "coco_panoptic_sample"
    panoptic = json.loads((sample / "panoptic_examples.json").read_text())
    manual_dir = tmp_path / "coco"
    (manual_dir / "val2017").mkdir(parents=True)
    png_dir = manual_dir / ("annotations/panoptic_val2017" if layout == "coco" else "panoptic_val2017")
    png_dir.mkdir(parents=True)
    (manual_dir / "annotations").mkdir(exist_ok=True)
    for image, annotation in zip(panoptic["images"], panoptic["annotations"]):
        shutil.copy(sample / "images" / image["file_name"], manual_dir / "val2017")
        shutil.copy(sample / "panoptic" / annotation["file_name"], png_dir)
    (manual_dir / "annotations/panoptic_val2017.json").write_text(json.dumps(panoptic))
    captions = [{"image_id": image["id"], "id": image["id"], "caption": "a photo"} for image in panoptic["images"]]
    (manual_dir / "annotations/captions_val2017.json").write_text(json.dumps({"annotations": captions}))

    builder = CocoPanopticCaptions(config="2017", data_dir=tmp_path / "tfds")
    complete, incomplete = builder.check_manual_dir(manual_dir)
    assert complete == ["validation"] and incomplete["train"].startswith("missing annotations/panoptic_train2017")
    builder = _prepare(manual_dir, tmp_path / "tfds")
    assert list(builder.info.splits) == ["validation"]
    examples = list(tfds.as_numpy(builder.as_dataset(split="validation")))
    assert sorted(int(e["image/id"]) for e in examples) == sorted(image["id"] for image in panoptic["images"])
    assert builder.info.metadata["data_report"]["validation"]["rejected_panoptic_mismatch"] == 0
    assert "train" in builder.info.metadata["incomplete_splits"]


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    "damage, message",
    [
        ("annotations/captions_train2017.json", "captions_train2017.json in .* is not valid JSON"),
        ("annotations/panoptic_train2017/000000000009.png", "000000000009.png in .* is not a readable image"),
        ("val2017/000000000042.jpg", "val2017/000000000042.jpg in .* is not a readable image"),
    ],
)
def test_damaged_manual_dir_names_the_file(dummy_copy, tmp_path, damage, message):
    path = dummy_copy / damage
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])  # an interrupted download
    with pytest.raises(_manual_dir.ManualDirError, match=message):
        _prepare(dummy_copy, tmp_path / "tfds")


@pytest.mark.backend_independent
def test_required_manual_paths_is_the_documented_layout():
    builder = CocoPanopticCaptions(config="2017", data_dir="/nonexistent-not-used")
    paths = builder.required_manual_paths()
    assert "annotations/panoptic_val2017.json" in paths and "annotations/panoptic_train2017" in paths
    assert "annotations/captions_train2017.json" in paths and "val2017" in paths
    readme = (DUMMY_DATA.parent / "README.md").read_text()
    for path in paths:
        assert path.split("/")[-1].split(".")[0] in readme


class _PersonEverywhere:
    """A model answering "person" (class 0) at every pixel, through `OpenSegModel.segment`'s contract."""

    class text_embedder:
        @staticmethod
        def embed(texts, templates=None):
            return np.eye(len(texts), 4, dtype=np.float32)

    def segment(self, images, text_embeddings=None, name_valid=None, use_proposals=True):
        logits = []
        for image in images:
            image_logits = np.zeros((text_embeddings.shape[0],) + image.shape[:2], np.float32)
            image_logits[0] = 1.0
            logits.append(image_logits)
        return {"logits": logits}


@pytest.mark.backend_independent
def test_semantic_labels_give_coco_miou_to_the_evaluator(real_sample_manual_dir, tmp_path):
    from keras_openseg.evaluation.evaluator import evaluate

    manual_dir, panoptic = real_sample_manual_dir
    builder = _prepare(manual_dir, tmp_path)
    metadata = builder.info.metadata
    category_ids = sorted(category["id"] for category in panoptic["categories"])
    names = {category["id"]: category["name"] for category in panoptic["categories"]}
    assert len(category_ids) == 133 and metadata["ignore_label"] == 255
    assert metadata["class_names"] == [names[i] for i in category_ids] and metadata["class_names"][0] == "person"
    annotations = {annotation["image_id"]: annotation for annotation in panoptic["annotations"]}
    example = next(iter(tfds.as_numpy(builder.as_dataset(split="validation"))))
    segment_ids = _segment_ids(example["panoptic_image"])
    expected = np.full(segment_ids.shape, 255)
    for info in annotations[int(example["image/id"])]["segments_info"]:  # crowd segments keep their class
        expected[segment_ids == info["id"]] = category_ids.index(info["category_id"])
    np.testing.assert_array_equal(example["semantic"][..., 0], expected)

    results = evaluate(
        _PersonEverywhere(),
        builder.as_dataset(split="validation"),
        metadata["class_names"],
        ignore_label=metadata["ignore_label"],
        proposal_recall=False,
        progress=False,
    )
    present = np.unique(expected[expected != 255])
    person_iou = np.sum(expected == 0) / np.sum(expected != 255)
    assert results["num_classes"] == 133
    assert results["miou"] == pytest.approx(person_iou / len(set(present.tolist()) | {0}))
