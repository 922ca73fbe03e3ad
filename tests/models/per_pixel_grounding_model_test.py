"""PerPixelGroundingModel: built from the registry, and presets saved under its old demo name still load."""

import json
import os

import keras
import numpy as np
from tiny_openseg import OFFSET
from tiny_openseg import SCALE
from tiny_openseg import images

from keras_openseg.models import OpenSegModel
from keras_openseg.models import PerPixelGroundingModel


def outputs_of(model, raw):
    return {key: keras.ops.convert_to_numpy(value) for key, value in model.backbone(raw * SCALE + OFFSET).items()}


def test_presets_saved_by_the_demo_before_the_move_still_load(tmp_path):
    model = PerPixelGroundingModel.from_architecture("test_tiny")
    path = str(tmp_path / "preset")
    model.save_to_preset(path)
    with open(os.path.join(path, "task.json")) as file:
        task = json.load(file)
    assert task["registered_name"] == "keras_openseg>PerPixelGroundingModel"
    # What the demo wrote when the class lived in keras_openseg/demo.py.
    task.update(registered_name="keras_openseg_demo>PerPixelGroundingModel", module="keras_openseg.demo")
    with open(os.path.join(path, "task.json"), "w") as file:
        json.dump(task, file)

    restored = OpenSegModel.from_preset(path)
    assert type(restored) is PerPixelGroundingModel
    raw = images(2).astype("float32")
    expected = outputs_of(model, raw)
    for key, value in outputs_of(restored, raw).items():
        np.testing.assert_allclose(value, expected[key], rtol=1e-5, atol=1e-5, err_msg=key)


def test_fit_freezes_the_unused_mask_shape_embedding():
    # Pixels are grounded, not regions: the mask shape embedding gets no gradient, so it is frozen for the fit
    # (no "Gradients do not exist" warning, weights untouched) and trainable again afterwards.
    import warnings

    from tiny_openseg import compile_for_tests
    from tiny_openseg import tiny_backbone
    from tiny_openseg import tiny_preprocessor
    from tiny_openseg import training_batch

    backbone = tiny_backbone(region_shape_embedding=True)
    model = compile_for_tests(PerPixelGroundingModel(backbone, preprocessor=tiny_preprocessor()))
    part = backbone.mask_shape_embedding
    before = [keras.ops.convert_to_numpy(w) for w in part.weights]
    x, y = training_batch()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="Gradients do not exist")
        model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    for old, new in zip(before, part.weights):
        np.testing.assert_array_equal(old, keras.ops.convert_to_numpy(new))
    assert part.trainable
