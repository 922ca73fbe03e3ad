"""Tests of the `openseg_shapes` builder and of the procedural world behind it."""

import os
import re

import numpy as np
import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets import testing as tfds_testing

from keras_openseg.datasets.openseg_shapes import OpenSegShapes
from keras_openseg.datasets.openseg_shapes import world

pytestmark = pytest.mark.backend_independent


class OpenSegShapesBuilderTest(tfds_testing.DatasetBuilderTestCase):
    DATASET_CLASS = OpenSegShapes
    BUILDER_CONFIG_NAMES_TO_TEST = ["tiny"]
    SPLITS = {"train": 32, "validation": 8, "held_out": 8}
    # Nothing is downloaded: the download dir the test case mocks is never read.
    EXAMPLE_DIR = os.fspath(OpenSegShapes.code_path.parent)
    SKIP_CHECKSUMS = True


def _ids(panoptic):
    rgb = panoptic.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def test_tfds_load_tiny_offline(tmp_path):
    train = tfds.load("openseg_shapes/tiny", split="train", data_dir=tmp_path, try_gcs=False)
    example = next(iter(train.take(1)))
    assert example["image"].shape == (64, 64, 3)
    assert example["semantic"].shape == (64, 64, 1)
    metadata = tfds.builder("openseg_shapes/tiny", data_dir=tmp_path).info.metadata
    assert metadata["class_names"] == list(world.CLASS_NAMES)
    assert metadata["ignore_label"] == 255
    assert metadata["held_out_class_names"] == ["hexagon"]
    assert set(metadata["unseen_synonyms"]) == set(world.CLASS_NAMES)
    assert [c["id"] for c in metadata["categories"]] == list(range(1, 13))
    assert [c["name"] for c in metadata["categories"] if c["isthing"]] == list(world.SHAPES)


@pytest.mark.parametrize("split", ["train", "held_out"])
def test_segments_partition_the_image_and_match_the_labels(split):
    for index in range(20):
        example = world.render_example(split, index, 48)
        ids = _ids(example["panoptic_image"])
        segments = example["segments"]
        segment_ids = [s["id"] for s in segments]
        assert len(set(segment_ids)) == len(segment_ids)
        # Every pixel is in exactly one listed segment: no void, no unlisted id.
        assert set(np.unique(ids)) == set(segment_ids)
        for segment in segments:
            region = ids == segment["id"]
            assert region.sum() == segment["area"] > 0
            assert not segment["is_crowd"]
            assert segment["id"] // 1000 == segment["category_id"]
            # The semantic label of a segment is its category (class index = category id - 1).
            assert np.all(example["semantic"][..., 0][region] == segment["category_id"] - 1)
            rows, cols = np.nonzero(region)
            np.testing.assert_allclose(
                segment["bbox"], np.array([rows.min(), cols.min(), rows.max() + 1, cols.max() + 1]) / 48
            )


def test_examples_are_deterministic_and_distinct():
    first = world.render_example("train", 3, 32)
    again = world.render_example("train", 3, 32)
    np.testing.assert_array_equal(first["image"], again["image"])
    assert first["captions"] == again["captions"]
    other = world.render_example("validation", 3, 32)
    assert not np.array_equal(first["image"], other["image"])


def _words(caption):
    return set(re.findall(r"[a-z-]+", caption.lower()))


def test_held_out_pairs_names_and_unseen_synonyms():
    held_out_pairs = set(world.HELD_OUT_PAIRS)
    train_words, held_out_words = set(), set()
    for index in range(150):
        train = world.render_example("train", index, 32)
        train_words |= set().union(*map(_words, train["captions"]))
        held_out = world.render_example("held_out", index, 32)
        held_out_words |= set().union(*map(_words, held_out["captions"]))
        # The world's own record of the objects is not returned; captions in "full" style name the pairs.
        for caption in train["captions"]:
            for color, shape in held_out_pairs:
                for name in world.CAPTION_NAMES[shape]:
                    assert f"{color} {name}" not in caption.lower()
    assert "hexagon" not in train_words and "hexagons" not in train_words
    assert "hexagon" in held_out_words
    unseen = {w for names in world.UNSEEN_SYNONYMS.values() for name in names for w in name.split()}
    unseen -= {"shape", "sign"}  # generic parts of "six-sided shape" / "plus sign"
    assert not unseen & (train_words | held_out_words)
    # Shapes carry signal: every shape but the held-out hexagon is named in training captions.
    for shape in world.SHAPES[:-1]:
        assert train_words & set(world.CAPTION_NAMES[shape]) | train_words & set(world.CAPTION_NAMES[shape].values())


def test_held_out_pairs_are_only_in_the_held_out_split():
    for index in range(60):
        for split in ("train", "validation"):
            pairs = {(o["color"], o["class"]) for o in world.render_example(split, index, 32)["objects"]}
            assert not pairs & set(world.HELD_OUT_PAIRS)
        pairs = {(o["color"], o["class"]) for o in world.render_example("held_out", index, 32)["objects"]}
        assert pairs & set(world.HELD_OUT_PAIRS)


def test_same_color_scenes_make_color_uninformative():
    same = 0
    for index in range(100):
        objects = world.render_example("train", index, 32)["objects"]
        same += len(objects) > 1 and len({o["color"] for o in objects}) == 1
    assert same > 15


def test_captions_name_shapes_often_and_objects_are_large():
    named, captions, areas = 0, 0, []
    shape_names = {n for names in world.CAPTION_NAMES.values() for pair in names.items() for n in pair}
    for index in range(100):
        example = world.render_example("train", index, 64)
        assert 1 <= len(example["captions"]) <= 5
        for caption in example["captions"]:
            captions += 1
            named += bool(_words(caption) & shape_names)
        areas += [s["area"] for s in example["segments"] if s["category_id"] <= len(world.SHAPES)]
    assert named / captions > 0.7
    assert np.median(areas) > 0.05 * 64 * 64


def test_render_example_rejects_unknown_split():
    with pytest.raises(ValueError, match="split"):
        world.render_example("test", 0, 32)
