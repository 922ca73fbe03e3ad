"""Presets: save/load round trips (also across backends), teacher -> student, clear errors, architectures."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import keras
import keras_hub
import numpy as np
import pytest
from tiny_openseg import EMBEDDING_DIM
from tiny_openseg import OFFSET
from tiny_openseg import SCALE
from tiny_openseg import TINY_ENCODER
from tiny_openseg import TINY_HEAD
from tiny_openseg import FakeTextEmbedder
from tiny_openseg import bert_text_embedder
from tiny_openseg import images
from tiny_openseg import tiny_encoder
from tiny_openseg import tiny_model
from tiny_openseg import tiny_teacher
from tiny_openseg import training_batch

from keras_openseg.models import OPENSEG_ARCHITECTURES
from keras_openseg.models import OpenSegBackbone
from keras_openseg.models import OpenSegModel
from keras_openseg.models import OpenSegTeacher

HERE = pathlib.Path(__file__).resolve().parent


def to_numpy(tree):
    return keras.tree.map_structure(keras.ops.convert_to_numpy, tree)


def forward(task, raw_images):
    # An eager call: JAX caches each op's compilation across model instances, where `predict_on_batch`
    # would compile every loaded model anew.
    return to_numpy(task.backbone(raw_images.astype("float32") * SCALE + OFFSET))


def assert_same_outputs(actual, expected):
    for key in expected:
        np.testing.assert_allclose(actual[key], expected[key], rtol=1e-4, atol=1e-5, err_msg=key)


def tiny_text_embedder():
    """A real TextEmbedder (1-layer BERT, 8-d), so the preset carries a text tower of its own."""
    return bert_text_embedder(["cat", "dog", "grass", "sky"], EMBEDDING_DIM, sequence_length=8, lowercase=False)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    model = tiny_model(text_embedder=tiny_text_embedder())
    path = str(tmp_path_factory.mktemp("presets") / "model")
    model.save_to_preset(path)
    return model, path


def broken_copy(source, target, edit):
    shutil.copytree(source, target)
    edit(pathlib.Path(target))
    return str(target)


def test_model_round_trip_with_text_embedder(saved_model):
    model, path = saved_model
    assert {"config.json", "task.json", "model.weights.h5", "task.weights.h5", "text_embedder"} <= set(os.listdir(path))
    restored = OpenSegModel.from_preset(path)
    raw = images(2)
    assert_same_outputs(forward(restored, raw), forward(model, raw))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(restored.temperature_layer()), keras.ops.convert_to_numpy(model.temperature_layer())
    )
    np.testing.assert_allclose(restored.text_embedder.embed(["cat", "sky"]), model.text_embedder.embed(["cat", "sky"]))
    # An explicit text embedder wins; None loads none.
    assert OpenSegModel.from_preset(path, text_embedder=None).text_embedder is None


def test_text_embedder_weights_are_saved_once(saved_model, tmp_path):
    model, path = saved_model
    import h5py

    with h5py.File(os.path.join(path, "task.weights.h5"), "r") as file:
        names = []
        file.visit(names.append)
    assert not [name for name in names if "text_embedder" in name], names
    # A preset saved without a text embedder loads with one given (and with a restored one replaced).
    bare = str(tmp_path / "bare")
    OpenSegModel.from_preset(path, text_embedder=None).save_to_preset(bare)
    assert "text_embedder" not in os.listdir(bare)
    embedder = tiny_text_embedder()
    restored = OpenSegModel.from_preset(bare, text_embedder=embedder)
    assert restored.text_embedder is embedder
    assert_same_outputs(forward(restored, images(2)), forward(model, images(2)))


def test_preset_of_a_trained_model_holds_no_optimizer_state(tmp_path, recwarn):
    import h5py

    model = tiny_model()
    x, y = training_batch()
    model.fit(x, y, epochs=1, verbose=0)
    assert model.optimizer.variables  # momentum buffers exist
    path = str(tmp_path / "trained")
    model.save_to_preset(path)
    with h5py.File(os.path.join(path, "task.weights.h5"), "r") as file:
        assert "optimizer" not in file
    restored = OpenSegModel.from_preset(path)
    assert not [w for w in recwarn if "Skipping variable loading" in str(w.message)]
    assert_same_outputs(forward(restored, images(2)), forward(model, images(2)))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(restored.temperature_layer()), keras.ops.convert_to_numpy(model.temperature_layer())
    )


def test_teacher_preset_initializes_the_student(tmp_path):
    teacher = tiny_teacher()
    teacher.save_to_preset(str(tmp_path))
    raw = images(2)
    assert_same_outputs(forward(OpenSegTeacher.from_preset(str(tmp_path)), raw), forward(teacher, raw))
    student = OpenSegModel.from_preset(str(tmp_path), text_embedder=FakeTextEmbedder())
    assert isinstance(student, OpenSegModel)
    assert_same_outputs(forward(student, raw), forward(teacher, raw))
    backbone = OpenSegBackbone.from_preset(str(tmp_path))
    assert_same_outputs(to_numpy(backbone(raw * SCALE + OFFSET)), forward(teacher, raw))


SAVE_ON_OTHER_BACKEND = """
import sys
import numpy as np
sys.path.insert(0, {tests!r})
import keras
from tiny_openseg import images, tiny_model, SCALE, OFFSET
keras.utils.set_random_seed(3)
model = tiny_model()
raw = images(2)
outputs = model.backbone(raw.astype("float32") * SCALE + OFFSET)
model.save_to_preset({preset!r})
np.savez({outputs!r}, **{{k: keras.ops.convert_to_numpy(v) for k, v in outputs.items()}})
print(keras.backend.backend())
"""


@pytest.mark.slow
def test_preset_saved_on_another_backend_loads_with_the_same_outputs(tmp_path):
    other = "torch" if keras.backend.backend() == "tensorflow" else "tensorflow"
    preset, outputs = str(tmp_path / "preset"), str(tmp_path / "outputs.npz")
    script = SAVE_ON_OTHER_BACKEND.format(tests=str(HERE), preset=preset, outputs=outputs)
    env = {**os.environ, "KERAS_BACKEND": other, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == other
    restored = OpenSegModel.from_preset(preset)
    assert_same_outputs(forward(restored, images(2)), dict(np.load(outputs)))


def edit_json(filename, edit):
    def apply(path):
        config = json.loads((path / filename).read_text())
        edit(config)
        (path / filename).write_text(json.dumps(config))

    return apply


# A preset must not be able to run code of its own: Keras safe mode refuses serialized lambdas.
LAMBDA_LAYER = keras.layers.Lambda(lambda x: x * 2)


def test_preset_errors_name_the_file_and_the_problem(saved_model, tmp_path):
    _, path = saved_model
    cases = [
        (lambda p: (p / "config.json").unlink(), r"`config.json` is missing"),
        (lambda p: (p / "task.json").write_text("{ not json"), r"`task.json` cannot be read as JSON"),
        (lambda p: (p / "model.weights.h5").unlink(), r"weights file `model.weights.h5` is missing"),
        (
            lambda p: (p / "model.weights.h5").write_bytes((p / "model.weights.h5").read_bytes()[:2000]),
            r"`model.weights.h5` is not a readable HDF5 weights file",
        ),
        (
            edit_json("task.json", lambda c: c["config"]["backbone"]["config"].update(decoder_layers=2)),
            r"problem is in model.weights.h5.*the weights do not match",
        ),
        (
            edit_json(
                "task.json",
                lambda c: c["config"].update(preprocessor=keras.saving.serialize_keras_object(LAMBDA_LAYER)),
            ),
            r"problem is in config.json / task.json.*(unsafe|safe_mode)",
        ),
    ]
    for index, (edit, message) in enumerate(cases):
        broken = broken_copy(path, tmp_path / f"broken_{index}", edit)
        with pytest.raises(ValueError, match=message) as raised:
            OpenSegModel.from_preset(broken)
        assert broken in str(raised.value)


def test_wrong_or_missing_presets(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        OpenSegModel.from_preset(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="from_architecture"):
        OpenSegModel.from_preset("openseg_resnet50_minilm")
    resnet = str(tmp_path / "resnet")
    tiny_encoder().save_to_preset(resnet)
    with pytest.raises(ValueError, match=r"holds a `keras_hub>ResNetBackbone`, not an `OpenSegBackbone`"):
        OpenSegModel.from_preset(resnet)
    backbone_only = str(tmp_path / "backbone_only")
    OpenSegBackbone(tiny_encoder(), **TINY_HEAD).save_to_preset(backbone_only)
    with pytest.raises(ValueError, match="saved from a backbone"):
        OpenSegModel.from_preset(backbone_only)


def test_named_architectures_are_listed_untrained():
    # `presets` lists what `from_preset` loads (no trained OpenSeg preset is built in); the architectures are
    # listed under their own name.
    assert OpenSegModel.presets == OpenSegTeacher.presets == OpenSegBackbone.presets == {}
    presets = OpenSegModel.architectures
    assert set(presets) == set(OPENSEG_ARCHITECTURES) and presets == OpenSegTeacher.architectures
    assert presets == OpenSegBackbone.architectures
    for name, metadata in presets.items():
        assert metadata["trained_on"] is None, name
        assert {"description", "image_encoder", "text_encoder", "embedding_dim"} <= set(metadata)
        assert OPENSEG_ARCHITECTURES[name]["backbone"]["embedding_dim"] == metadata["embedding_dim"]


def test_from_architecture_composes_component_presets(tmp_path, monkeypatch):
    # An encoder saved for a fixed input size still gives a backbone for any size.
    encoder = keras_hub.models.ResNetBackbone(**{**TINY_ENCODER, "image_shape": (64, 64, 3)})
    encoder.save_to_preset(str(tmp_path))
    keras_hub.layers.ResNetImageConverter(image_size=(224, 224), scale=[0.5, 0.25, 0.125], offset=-1.0).save_to_preset(
        str(tmp_path)
    )
    entry = {
        "metadata": {"description": "test", "trained_on": None},
        "image_encoder": str(tmp_path),
        "text_encoder": None,
        "backbone": TINY_HEAD,
    }
    monkeypatch.setitem(OPENSEG_ARCHITECTURES, "openseg_tiny_test", entry)
    model = OpenSegModel.from_architecture("openseg_tiny_test", text_embedder=FakeTextEmbedder(), num_queries=3)
    assert model.backbone.num_queries == 3 and isinstance(model.text_embedder, FakeTextEmbedder)
    assert tuple(model.backbone.input["images"].shape) == (None, None, None, 3)  # any image size
    converter = model.preprocessor.image_converter
    assert converter.image_size is None and converter.scale == [0.5, 0.25, 0.125] and converter.offset == -1.0
    for loaded, saved in zip(model.backbone.image_encoder.weights, encoder.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded), keras.ops.convert_to_numpy(saved))
    assert isinstance(OpenSegTeacher.from_architecture("openseg_tiny_test", load_weights=False), OpenSegTeacher)
    with pytest.raises(ValueError, match="Unknown OpenSeg architecture"):
        OpenSegModel.from_architecture("openseg_nothing")


def test_a_mixed_bfloat16_preset_loads_in_the_global_policy_or_the_one_asked_for(tmp_path):
    """keras_hub 0.32's float-policy check raises on "mixed_bfloat16"; from_preset applies its rule itself."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        keras.utils.set_random_seed(0)
        model = tiny_model()
    finally:
        keras.config.set_dtype_policy(previous)
    assert model.backbone.dtype_policy.name == "mixed_bfloat16"
    model.save_to_preset(str(tmp_path / "preset"))
    loaded = OpenSegModel.from_preset(str(tmp_path / "preset"))  # the global policy: float32
    assert loaded.backbone.dtype_policy.name == "float32"
    x = images(1)
    expected = keras.ops.convert_to_numpy(keras.ops.cast(model.backbone(x)["region_embeddings"], "float32"))
    result = keras.ops.convert_to_numpy(loaded.backbone(x)["region_embeddings"])
    # The same weights: float32 against bfloat16 compute, whose 8-bit mantissa rounds every layer's activations
    # (random-init region embeddings reach thousands): within 5 % of their largest magnitude.
    np.testing.assert_allclose(result, expected, rtol=0, atol=0.05 * np.abs(expected).max())
    again = OpenSegModel.from_preset(str(tmp_path / "preset"), dtype="mixed_bfloat16")
    assert again.backbone.dtype_policy.name == "mixed_bfloat16"
