"""OpenSegModel: the eq. (5) loss, fit on teacher pseudo labels (arrays and tf.data), segment, pixel features,
keras_hub's task harness and mixed precision."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras_hub.src.tests.test_case import TestCase
from tiny_openseg import EMBEDDING_DIM
from tiny_openseg import NUM_QUERIES
from tiny_openseg import OFFSET
from tiny_openseg import SCALE
from tiny_openseg import FakeTextEmbedder
from tiny_openseg import compile_for_tests
from tiny_openseg import images
from tiny_openseg import tiny_backbone
from tiny_openseg import tiny_model
from tiny_openseg import tiny_preprocessor
from tiny_openseg import tiny_teacher
from tiny_openseg import training_batch

from keras_openseg.layers import resize
from keras_openseg.losses import best_match_dice_loss
from keras_openseg.losses import grounding_loss
from keras_openseg.models import OpenSegModel
from keras_openseg.models import segmentation_logits


def to_numpy(tree):
    return keras.tree.map_structure(keras.ops.convert_to_numpy, tree)


@pytest.fixture(scope="module")
def model():
    """One untrained model for the inference tests. They feed it batches of two 64x64 or 64x96 canvases
    only, so JAX and TensorFlow compile its forward pass twice for the whole module."""
    return tiny_model(text_embedder=FakeTextEmbedder())


def forward(model, raw_images):
    """Backbone outputs of raw images, normalized as the model's image converter does."""
    return to_numpy(model.backbone(raw_images.astype("float32") * SCALE + OFFSET))


def test_compute_loss_is_grounding_plus_alpha_dice(model):
    model = OpenSegModel(model.backbone, alpha=0.3, temperature=0.5, group_size=1)
    x, y = training_batch()
    normalized = {**x, "images": x["images"].astype("float32") * SCALE + OFFSET}
    y_pred = model(normalized)
    loss = model.compute_loss(x=normalized, y=y, y_pred=y_pred)
    masks = keras.ops.sigmoid(y_pred["mask_logits"])
    dice = best_match_dice_loss(masks, y["masks"], y["mask_valid"])
    grounding = grounding_loss(
        y_pred["region_embeddings"], x["word_embeddings"], x["word_valid"], temperature=0.5, group_size=1
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loss), keras.ops.convert_to_numpy(grounding + 0.3 * dice), rtol=1e-5
    )
    with pytest.raises(ValueError, match="word_embeddings"):
        model.compute_loss(x=normalized["images"], y=y, y_pred=y_pred)
    with pytest.raises(ValueError, match="masks"):
        model.compute_loss(x=normalized, y=y["masks"], y_pred=y_pred)


def test_fit_on_teacher_pseudo_labels(model):
    # Sec. 3.3: the teacher's de-duplicated masks are the student's mask labels, as they come out.
    x, _ = training_batch(batch=2)
    teacher = tiny_teacher(backbone=model.backbone)
    labels = teacher.pseudo_label(x["images"], max_masks=4, score_threshold=0.0)
    y = {"masks": labels["masks"], "mask_valid": labels["mask_valid"]}
    assert labels["mask_valid"].any()

    model = tiny_model(text_embedder=FakeTextEmbedder())
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    assert set(history.history) == {"loss", "grounding_loss", "dice_loss"}
    logs = {key: values[-1] for key, values in history.history.items()}
    assert all(np.isfinite(value) for value in logs.values())
    np.testing.assert_allclose(logs["loss"], logs["grounding_loss"] + logs["dice_loss"], rtol=1e-4)
    assert abs(float(keras.ops.convert_to_numpy(model.temperature_layer())) - 0.07) > 0  # tau is learned

    # The production path: a tf.data pipeline with the preprocessor mapped over it, on every backend.
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(2)
    history = model.fit(dataset, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])


class OpenSegModelSerializationTest(TestCase):
    def test_serialization(self):
        self.run_serialization_test(tiny_model())


def test_predict_normalizes_raw_images(model):
    raw = images(2)
    outputs = to_numpy(model.predict(raw, verbose=0))
    expected = forward(model, raw)
    for key in expected:
        np.testing.assert_allclose(outputs[key], expected[key], rtol=1e-4, atol=1e-4)


def test_segment_images_of_odd_sizes(model):
    batch = [images(1, 50, 70, seed=1)[0], images(1, 64, 48, seed=2)[0]]
    queries = ["cat", ["dog", "puppy"], "grass"]
    out = model.segment(batch, queries=queries)
    assert [labels.shape for labels in out["labels"]] == [(50, 70), (64, 48)]
    assert [logits.shape for logits in out["logits"]] == [(3, 50, 70), (3, 64, 48)]
    for labels, scores, logits in zip(out["labels"], out["scores"], out["logits"]):
        assert labels.dtype == np.int32 and labels.min() >= 0 and labels.max() < len(queries)
        np.testing.assert_array_equal(labels, np.argmax(logits, axis=0))
        np.testing.assert_allclose(scores, np.max(logits, axis=0))
    # A stacked batch gives stacked arrays; without logits only labels and scores.
    stacked = model.segment(images(4, 40, 40), queries=queries, return_logits=False, batch_size=2)
    assert stacked["labels"].shape == (4, 40, 40) and set(stacked) == {"labels", "scores"}
    proposals = model.segment(batch, queries=queries, return_logits=False, return_mask_logits=True)["mask_logits"]
    assert [m.shape for m in proposals] == [(NUM_QUERIES, 50, 70), (NUM_QUERIES, 64, 48)]


@pytest.mark.parametrize("ensemble", ["max", "mean"])
def test_segment_computes_equation_6(model, ensemble):
    raw = images(2, 64, 64, seed=3)
    rng = np.random.default_rng(0)
    text_embeddings = rng.normal(size=(3, 2, EMBEDDING_DIM)).astype("float32")
    name_valid = np.array([[1, 1], [1, 0], [0, 1]], bool)
    out = model.segment(raw, text_embeddings=text_embeddings, name_valid=name_valid, ensemble=ensemble)

    outputs = forward(model, raw)
    masks = 1.0 / (1.0 + np.exp(-outputs["mask_logits"]))
    logits = segmentation_logits(masks, outputs["region_embeddings"], text_embeddings, name_valid, ensemble=ensemble)
    expected = keras.ops.convert_to_numpy(resize(logits, (64, 64), axes=(2, 3)))
    np.testing.assert_allclose(out["logits"], expected, rtol=1e-4, atol=1e-4)

    pixels = model.segment(raw, text_embeddings=text_embeddings[:, 0], use_proposals=False)
    assert pixels["logits"].shape == (2, 3, 64, 64)
    assert np.abs(pixels["logits"]).max() <= 1.0 + 1e-5  # cosine similarities


def test_pixel_features(model):
    raw = images(2, 64, 64, seed=4)
    features = model.pixel_features(raw)
    assert features.shape == (2, 16, 16, EMBEDDING_DIM)
    outputs = forward(model, raw)
    masks = 1.0 / (1.0 + np.exp(-outputs["mask_logits"]))
    regions = outputs["region_embeddings"] / np.linalg.norm(outputs["region_embeddings"], axis=-1, keepdims=True)
    expected = np.einsum("bnhw,bne->bhwe", masks, regions) / masks.sum(axis=1)[..., None]
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-5)
    odd = [images(1, 50, 70)[0], images(1, 64, 48)[0]]
    assert [f.shape for f in model.pixel_features(odd, upsample=True)] == [(50, 70, 8), (64, 48, 8)]
    assert [f.shape for f in model.pixel_features(odd)] == [(13, 18, 8), (16, 12, 8)]


@pytest.mark.parametrize(
    "queries, match",
    [
        ([], "`queries` is empty"),
        ([[]], r"queries\[0\].*no text to embed"),
        (["cat", "  "], r"queries\[1\].*blank"),
        (["cat", ["dog", 3]], r"queries\[1\].*string"),
        (["cat", "nothing"], r"\['nothing'\] embed to nothing"),
    ],
)
def test_bad_queries_raise_clear_errors(model, queries, match):
    model.text_embedder = FakeTextEmbedder(zero_for={"nothing"})
    with pytest.raises(ValueError, match=match):
        model.segment(images(1, 32, 32), queries=queries)


def test_query_sources_are_checked(model):
    model.text_embedder = None
    with pytest.raises(ValueError, match="need a text embedder"):
        model.segment(images(1, 32, 32), queries=["cat"])
    with pytest.raises(ValueError, match="exactly one"):
        model.segment(images(1, 32, 32))
    with pytest.raises(ValueError, match="embedding_dim"):
        model.segment(images(1, 32, 32), text_embeddings=np.ones((2, EMBEDDING_DIM + 1), "float32"))
    with pytest.raises(ValueError, match="embedding_dim"):
        OpenSegModel(model.backbone, text_embedder=FakeTextEmbedder(embedding_dim=EMBEDDING_DIM + 1))
    with pytest.raises(ValueError, match="embed"):
        model.text_embedder = object()
    embedder = FakeTextEmbedder()
    model.text_embedder = embedder
    model.segment(images(2, 64, 64), queries=["cat"], templates=["a photo of a {}."])
    assert embedder.calls == [(["cat"], ["a photo of a {}."])]
    assert model.text_embedder is embedder and embedder not in model._flatten_layers()


class OpenSegModelTaskTest(TestCase):
    """keras_hub's `run_task_test`, step by step, for a task whose training `x` is a dict.

    `run_task_test` cannot run as it stands: it asserts that the preprocessor's `x` has the structure of
    the task's functional inputs (`task._inputs_struct`). OpenSegModel's graph takes the images alone, while
    its training `x` is `{"images", "word_embeddings", "word_valid"}`: the words only enter `compute_loss`
    (the text encoder is frozen and outside the model), so the two structures differ by design. Every other
    step of the harness runs below unchanged (predict and fit on arrays, a dataset and split preprocessing;
    fit refuses an uncompiled task), then what the harness leaves to the other tests: mixed precision
    (fit one step, predict, outputs in the compute dtype and variables in float32) and a save/load round
    trip of a mixed-precision task.
    """

    def init_kwargs(self, dtype=None):
        return {"backbone": tiny_backbone(dtype=dtype), "preprocessor": tiny_preprocessor()}

    def compiled(self, task):
        # TensorFlow's default XLA-compiles the train step, which costs far more than the step on CPU (time only).
        return compile_for_tests(task)

    def test_the_task_harness_structure_check_does_not_apply(self):
        task = OpenSegModel(**self.init_kwargs(), compile=False)
        x, y = training_batch()
        preprocessed = task.preprocessor(x, y)[0]
        # If this ever fails, the graph takes the training dict: call self.run_task_test instead. (The graph's
        # inputs are the backbone's `{"images", "padding_mask"}`, not the training dict's keys.)
        graph_inputs = set(task._inputs_struct) if isinstance(task._inputs_struct, dict) else None
        assert isinstance(preprocessed, dict) and graph_inputs != set(preprocessed)

    def test_task_harness_steps(self):
        init_kwargs = self.init_kwargs()
        task = self.compiled(OpenSegModel(**init_kwargs))
        self.run_serialization_test(task)
        x, y = training_batch()
        preprocessor = task.preprocessor
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(2)

        output = task.predict(x, verbose=0)
        shapes = keras.tree.map_structure(lambda value: tuple(value.shape), output)
        assert shapes == {
            "mask_logits": (2, NUM_QUERIES, 16, 16),
            "region_embeddings": (2, NUM_QUERIES, EMBEDDING_DIM),
            "pixel_embeddings": (2, 16, 16, EMBEDDING_DIM),
        }
        self.assertAllClose(output, task.predict(ds, verbose=0))
        task.preprocessor = None
        output_split = task.predict(ds.map(preprocessor), verbose=0)
        task.preprocessor = preprocessor
        self.assertAllClose(output, output_split)

        task.fit(x, y, verbose=0)
        task.fit(ds, verbose=0)
        task.preprocessor = None
        task.fit(ds.map(preprocessor), verbose=0)
        task.preprocessor = preprocessor
        task = OpenSegModel(**init_kwargs, compile=False)
        with self.assertRaisesRegex(ValueError, "You must call `compile"):
            task.fit(ds, verbose=0)

    def test_mixed_precision_fit_predict_and_saving(self):
        # mixed_bfloat16 on every backend (TensorFlow, JAX and PyTorch all have bfloat16 CPU kernels).
        task = self.compiled(OpenSegModel(**self.init_kwargs("mixed_bfloat16")))
        assert task.dtype_policy.name == "mixed_bfloat16"
        assert task.temperature_layer.variable_dtype == "float32"
        x, y = training_batch()
        before = [np.array(keras.ops.convert_to_numpy(w)) for w in task.trainable_weights]
        history = task.fit(x, y, batch_size=2, epochs=1, verbose=0)
        assert all(np.isfinite(values[-1]) for values in history.history.values()), history.history
        after = [keras.ops.convert_to_numpy(w) for w in task.trainable_weights]
        assert all(w.dtype == np.float32 and np.isfinite(w).all() for w in after)
        unchanged = [w.path for w, b, a in zip(task.trainable_weights, before, after) if np.array_equal(b, a)]
        assert not unchanged, unchanged  # every weight lies on a path to L_G or L_S
        outputs = task.predict(x, verbose=0)
        assert all(keras.backend.standardize_dtype(v.dtype) == "bfloat16" for v in outputs.values())

        path = os.path.join(self.get_temp_dir(), "model.keras")
        task.save(path)
        restored = keras.models.load_model(path)
        assert isinstance(restored, OpenSegModel) and restored.backbone.dtype_policy.name == "mixed_bfloat16"
        self.assertAllClose(
            to_numpy(task.predict_on_batch(x)), to_numpy(restored.predict_on_batch(x)), atol=1e-6, rtol=1e-6
        )
