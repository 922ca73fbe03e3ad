"""keras-openseg export: the serving graph against OpenSegModel.segment, and the exported artifacts reloaded."""

import importlib.util
import json

import keras
import keras_hub
import numpy as np
import pytest
from keras import ops

from keras_openseg import cli
from keras_openseg.export import OpenSegInference
from keras_openseg.export import check_format
from keras_openseg.export import export_model
from keras_openseg.models import OpenSegBackbone
from keras_openseg.models import OpenSegImageConverter
from keras_openseg.models import OpenSegModel
from keras_openseg.models import OpenSegPreprocessor

BACKEND = keras.backend.backend()
EMBEDDING_DIM = 8


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    encoder = keras_hub.models.ResNetBackbone(
        input_conv_filters=[8],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 8, 8, 8],
        stackwise_num_blocks=[1, 1, 1, 1],
        stackwise_num_strides=[1, 2, 2, 2],
        block_type="basic_block_vd",
        image_shape=(None, None, 3),
    )
    backbone = OpenSegBackbone(
        encoder,
        num_queries=4,
        hidden_dim=16,
        embedding_dim=EMBEDDING_DIM,
        decoder_layers=1,
        decoder_heads=2,
        head_convs=1,
        position_grid=(8, 8),
    )
    converter = OpenSegImageConverter(scale=(1 / 58.4, 1 / 57.1, 1 / 57.4), offset=(-2.1, -2.0, -1.8))
    return OpenSegModel(backbone, OpenSegPreprocessor(converter))


def _images(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape).astype("uint8")


def _text(categories, seed=1):
    return np.random.default_rng(seed).normal(size=(categories, EMBEDDING_DIM)).astype("float32")


def _numpy(outputs):
    return {key: np.asarray(ops.convert_to_numpy(value)) for key, value in outputs.items()}


def test_inference_matches_segment(model):
    inference = OpenSegInference.from_model(model)
    # Batch of two with one category; one image of an odd size (45 is no multiple of the stride) with three.
    # (Each new shape costs JAX a compilation of the serving graph, ~13 s: the padded-canvas check below reuses
    # the second one's outputs.)
    for shape, categories, seed in (((2, 64, 96, 3), 1, 0), ((1, 45, 70, 3), 3, 5)):
        images, text = _images(shape, seed=seed), _text(categories)
        expected = model.segment(images, text_embeddings=text)
        outputs = _numpy(inference({"images": images, "text_embeddings": text}))
        np.testing.assert_array_equal(outputs["labels"], expected["labels"])
        np.testing.assert_allclose(outputs["scores"], expected["scores"], atol=1e-5)
        grid = (-(-shape[1] // 4), -(-shape[2] // 4))
        assert outputs["masks"].shape == (shape[0], 4) + grid
        assert outputs["region_embeddings"].shape == (shape[0], 4, EMBEDDING_DIM)
        assert outputs["pixel_embeddings"].shape == (shape[0],) + grid + (EMBEDDING_DIM,)
        np.testing.assert_allclose(outputs["pixel_features"], model.pixel_features(images), atol=1e-5)
        assert outputs["labels"].dtype == np.int32
        assert 0 <= outputs["labels"].min() and outputs["labels"].max() < categories
    # A padded canvas: the serving graph's result is segment's for the image batched with a larger one.
    expected = model.segment([images[0], _images((130, 100, 3), seed=6)], text_embeddings=text)
    assert np.mean(outputs["labels"][0] == expected["labels"][0]) >= 0.995
    np.testing.assert_allclose(outputs["scores"][0], expected["scores"][0], rtol=1e-2, atol=1e-5)


def test_inference_masks_are_the_backbone_proposals(model):
    inference = OpenSegInference.from_model(model)
    images = _images((1, 64, 64, 3))
    outputs = _numpy(inference({"images": images, "text_embeddings": _text(2)}))
    normalized = images.astype("float32") * np.array(model.preprocessor.image_converter.scale, "float32")
    normalized += np.array(model.preprocessor.image_converter.offset, "float32")
    backbone = _numpy(model.backbone(normalized))
    np.testing.assert_allclose(outputs["masks"], 1 / (1 + np.exp(-backbone["mask_logits"])), atol=1e-5)
    np.testing.assert_allclose(outputs["region_embeddings"], backbone["region_embeddings"], rtol=1e-4, atol=1e-5)


def test_inference_config_round_trip(model):
    inference = OpenSegInference.from_model(model)
    restored = OpenSegInference.from_config(inference.get_config())
    assert restored.backbone.embedding_dim == EMBEDDING_DIM
    assert restored.image_converter.scale == model.preprocessor.image_converter.scale


def test_errors(model):
    with pytest.raises(ValueError, match="format"):
        check_format("tflite")
    with pytest.raises(ValueError, match="OpenSegModel"):
        OpenSegInference.from_model(model.backbone)
    with pytest.raises(ValueError, match="image_size"):
        export_model(model, "unused", image_size=(0, 64))
    with pytest.raises(ValueError, match="image_dtype"):
        OpenSegInference.from_model(model).input_signature(image_dtype="int64")
    with pytest.raises(ValueError, match="can from: torch"):
        check_format("torch", backend="jax")
    with pytest.raises(ValueError, match="litert"):
        check_format("litert", backend="jax")
    with pytest.raises(ValueError, match="can from: tensorflow"):
        check_format("onnx", backend="torch")
    if BACKEND == "tensorflow":
        with pytest.raises(ValueError, match="fixed `image_size`"):
            export_model(model, "unused.tflite", format="litert")
    if BACKEND == "torch" and importlib.util.find_spec("torch_xla") is None:
        with pytest.raises(ValueError, match="torch_xla"):
            export_model(model, "unused", format="saved_model")
    if importlib.util.find_spec("tf2onnx") is None:
        with pytest.raises(ValueError, match="tf2onnx"):
            check_format("onnx", backend="tensorflow")


@pytest.mark.slow
def test_cli_saved_model_matches_keras(model, tmp_path):
    """`keras-openseg export` of a saved preset; the SavedModel, reloaded by TensorFlow, labels like segment."""
    if BACKEND == "torch":
        pytest.skip(
            "Keras exports a TF SavedModel from the torch backend only through torch_xla (not a dependency); "
            "the torch backend's artifact is the `.pt2` of test_torch_program_matches_keras"
        )
    import tensorflow as tf

    preset = tmp_path / "preset"
    model.save_to_preset(str(preset))
    output = tmp_path / "saved_model"
    argv = ["export", "--preset", str(preset), "--output", str(output), "--image-dtype", "uint8"]
    assert cli.main(argv) == 0
    info = json.loads((output / "export_info.json").read_text())
    assert info["inputs"]["text_embeddings"]["shape"] == [None, EMBEDDING_DIM]
    served = tf.saved_model.load(str(output))
    # Free batch, image size and number of categories.
    for shape, categories in (((2, 64, 96, 3), 3), ((1, 50, 37, 3), 1)):
        images, text = _images(shape, seed=categories), _text(categories)
        expected = model.segment(images, text_embeddings=text)
        outputs = served.serve({"images": tf.constant(images), "text_embeddings": tf.constant(text)})
        outputs = {key: value.numpy() for key, value in outputs.items()}
        np.testing.assert_array_equal(outputs["labels"], expected["labels"])
        np.testing.assert_allclose(outputs["scores"], expected["scores"], atol=1e-4)
        np.testing.assert_allclose(outputs["pixel_features"], model.pixel_features(images), atol=1e-4)
    # On a padded canvas (45 x 70 -> 64 x 96) the artifact gives the Keras model's batch-invariant result: the
    # image's labels and scores from `segment` in a list with a larger image (a 160 x 128 canvas).
    image, text = _images((1, 45, 70, 3), seed=5), _text(3)
    expected = model.segment([image[0], _images((130, 100, 3), seed=6)], text_embeddings=text)
    outputs = served.serve({"images": tf.constant(image), "text_embeddings": tf.constant(text)})
    assert np.mean(outputs["labels"].numpy()[0] == expected["labels"][0]) >= 0.995
    np.testing.assert_allclose(outputs["scores"].numpy()[0], expected["scores"][0], rtol=1e-2, atol=1e-4)
    signature = served.signatures["serving_default"]
    outputs = signature(images=tf.constant(_images((1, 32, 32, 3))), text_embeddings=tf.constant(_text(2)))
    assert outputs["labels"].shape == (1, 32, 32)


@pytest.mark.slow
def test_litert_matches_keras(model, tmp_path):
    if BACKEND == "jax":
        pytest.skip("Keras has no LiteRT exporter for the jax backend")
    if BACKEND == "torch":
        pytest.skip("LiteRT export on torch needs litert-torch, which this project does not install")
    # LiteRT's own runtime (the `test` extra installs ai-edge-litert): a missing runtime fails, it does not skip.
    from ai_edge_litert.interpreter import Interpreter

    path = export_model(model, tmp_path / "model.tflite", format="litert", image_size=64)
    interpreter = Interpreter(model_path=path)
    runner = interpreter.get_signature_runner()
    images, text = _images((2, 64, 64, 3)).astype("float32"), _text(3)
    outputs = runner(images=images, text_embeddings=text)
    np.testing.assert_array_equal(outputs["labels"], model.segment(images, text_embeddings=text)["labels"])


@pytest.mark.slow
def test_torch_program_matches_keras(model, tmp_path):
    if BACKEND != "torch":
        pytest.skip("format='torch' (torch.export) is the torch backend's own format")
    import torch

    path = export_model(model, tmp_path / "model.pt2", format="torch", image_size=(64, 96))
    program = torch.export.load(path).module()
    # Traced with 2 categories and a batch of 2: other counts must work too.
    for batch, categories in ((1, 3), (3, 1)):
        images, text = _images((batch, 64, 96, 3)).astype("float32"), _text(categories)
        outputs = program({"images": torch.tensor(images), "text_embeddings": torch.tensor(text)})
        expected = model.segment(images, text_embeddings=text)["labels"]
        np.testing.assert_array_equal(outputs["labels"].numpy(), expected)


@pytest.mark.slow
def test_onnx_matches_keras(model, tmp_path):
    if BACKEND != "tensorflow":
        with pytest.raises(ValueError, match="tensorflow"):
            check_format("onnx")
        pytest.skip("Keras exports ONNX from the tensorflow backend only")
    # The `test` extra installs tf2onnx, onnx and onnxruntime: a missing one fails here, it does not skip.
    check_format("onnx")
    import onnxruntime

    free_size = BACKEND == "tensorflow"
    path = export_model(model, tmp_path / "model.onnx", format="onnx", image_size=None if free_size else 64)
    session = onnxruntime.InferenceSession(str(path))
    names = [node.name for node in session.get_outputs()]
    cases = (((2, 64, 64, 3), 3), ((1, 64, 64, 3), 1)) + ((((1, 40, 72, 3), 2),) if free_size else ())
    for shape, categories in cases:
        images, text = _images(shape).astype("float32"), _text(categories)
        feeds = {node.name: images if "image" in node.name else text for node in session.get_inputs()}
        outputs = dict(zip(names, session.run(None, feeds)))
        labels = next(value for name, value in outputs.items() if "labels" in name)
        np.testing.assert_array_equal(labels, model.segment(images, text_embeddings=text)["labels"])
