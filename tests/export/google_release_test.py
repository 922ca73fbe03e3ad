"""Google's OpenSeg release signature: the export against the Keras model, TensorFlow-only clients, the loader."""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import keras
import keras_hub
import numpy as np
import pytest
from keras import ops

from keras_openseg import cli
from keras_openseg.google_release import INPUT_NAMES
from keras_openseg.google_release import OUTPUT_NAMES
from keras_openseg.google_release import SavedModelSegmenter
from keras_openseg.google_release import export_google_saved_model
from keras_openseg.google_release import fit_image
from keras_openseg.layers.resizing import resize
from keras_openseg.models import OpenSegBackbone
from keras_openseg.models import OpenSegImageConverter
from keras_openseg.models import OpenSegModel
from keras_openseg.models import OpenSegPreprocessor
from keras_openseg.models import TextEmbedder

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "models"))

from tiny_openseg import character_text_embedder  # noqa: E402

BACKEND = keras.backend.backend()
EMBEDDING_DIM = 8
NUM_QUERIES = 6
IMAGE_SIZE = (64, 96)  # the export's box: a 40 x 50 image is resized by 1.6 to 64 x 80, padded to 64 x 96
# Maps 0..255 to -1..1; 127.5 maps to exactly 0.0 in float32, the export's padding after normalization.
SCALE, OFFSET, PAD_PIXEL = 1 / 127.5, -1.0, 127.5

needs_saved_model_backend = pytest.mark.skipif(
    BACKEND == "torch",
    reason="Keras writes a TF SavedModel from the torch backend only through torch_xla (not a dependency); the "
    "release signature is exported from tensorflow or jax (test_torch_backend_says_where_to_export)",
)


def tiny_text_embedder():
    return character_text_embedder(EMBEDDING_DIM)


def tiny_model():
    encoder = keras_hub.models.ResNetBackbone(
        input_conv_filters=[8],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 8, 8, 8],
        stackwise_num_blocks=[1, 1, 1, 1],
        stackwise_num_strides=[1, 2, 2, 2],
        block_type="basic_block_vd",
        use_pre_activation=False,
        image_shape=(None, None, 3),
    )
    backbone = OpenSegBackbone(
        encoder,
        num_queries=NUM_QUERIES,
        hidden_dim=16,
        embedding_dim=EMBEDDING_DIM,
        decoder_layers=1,
        decoder_heads=2,
        head_convs=1,
        position_grid=(16, 16),
    )
    preprocessor = OpenSegPreprocessor(OpenSegImageConverter(scale=SCALE, offset=OFFSET))
    return OpenSegModel(backbone, preprocessor, text_embedder=tiny_text_embedder())


@pytest.fixture(scope="module")
def trained_model():
    """The tiny model after a few training steps (masks and region embeddings away from their initial values)."""
    keras.utils.set_random_seed(0)
    model = tiny_model()
    # XLA-compiled steps are the fast way on JAX (eager JAX runs op by op); on TensorFlow and torch they cost more
    # to compile than these few steps take.
    model.compile(optimizer=keras.optimizers.SGD(0.05), jit_compile=BACKEND == "jax")
    rng = np.random.default_rng(0)
    x = {
        "images": rng.integers(0, 256, (4, 64, 64, 3)).astype("uint8"),
        "word_embeddings": model.text_embedder.embed(["circle", "square", "sky", "grass"])[None].repeat(4, 0),
        "word_valid": np.ones((4, 4), bool),
    }
    y = {"masks": (rng.uniform(size=(4, 2, 64, 64)) > 0.5).astype("float32"), "mask_valid": np.ones((4, 2), bool)}
    model.fit(x, y, epochs=3, batch_size=2, verbose=0)
    return model


@pytest.fixture(scope="module")
def exported(trained_model, tmp_path_factory):
    if BACKEND == "torch":
        pytest.skip("no SavedModel export from the torch backend (see needs_saved_model_backend)")
    path = tmp_path_factory.mktemp("release") / "saved_model"
    assert export_google_saved_model(trained_model, path, image_size=IMAGE_SIZE) == str(path)
    return path


def _image(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3)).astype("uint8")


def _text(categories, names, seed=1):
    text = np.random.default_rng(seed).normal(size=(categories, names, EMBEDDING_DIM)).astype("float32")
    return text / np.linalg.norm(text, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def signature(exported):
    """`serving_default` of the export, loaded by TensorFlow the way the client scripts load it."""
    import tensorflow as tf

    return tf.saved_model.load(str(exported)).signatures["serving_default"]


def _serve(signature, image, text):
    import tensorflow as tf

    outputs = signature(inp_image_bytes=tf.io.encode_png(image), inp_text_emb=tf.constant(text))
    return {key: value.numpy() for key, value in outputs.items()}


def _canvas(image):
    """The export's resized image, padded to its canvas with the pixel that normalizes to 0 (as the graph pads)."""
    resized, _ = fit_image(image, IMAGE_SIZE)
    canvas = np.full((1,) + IMAGE_SIZE + (3,), PAD_PIXEL, "float32")
    canvas[0, : resized.shape[0], : resized.shape[1]] = resized.numpy()
    return canvas


@needs_saved_model_backend
def test_signature_is_the_releases(exported, signature):
    import tensorflow as tf

    _, inputs = signature.structured_input_signature
    assert sorted(inputs) == sorted(INPUT_NAMES)
    assert inputs["inp_image_bytes"].shape == () and inputs["inp_image_bytes"].dtype == tf.string
    assert inputs["inp_text_emb"].shape.as_list() == [None, None, EMBEDDING_DIM]
    assert sorted(signature.structured_outputs) == sorted(OUTPUT_NAMES)
    info = json.loads((exported / "assets.extra" / "openseg_export.json").read_text())
    assert info["image_size"] == list(IMAGE_SIZE) and info["num_queries"] == NUM_QUERIES


@needs_saved_model_backend
@pytest.mark.parametrize("shape, categories, names", [((40, 50), 3, 2), ((64, 96), 1, 1), ((90, 30), 4, 3)])
def test_outputs_match_the_keras_model(trained_model, signature, shape, categories, names):
    """Every output against `segment` / `pixel_features` (or a numpy version) on the same resized, padded image."""
    image, text = _image(*shape), _text(categories, names)
    outputs = _serve(signature, image, text)
    scale = min(IMAGE_SIZE[0] / shape[0], IMAGE_SIZE[1] / shape[1])
    resized = (round(shape[0] * scale), round(shape[1] * scale))
    expected_info = [list(shape), list(IMAGE_SIZE), [resized[0] / shape[0], resized[1] / shape[1]], [0, 0]]
    np.testing.assert_allclose(outputs["image_info"], expected_info, rtol=1e-6)
    crop = np.round(outputs["image_info"][0] * outputs["image_info"][2]).astype(int)
    assert tuple(crop) == resized

    canvas = _canvas(image)
    segmented = trained_model.segment(canvas, text_embeddings=text, return_mask_logits=True)
    np.testing.assert_array_equal(outputs["segm_prediction"], segmented["labels"])
    np.testing.assert_allclose(outputs["segm_confidence"], segmented["scores"], atol=1e-5)
    per_pixel = trained_model.segment(canvas, text_embeddings=text, use_proposals=False)
    np.testing.assert_array_equal(outputs["pixel_prediction"], per_pixel["labels"])
    np.testing.assert_allclose(
        outputs["segm_proposal"], 1 / (1 + np.exp(-segmented["mask_logits"])), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        outputs["ppixel_ave_feat"], trained_model.pixel_features(canvas, upsample=True), atol=1e-5
    )

    backbone = trained_model.backbone(canvas * SCALE + OFFSET)
    pixels = resize(ops.cast(backbone["pixel_embeddings"], "float32"), IMAGE_SIZE, axes=(1, 2))
    np.testing.assert_allclose(outputs["image_embedding_feat"], ops.convert_to_numpy(pixels), rtol=1e-4, atol=1e-5)
    # region_probs_: softmax over categories of max over names of cos(z_n, w) / tau, in numpy.
    regions = np.asarray(ops.convert_to_numpy(backbone["region_embeddings"]), "float64")[0]
    regions /= np.linalg.norm(regions, axis=-1, keepdims=True)
    cosines = np.einsum("ne,cse->ncs", regions, text).max(axis=-1) / float(trained_model.temperature_layer())
    probabilities = np.exp(cosines - cosines.max(axis=-1, keepdims=True))
    probabilities /= probabilities.sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(outputs["region_probs_"][0], probabilities, rtol=1e-4, atol=1e-6)

    for name, value in outputs.items():
        assert value.dtype == (np.int32 if name.endswith("prediction") else np.float32), name
    assert outputs["region_probs_"].shape == (1, NUM_QUERIES, categories)


@needs_saved_model_backend
def test_jpeg_and_grayscale_inputs_decode(signature):
    import tensorflow as tf

    jpeg = tf.io.encode_jpeg(_image(48, 32))
    gray = tf.io.encode_png(_image(20, 30)[..., :1])
    for image_bytes, size in ((jpeg, (48, 32)), (gray, (20, 30))):
        outputs = signature(inp_image_bytes=image_bytes, inp_text_emb=tf.constant(_text(2, 1)))
        np.testing.assert_array_equal(outputs["image_info"][0].numpy(), size)
        assert outputs["ppixel_ave_feat"].shape == (1,) + IMAGE_SIZE + (EMBEDDING_DIM,)


CLIENT_SCRIPT = textwrap.dedent(
    """
    # What OpenScene's fusion script and the release's Colab do, with TensorFlow alone.
    import json, sys
    import tensorflow as tf

    model = tf.saved_model.load(sys.argv[1])
    with open(sys.argv[2], "rb") as file:
        image_bytes = file.read()
    results = model.signatures["serving_default"](
        inp_image_bytes=tf.convert_to_tensor(image_bytes), inp_text_emb=tf.zeros([1, 1, int(sys.argv[3])])
    )
    img_info = results["image_info"]
    crop_sz = [int(img_info[0, 0] * img_info[2, 0]), int(img_info[0, 1] * img_info[2, 1])]
    feat = results["ppixel_ave_feat"][:, : crop_sz[0], : crop_sz[1]]
    per_pixel = results["image_embedding_feat"][:, : crop_sz[0], : crop_sz[1]]
    feat_2d = tf.image.resize(feat, tf.image.decode_image(image_bytes).shape[:2], method="nearest")[0]
    print(json.dumps({
        "modules": sorted(name for name in sys.modules if name.split(".")[0] == "keras_openseg"),
        "crop": crop_sz, "feat": feat.shape.as_list(), "per_pixel": per_pixel.shape.as_list(),
        "feat_2d": feat_2d.shape.as_list(), "finite": bool(tf.reduce_all(tf.math.is_finite(feat))),
    }))
    """
)


@pytest.mark.slow
@needs_saved_model_backend
def test_tensorflow_alone_runs_it_like_the_client_scripts(exported, tmp_path):
    """A fresh process with TensorFlow only (no KERAS_BACKEND, no keras_openseg) calls it as OpenScene does."""
    import tensorflow as tf

    image_path = tmp_path / "frame.jpg"
    image_path.write_bytes(tf.io.encode_jpeg(_image(75, 120)).numpy())
    environment = {key: value for key, value in os.environ.items() if key != "KERAS_BACKEND"}
    completed = subprocess.run(
        [sys.executable, "-c", CLIENT_SCRIPT, str(exported), str(image_path), str(EMBEDDING_DIM)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["modules"] == []  # (TensorFlow itself may import keras; nothing of this package is loaded)
    # 75 x 120 fits 64 x 96 at scale 0.8: the image is 60 x 96 on the canvas.
    assert report["crop"] == [60, 96]
    assert report["feat"] == [1, 60, 96, EMBEDDING_DIM] and report["per_pixel"] == [1, 60, 96, EMBEDDING_DIM]
    assert report["feat_2d"] == [75, 120, EMBEDDING_DIM] and report["finite"]


@needs_saved_model_backend
def test_segmenter_matches_the_keras_model(trained_model, exported):
    """SavedModelSegmenter.segment / pixel_features against OpenSegModel's on the same padded canvases."""
    segmenter = SavedModelSegmenter(str(exported))
    assert segmenter.embedding_dim == EMBEDDING_DIM
    queries = ["circle", ["square", "box"], "grass"]
    text, name_valid = trained_model.text_embeddings(queries)
    # The export's text encoder is the model's (saved in assets.extra/text_embedder).
    np.testing.assert_allclose(segmenter.text_embeddings(queries)[0], text, atol=1e-6)

    images = [_image(*IMAGE_SIZE, seed) for seed in (3, 4)]  # the canvas size: the graph leaves them as they are
    expected = trained_model.segment(np.stack(images), queries=queries, return_mask_logits=True)
    outputs = segmenter.segment(images, queries=queries, return_mask_logits=True)
    for index in range(2):
        np.testing.assert_array_equal(outputs["labels"][index], expected["labels"][index])
        np.testing.assert_allclose(outputs["scores"][index], expected["scores"][index], atol=1e-5)
        probabilities = 1 / (1 + np.exp(-outputs["mask_logits"][index]))
        np.testing.assert_allclose(probabilities, 1 / (1 + np.exp(-expected["mask_logits"][index])), atol=1e-5)
        # The logits are eq. (6) over the pixel's mask weight: same ranking, same argmax.
        np.testing.assert_array_equal(np.argmax(outputs["logits"][index], axis=0), expected["labels"][index])
    stacked = segmenter.segment(np.stack(images), text_embeddings=text, name_valid=name_valid, use_proposals=False)
    per_pixel = trained_model.segment(
        np.stack(images), text_embeddings=text, name_valid=name_valid, use_proposals=False
    )
    np.testing.assert_array_equal(stacked["labels"], per_pixel["labels"])
    features = segmenter.pixel_features(np.stack(images))
    np.testing.assert_allclose(features, trained_model.pixel_features(np.stack(images), upsample=True), atol=1e-5)

    # An image the graph resizes: results come back at the image's own size.
    small = _image(40, 50)
    outputs = segmenter.segment(small, text_embeddings=text[:, :1])
    assert outputs["labels"].shape == (1, 40, 50) and outputs["logits"].shape == (1, 3, 40, 50)
    assert segmenter.pixel_features([small])[0].shape == (64, 80, EMBEDDING_DIM)
    assert segmenter.pixel_features([small], upsample=True)[0].shape == (40, 50, EMBEDDING_DIM)


@needs_saved_model_backend
def test_segmenter_errors(exported, tmp_path, monkeypatch):
    segmenter = SavedModelSegmenter(str(exported))
    with pytest.raises(ValueError, match="exactly one"):
        segmenter.segment(_image(8, 8))
    with pytest.raises(ValueError, match="takes 8"):
        segmenter.segment(_image(8, 8), text_embeddings=np.ones((2, 5), "float32"))
    with pytest.raises(ValueError, match="queries"):
        segmenter.segment(_image(8, 8), queries=["cat", ""])
    with pytest.raises(ValueError, match="ensemble"):
        segmenter.segment(_image(8, 8), text_embeddings=_text(2, 1), ensemble="sum")
    # Without a saved text encoder the release's CLIP tower is loaded; where that fails, the error says what to do.
    requested = []

    def unreachable(preset, **kwargs):
        requested.append(preset)
        raise OSError("no network")

    monkeypatch.setattr(TextEmbedder, "from_preset", unreachable)
    bare = SavedModelSegmenter(str(exported))
    bare.path = str(tmp_path)  # a folder without assets.extra/text_embedder
    with pytest.raises(ValueError, match="clip_vit_large_patch14_336.*text_embedder="):
        bare.text_embedder  # noqa: B018
    assert requested == ["clip_vit_large_patch14_336"]


@pytest.mark.slow
@needs_saved_model_backend
def test_cli_export_and_evaluate_give_the_keras_models_miou(trained_model, tmp_path):
    """`export --format google-savedmodel`, then `evaluate --saved-model`: the Keras model's mIoU, on openseg_shapes."""
    preset, saved_model, data_dir = tmp_path / "preset", tmp_path / "release", tmp_path / "tfds"
    trained_model.save_to_preset(str(preset))
    argv = ["export", "--format", "google-savedmodel", "--preset", str(preset), "--output", str(saved_model)]
    assert cli.main(argv + ["--image-size", "64"]) == 0
    results = {}
    for flag, path in (("--preset", preset), ("--saved-model", saved_model)):
        out = tmp_path / f"{flag[2:]}.json"
        argv = ["evaluate", flag, str(path), "--dataset", "openseg_shapes/tiny", "--data-dir", str(data_dir)]
        assert cli.main(argv + ["--json", str(out), "--no-progress", "--batch-size", "3"]) == 0
        results[flag] = json.loads(out.read_text())
    keras_results, release_results = results["--preset"], results["--saved-model"]
    assert keras_results["num_examples"] == release_results["num_examples"] == 8
    assert 0.0 <= keras_results["miou"] <= 1.0
    assert release_results["miou"] == pytest.approx(keras_results["miou"], abs=1e-9)
    assert release_results["per_class_iou"] == pytest.approx(keras_results["per_class_iou"], abs=1e-9)
    assert release_results["recall@0.5"] == pytest.approx(keras_results["recall@0.5"], abs=0.02)
    assert release_results["saved_model"] == str(saved_model)


@pytest.mark.skipif(BACKEND != "torch", reason="the torch backend's error")
def test_torch_backend_says_where_to_export(trained_model, tmp_path):
    with pytest.raises(ValueError, match="tensorflow or jax"):
        export_google_saved_model(trained_model, tmp_path / "release")
