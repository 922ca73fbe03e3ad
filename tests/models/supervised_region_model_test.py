"""SupervisedRegionModel: L = CE + alpha * dice against numpy (both matchings), ignored labels, gradients (the
region head learns, the matching passes none), fit (float32 and mixed bfloat16), config and saving."""

import os
import pathlib
import sys

import keras
import numpy as np
import pytest
from keras import ops
from keras_hub.src.tests.test_case import TestCase
from tiny_openseg import EMBEDDING_DIM
from tiny_openseg import compile_for_tests
from tiny_openseg import tiny_backbone
from tiny_openseg import tiny_preprocessor
from tiny_openseg import training_batch

from keras_openseg.losses import best_match_dice_loss
from keras_openseg.models import OpenSegModel
from keras_openseg.models import SupervisedRegionModel
from keras_openseg.models import region_classification_loss

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "losses"))
from numpy_dice import numpy_area  # noqa: E402  (the dice loss tests' numpy references)
from numpy_dice import numpy_dice  # noqa: E402
from numpy_dice import numpy_greedy  # noqa: E402

NUM_CLASSES = 5
CLASS_IDS = [3, 1, 4, 10, 7]  # the dataset category id of each row, in no particular order


def class_embeddings(seed=0, num_classes=NUM_CLASSES):
    return np.random.default_rng(seed).normal(size=(num_classes, EMBEDDING_DIM)).astype("float32")


@pytest.fixture(scope="module")
def backbone():
    keras.utils.set_random_seed(0)
    return tiny_backbone()


def supervised_model(backbone=None, **kwargs):
    kwargs.setdefault("class_embeddings", class_embeddings())
    kwargs.setdefault("class_ids", CLASS_IDS)
    return SupervisedRegionModel(backbone or tiny_backbone(), **kwargs)


# === numpy reference ===


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def numpy_dice_matrix(probabilities, masks, smooth=1.0):
    """[B, N, M] dice of every prediction with every label mask, area-resized to the prediction grid."""
    labels = numpy_area(masks, probabilities.shape[2:])
    return np.array(
        [[[numpy_dice(s, t, smooth) for t in labels[b]] for s in probabilities[b]] for b in range(len(masks))]
    )


def numpy_matched_queries(dice, valid, matching):
    """[B, M] the query each valid label is matched to (-1 for invalid labels), as the dice loss matches them."""
    queries = np.full(valid.shape, -1)
    for b in range(dice.shape[0]):
        best = dice[b].argmax(axis=0)
        # Greedy by decreasing dice, each query and label used once; leftover labels take their best query.
        assigned = numpy_greedy(dice[b], valid[b]) if matching == "one_to_one" else {}
        for m in np.flatnonzero(valid[b]):
            queries[b, m] = assigned.get(m, best[m])
    return queries


def numpy_classification_loss(regions, queries, embeddings, mask_classes, class_ids, temperature):
    """Mean over the labeled masks of -log softmax_k(cos(z_q(m), c_k) / tau) at the mask's class row."""
    z, c = _unit(regions.astype(np.float64)), _unit(embeddings.astype(np.float64))
    losses = []
    for b, m in zip(*np.nonzero(queries >= 0)):
        if mask_classes[b, m] not in class_ids:
            continue
        logits = c @ z[b, queries[b, m]] / temperature
        peak = logits.max()
        log_norm = peak + np.log(np.exp(logits - peak).sum())
        losses.append(log_norm - logits[class_ids.index(mask_classes[b, m])])
    return float(np.mean(losses)) if losses else 0.0


def random_case(seed, batch=3, num_queries=6, num_masks=4, pred_size=8, gt_size=16):
    """Synthetic predictions and labels: mask logits, region embeddings, label masks, validity and classes."""
    rng = np.random.default_rng(seed)
    y_pred = {
        "mask_logits": rng.normal(scale=2.0, size=(batch, num_queries, pred_size, pred_size)).astype("float32"),
        "region_embeddings": rng.normal(size=(batch, num_queries, EMBEDDING_DIM)).astype("float32"),
    }
    mask_valid = np.ones((batch, num_masks), bool)
    mask_valid[1, 2:] = False
    mask_classes = rng.choice(CLASS_IDS, size=(batch, num_masks)).astype("int32")
    mask_classes[0, 1] = -1  # no class (e.g. a pseudo label): ignored by the CE, still in the dice loss
    mask_classes[2, 0] = 99  # a class that is not in the table: ignored too
    mask_classes[~mask_valid] = -1
    y = {
        "masks": (rng.uniform(size=(batch, num_masks, gt_size, gt_size)) > 0.5).astype("float32"),
        "mask_valid": mask_valid,
        "mask_classes": mask_classes,
    }
    return y_pred, y


def numpy_case_loss(y_pred, y, matching, temperature):
    probabilities = 1 / (1 + np.exp(-y_pred["mask_logits"].astype(np.float64)))
    dice = numpy_dice_matrix(probabilities, y["masks"])
    queries = numpy_matched_queries(dice, y["mask_valid"], matching)
    loss = numpy_classification_loss(
        y_pred["region_embeddings"], queries, class_embeddings(), y["mask_classes"], CLASS_IDS, temperature
    )
    return loss, queries


def scalar(x):
    return float(ops.convert_to_numpy(x))


# === the loss ===


@pytest.mark.parametrize("matching", ["max", "one_to_one"])
def test_compute_loss_is_classification_plus_alpha_dice_and_matches_numpy(backbone, matching):
    model = supervised_model(backbone, matching=matching, alpha=0.3, temperature=0.5)
    y_pred, y = random_case(1)
    loss = scalar(model.compute_loss(y=y, y_pred=y_pred))
    classification = scalar(model.classification_loss_tracker.result())
    dice = scalar(model.dice_loss_tracker.result())

    expected, queries = numpy_case_loss(y_pred, y, matching, temperature=0.5)
    other, other_queries = numpy_case_loss(y_pred, y, "max" if matching == "one_to_one" else "one_to_one", 0.5)
    assert not np.array_equal(queries, other_queries) and abs(other - expected) > 1e-2  # the matching shows
    np.testing.assert_allclose(classification, expected, rtol=1e-5)
    masks = ops.sigmoid(y_pred["mask_logits"])
    expected_dice = scalar(best_match_dice_loss(masks, y["masks"], y["mask_valid"], matching=matching))
    np.testing.assert_allclose(dice, expected_dice, rtol=1e-6)
    np.testing.assert_allclose(loss, expected + 0.3 * expected_dice, rtol=1e-5)

    # The dice loss reports the assignment it scored: the numpy matching, and the same loss as without it.
    value, assignment = best_match_dice_loss(
        masks, y["masks"], y["mask_valid"], matching=matching, return_assignment=True
    )
    assignment = ops.convert_to_numpy(assignment)
    np.testing.assert_allclose(scalar(value), expected_dice, rtol=1e-6)
    assert assignment.sum(axis=1).max() <= 1 and np.all(assignment.sum(axis=1)[~y["mask_valid"]] == 0)
    np.testing.assert_array_equal(np.where(y["mask_valid"], assignment.argmax(axis=1), -1), queries)


def test_the_temperature_is_the_models_learnable_one(backbone):
    y_pred, y = random_case(2)
    model = supervised_model(backbone, temperature=0.2)
    model.temperature_layer.log_temperature.assign(np.log(0.1))  # as if training had changed it
    model.compute_loss(y=y, y_pred=y_pred)
    expected, _ = numpy_case_loss(y_pred, y, "max", temperature=0.1)
    np.testing.assert_allclose(scalar(model.classification_loss_tracker.result()), expected, rtol=1e-5)


def test_unlabeled_and_invalid_masks_give_zero(backbone):
    model = supervised_model(backbone, alpha=1.0)
    y_pred, y = random_case(3)
    for change in (
        {"mask_classes": np.full_like(y["mask_classes"], -1)},  # pseudo labels and caption-only examples
        {"mask_classes": np.full_like(y["mask_classes"], 2)},  # a class not in `class_ids`
        {"mask_valid": np.zeros_like(y["mask_valid"])},  # no valid mask at all
    ):
        model.classification_loss_tracker.reset_state()
        model.dice_loss_tracker.reset_state()
        loss = scalar(model.compute_loss(y={**y, **change}, y_pred=y_pred))
        assert scalar(model.classification_loss_tracker.result()) == 0.0
        np.testing.assert_allclose(loss, scalar(model.dice_loss_tracker.result()), rtol=1e-6)
    # An ignored label leaves the others' loss as it is: dropping it from the batch changes nothing.
    one = region_classification_loss(
        y_pred["region_embeddings"],
        np.eye(6, 4, dtype="float32")[None].repeat(3, 0),
        class_embeddings(),
        np.array([[3, -1, 1, 1]] * 3),
        class_ids=CLASS_IDS,
    )
    same = region_classification_loss(
        y_pred["region_embeddings"],
        np.eye(6, 4, dtype="float32")[None].repeat(3, 0),
        class_embeddings(),
        np.array([[3, 4, 1, 1]] * 3),
        np.array([[True, False, True, True]] * 3),
        class_ids=CLASS_IDS,
    )
    np.testing.assert_allclose(scalar(one), scalar(same), rtol=1e-6)


def loss_gradients(mask_logits, regions, y, matching):
    """The CE of the model's matching, and its gradients for the mask logits and the region embeddings."""
    backend = keras.backend.backend()

    def loss(mask_logits, regions):
        _, assignment = best_match_dice_loss(
            ops.sigmoid(mask_logits), y["masks"], y["mask_valid"], matching=matching, return_assignment=True
        )
        return region_classification_loss(
            regions, assignment, class_embeddings(), y["mask_classes"], y["mask_valid"], CLASS_IDS, 0.1
        )

    if backend == "jax":
        import jax

        value, grads = jax.value_and_grad(loss, argnums=(0, 1))(mask_logits, regions)
    elif backend == "tensorflow":
        import tensorflow as tf

        inputs = [tf.constant(mask_logits), tf.constant(regions)]
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            value = loss(*inputs)
        grads = tape.gradient(value, inputs)
    else:
        import torch

        inputs = [torch.tensor(x, requires_grad=True) for x in (mask_logits, regions)]
        value = loss(*inputs)
        value.backward()
        value, grads = value.detach(), [x.grad for x in inputs]
    # TensorFlow and torch give None for an input the loss does not differentiate through: a zero gradient.
    shapes = (mask_logits.shape, regions.shape)
    grads = [np.zeros(shape, "float32") if g is None else ops.convert_to_numpy(g) for g, shape in zip(grads, shapes)]
    return scalar(value), grads


@pytest.mark.parametrize("matching", ["max", "one_to_one"])
def test_gradients_reach_the_matched_regions_and_not_the_matching(matching):
    y_pred, y = random_case(4)
    value, (mask_gradient, region_gradient) = loss_gradients(
        y_pred["mask_logits"], y_pred["region_embeddings"], y, matching
    )
    _, queries = numpy_case_loss(y_pred, y, matching, temperature=0.1)
    assert value > 0
    assert np.all(mask_gradient == 0)  # the assignment is a constant
    labeled = (queries >= 0) & np.isin(y["mask_classes"], CLASS_IDS)
    for b in range(queries.shape[0]):
        matched = set(queries[b][labeled[b]])
        for n in range(region_gradient.shape[1]):
            moved = np.abs(region_gradient[b, n]).max() > 0
            assert moved == (n in matched), (b, n, matched)


# === training ===


def test_fit_trains_the_region_head_and_not_through_the_matching():
    # With region_mask_gradient=False and alpha=0, the masks reach the CE only through the matching: the
    # mask head and decoder must not move, the region head and the temperature must.
    keras.utils.set_random_seed(1)
    model = supervised_model(tiny_backbone(region_mask_gradient=False), preprocessor=tiny_preprocessor(), alpha=0.0)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5))
    x, y = training_batch(batch=2)
    y["mask_classes"] = np.array([[3, 1, 7], [10, -1, -1]], "int32")
    before = {w.path: np.array(ops.convert_to_numpy(w)) for w in model.trainable_weights}
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    assert set(history.history) == {"loss", "classification_loss", "dice_loss"}  # no grounding loss here
    assert np.isfinite(history.history["loss"][0]) and history.history["classification_loss"][0] > 0
    after = {w.path: ops.convert_to_numpy(w) for w in model.trainable_weights}
    moved = {path for path, value in before.items() if not np.array_equal(value, after[path])}
    assert any(path.startswith("region_head/") for path in moved), sorted(moved)
    assert any("temperature" in path for path in moved), sorted(moved)
    assert not any(path.startswith(("mask_head/", "mask_decoder/")) for path in moved), sorted(moved)


@pytest.mark.parametrize("dtype", [None, "mixed_bfloat16"])
def test_fit_a_few_steps(dtype):
    keras.utils.set_random_seed(0)
    model = compile_for_tests(supervised_model(tiny_backbone(dtype=dtype), preprocessor=tiny_preprocessor()))
    x, y = training_batch(batch=2)
    y["mask_classes"] = np.array([[3, 1, 7], [10, -1, -1]], "int32")
    history = model.fit(x, y, batch_size=2, epochs=4, verbose=0)
    logs = history.history
    assert all(np.isfinite(values).all() for values in logs.values()), logs
    np.testing.assert_allclose(
        np.array(logs["loss"]), np.array(logs["classification_loss"]) + np.array(logs["dice_loss"]), rtol=1e-6
    )
    assert min(logs["loss"][1:]) < logs["loss"][0], logs  # it learns the batch
    assert keras.backend.standardize_dtype(model.class_embeddings.dtype) == "float32"


def test_y_without_classes_and_bad_arguments_raise_clear_errors(backbone):
    model = supervised_model(backbone)
    y_pred, y = random_case(5)
    del y["mask_classes"]
    with pytest.raises(ValueError, match=r"supervision='labels'.*mask_classes=True"):
        model.compute_loss(y=y, y_pred=y_pred)
    with pytest.raises(ValueError, match="needs its classes"):
        SupervisedRegionModel(backbone)
    with pytest.raises(ValueError, match=r"\[K, E\]"):
        SupervisedRegionModel(backbone, class_embeddings=class_embeddings()[None])
    with pytest.raises(ValueError, match="embedding_dim"):
        SupervisedRegionModel(backbone, class_embeddings=np.ones((3, EMBEDDING_DIM + 1), "float32"))
    with pytest.raises(ValueError, match="disagrees"):
        SupervisedRegionModel(backbone, class_embeddings=class_embeddings(), class_ids=[1, 2])
    with pytest.raises(ValueError, match="distinct"):
        SupervisedRegionModel(backbone, class_embeddings=class_embeddings(), class_ids=[1, 1, 2, 3, 4])
    with pytest.raises(ValueError, match="zero or non-finite"):
        SupervisedRegionModel(backbone, class_embeddings=np.zeros((2, EMBEDDING_DIM), "float32"))


# === config and saving ===


def test_config_round_trip_and_default_class_ids(backbone):
    model = supervised_model(backbone, matching="one_to_one", alpha=0.5)
    config = model.get_config()
    assert config["num_classes"] == NUM_CLASSES and config["class_ids"] == CLASS_IDS
    assert "class_embeddings" not in config
    restored = SupervisedRegionModel.from_config(config)
    assert (restored.num_classes, list(restored.class_ids), restored.matching, restored.alpha) == (
        NUM_CLASSES,
        CLASS_IDS,
        "one_to_one",
        0.5,
    )
    assert tuple(restored.class_embeddings.shape) == (NUM_CLASSES, EMBEDDING_DIM)
    assert not restored.class_embeddings.trainable
    default = SupervisedRegionModel(backbone, class_embeddings=class_embeddings(num_classes=3))
    assert list(default.class_ids) == [1, 2, 3]  # openseg_shapes' 1-based category ids
    assert isinstance(default, OpenSegModel)


def test_keras_file_and_preset_keep_the_class_embeddings(tmp_path):
    model = supervised_model(tiny_backbone(), preprocessor=tiny_preprocessor(), compile=False)
    x, _ = training_batch(batch=1)
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    assert type(restored) is SupervisedRegionModel and list(restored.class_ids) == CLASS_IDS
    np.testing.assert_array_equal(ops.convert_to_numpy(restored.class_embeddings), class_embeddings())
    expected = ops.convert_to_numpy(model.predict_on_batch(x)["region_embeddings"])
    np.testing.assert_allclose(
        ops.convert_to_numpy(restored.predict_on_batch(x)["region_embeddings"]), expected, rtol=1e-5, atol=1e-6
    )

    preset = str(tmp_path / "preset")
    model.save_to_preset(preset)
    loaded = OpenSegModel.from_preset(preset)
    assert type(loaded) is SupervisedRegionModel
    np.testing.assert_array_equal(ops.convert_to_numpy(loaded.class_embeddings), class_embeddings())
    assert os.path.exists(os.path.join(preset, "task.weights.h5"))


def test_from_architecture():
    model = SupervisedRegionModel.from_architecture(
        "test_tiny", class_embeddings=class_embeddings(), class_ids=CLASS_IDS
    )
    assert model.backbone.embedding_dim == EMBEDDING_DIM and model.preprocessor is not None
    assert list(model.class_ids) == CLASS_IDS


class SupervisedRegionModelSerializationTest(TestCase):
    def test_serialization(self):
        self.run_serialization_test(supervised_model(tiny_backbone(), preprocessor=tiny_preprocessor()))
