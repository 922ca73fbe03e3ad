"""The features and checks the semantic-segmentation builders share, and the public home of `ManualDirError`."""

import io

import numpy as np
import pytest
from PIL import Image

import keras_openseg.datasets
from keras_openseg.datasets import _manual_dir
from keras_openseg.datasets import manual_download
from keras_openseg.datasets import semantic_segmentation
from keras_openseg.datasets.ade20k.ade20k import ADE20K
from keras_openseg.datasets.pascal_context.pascal_context import PascalContext
from keras_openseg.datasets.pascal_voc.pascal_voc import PascalVOC

pytestmark = pytest.mark.backend_independent


def test_manual_dir_error_has_a_public_home_and_the_old_import_works():
    from keras_openseg.datasets._manual_dir import ManualDirError

    assert keras_openseg.datasets.ManualDirError is manual_download.ManualDirError is ManualDirError
    assert _manual_dir.read_json is manual_download.read_json and issubclass(ManualDirError, ValueError)


@pytest.mark.parametrize("builder_cls", [ADE20K, PascalContext, PascalVOC])
def test_semantic_builders_share_one_features_dict(builder_cls, tmp_path):
    for config in builder_cls.builder_configs:
        features = builder_cls(config=config, data_dir=tmp_path).info.features
        assert (
            features.get_serialized_info()
            == semantic_segmentation.semantic_segmentation_features().get_serialized_info()
        )


def test_check_same_size_names_the_label(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((5, 7, 3), np.uint8)).save(buffer, "JPEG")
    semantic_segmentation.check_same_size(buffer.getvalue(), np.zeros((5, 7, 1)), "a.png")
    with pytest.raises(manual_download.ManualDirError, match="a.png: the label is 6x5 but its image is 7x5"):
        semantic_segmentation.check_same_size(buffer.getvalue(), np.zeros((5, 6)), "a.png")
