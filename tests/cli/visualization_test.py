import numpy as np
import pytest

from keras_openseg.segment_cli import parse_queries
from keras_openseg.visualization import palette
from keras_openseg.visualization import visualize


def test_parse_queries_splits_categories_and_synonyms():
    assert parse_queries("cat; person, man, woman ;grass") == ["cat", ["person", "man", "woman"], "grass"]
    with pytest.raises(ValueError, match="--queries"):
        parse_queries(" ; ")


def test_overlay_blends_label_colors_and_keeps_unlabelled_pixels():
    image = np.full((6, 8, 3), 100, np.uint8)
    labels = np.full((6, 8), -1, np.int32)
    labels[:, :4] = 1
    out = visualize(image, {"labels": labels}, ["sky", "grass"], alpha=0.5, legend=False)
    expected = np.round(0.5 * 100 + 0.5 * palette(2)[1].astype(np.float32)).astype(np.uint8)
    np.testing.assert_array_equal(out[:, :4], np.broadcast_to(expected, (6, 4, 3)))
    np.testing.assert_array_equal(out[:, 4:], image[:, 4:])


def test_legend_widens_the_image_and_proposals_are_outlined():
    image = np.zeros((32, 32, 3), np.uint8)
    labels = np.zeros((32, 32), np.int32)
    proposal = np.zeros((1, 32, 32), bool)
    proposal[0, 8:24, 8:24] = True
    out = visualize(image, {"labels": labels}, [["person", "man"]], proposals=proposal)
    assert out.shape[0] == 32 and out.shape[1] > 32
    assert (out[8, 8:24] == 255).all() and (out[16, 16] != 255).any()


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="image"):
        visualize(np.zeros((4, 4)), {"labels": np.zeros((4, 4), int)}, ["a"])
    with pytest.raises(ValueError, match="labels"):
        visualize(np.zeros((4, 4, 3)), {"labels": np.zeros((3, 4), int)}, ["a"])
    with pytest.raises(ValueError, match="queries"):
        visualize(np.zeros((4, 4, 3)), {"labels": np.full((4, 4), 2)}, ["a"])
