"""Pascal VOC background rule (paper sec. 4.1): PC-59 names outside VOC count as background."""

import keras
import numpy as np
import pytest

from keras_openseg.evaluation import PASCAL_CONTEXT_59_CLASS_NAMES
from keras_openseg.evaluation import VOC_CLASS_NAMES
from keras_openseg.evaluation import background_query_labels
from keras_openseg.evaluation import voc_background_rule
from keras_openseg.evaluation import voc_extended_vocabulary
from keras_openseg.evaluation.background_rule import VOC_BACKGROUND_CLASS_NAMES
from keras_openseg.evaluation.background_rule import dataset_background_options


def test_extended_vocabulary_is_pc59_since_voc_is_inside_it():
    names = voc_extended_vocabulary()
    assert names == list(PASCAL_CONTEXT_59_CLASS_NAMES) and len(names) == 59
    assert set(VOC_CLASS_NAMES) <= set(names)
    assert voc_extended_vocabulary(voc_class_names=["cat", "unicorn"], context_class_names=["sky", "cat"]) == [
        "sky",
        "cat",
        "unicorn",
    ]


def test_rule_by_hand():
    names = voc_extended_vocabulary()
    rows = [("cat", "sky", "tvmonitor"), ("aeroplane", "bedclothes", "person")]
    predictions = np.array([[names.index(n) for n in row] for row in rows])
    labels = voc_background_rule(keras.ops.convert_to_tensor(predictions), names)
    # VOC-21: 0 background, then the VOC classes from 1: cat 8, tvmonitor 20, aeroplane 1, person 15.
    np.testing.assert_array_equal(labels, [[8, 0, 20], [1, 0, 15]])


def test_names_match_in_any_spelling():
    labels = voc_background_rule([0, 1, 2], ["tv monitor", "Potted Plant", "wall"])
    np.testing.assert_array_equal(labels, [20, 16, 0])
    np.testing.assert_array_equal(background_query_labels(["b", "z"], ["a", "b"]), [1, -1])


def test_out_of_range_prediction():
    with pytest.raises(ValueError, match="predictions"):
        voc_background_rule([59], voc_extended_vocabulary())


def test_pas20b_metadata_carries_the_rule_to_evaluate():
    from keras_openseg.datasets.pascal_voc import pascal_voc

    assert len(VOC_BACKGROUND_CLASS_NAMES) == 39 and not set(VOC_BACKGROUND_CLASS_NAMES) & set(VOC_CLASS_NAMES)
    assert VOC_BACKGROUND_CLASS_NAMES == pascal_voc.BACKGROUND_CLASS_NAMES
    metadata = {"class_names": ["background", "cat"], "background_label": 0, "background_class_names": ["sky"]}
    assert dataset_background_options(metadata) == {"background_label": 0, "background_class_names": ["sky"]}
    assert dataset_background_options({"class_names": list(VOC_CLASS_NAMES), "ignore_label": 255}) == {}  # PAS-20
