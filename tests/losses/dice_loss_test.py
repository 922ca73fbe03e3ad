import functools
import itertools

import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from keras import ops
from numpy_dice import numpy_area
from numpy_dice import numpy_dice
from numpy_dice import numpy_greedy

from keras_openseg.losses import BestMatchDiceLoss
from keras_openseg.losses import best_match_dice_loss


def compiled(fn):
    """`fn` traced into a graph: checks the loss traces, and spares jax its op-by-op compiles."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.jit(fn)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, reduce_retracing=True)
    return fn


@functools.cache
def compiled_loss(matching):
    return compiled(functools.partial(best_match_dice_loss, matching=matching))


def numpy_optimal(dice, valid):
    """Brute-force best one-to-one assignment of the valid labels; {label: query}."""
    labels = np.flatnonzero(valid)
    best, best_total = {}, -1.0
    for queries in itertools.permutations(range(dice.shape[0]), len(labels)):
        total = sum(dice[q, m] for q, m in zip(queries, labels))
        if total > best_total:
            best, best_total = dict(zip(labels, queries)), total
    return best


def numpy_dice_loss(pred, gt, valid=None, smooth=1.0, matching="max"):
    """Eq. (1) with the SPEC's batch semantics, one image and one label at a time."""
    if valid is None:
        valid = np.ones(gt.shape[:2], bool)
    if gt.shape[2:] != pred.shape[2:]:
        gt = numpy_area(gt, pred.shape[2:])
    per_image = []
    for b in range(pred.shape[0]):
        if not valid[b].any():
            continue
        dice = np.array([[numpy_dice(s, t, smooth) for t in gt[b]] for s in pred[b]])  # [N, M]
        assigned = {}
        if matching == "one_to_one":
            assigned = numpy_greedy(dice, valid[b])
        elif matching == "optimal":
            assigned = numpy_optimal(dice, valid[b])
        losses = [
            1.0 - (dice[assigned[m], m] if m in assigned else dice[:, m].max())
            for m in range(gt.shape[1])
            if valid[b, m]
        ]
        per_image.append(np.mean(losses))
    return float(np.mean(per_image)) if per_image else 0.0


def random_case(seed, batch_size=2, num_queries=4, num_labels=3, pred_size=(8, 8), gt_size=(8, 8), density=0.5):
    rng = np.random.default_rng(seed)
    pred = rng.uniform(size=(batch_size, num_queries) + pred_size).astype("float32")
    gt = (rng.uniform(size=(batch_size, num_labels) + gt_size) < density).astype("float32")
    valid = rng.uniform(size=(batch_size, num_labels)) < 0.7
    return pred, gt, valid


@pytest.mark.parametrize("matching", ["max", "one_to_one"])
@pytest.mark.parametrize(
    "shapes",
    [
        dict(batch_size=1, num_queries=1, num_labels=1),
        dict(batch_size=3, num_queries=5, num_labels=3, gt_size=(16, 16)),  # integer-factor area resize
        dict(batch_size=2, num_queries=3, num_labels=4, pred_size=(6, 5), gt_size=(9, 7)),  # any ratio; M > N
    ],
)
def test_matches_numpy(matching, shapes):
    loss_fn = compiled_loss(matching)
    for seed in range(3):
        pred, gt, valid = random_case(seed, **shapes)
        expected = numpy_dice_loss(pred, gt, valid, matching=matching)
        np.testing.assert_allclose(float(loss_fn(pred, gt, valid)), expected, rtol=1e-5, atol=1e-6)
    # No `gt_valid`: every label counts.
    np.testing.assert_allclose(float(loss_fn(pred, gt)), numpy_dice_loss(pred, gt, matching=matching), rtol=1e-5)


def test_one_to_one_is_greedy_and_within_half_of_optimal():
    # What "one_to_one" guarantees: exactly the greedy assignment; each valid label its own query while
    # queries last; total dice >= half the optimal one, loss >= the optimal assignment's loss.
    loss_fn = compiled_loss("one_to_one")
    gaps = []
    for seed in range(20):
        pred, gt, valid = random_case(seed, batch_size=1, num_queries=4, num_labels=3, pred_size=(4, 4))
        pred = pred**3  # sharper masks give a more varied dice matrix
        got = float(loss_fn(pred, gt, valid))
        optimal = numpy_dice_loss(pred, gt, valid, matching="optimal")
        np.testing.assert_allclose(got, numpy_dice_loss(pred, gt, valid, matching="one_to_one"), rtol=1e-5)
        assert got >= optimal - 1e-6
        count = max(valid.sum(), 1)
        assert count * (1 - got) >= 0.5 * count * (1 - optimal) - 1e-6
        gaps.append(got - optimal)
    assert min(gaps) < 1e-6  # greedy is often optimal


def test_one_to_one_separates_labels_that_share_a_best_query():
    # Two labels whose best query is the same: "max" lets both take it, "one_to_one" gives the second
    # label another query.
    gt = np.zeros((1, 2, 4, 4), "float32")
    gt[0, 0, :2] = 1.0
    gt[0, 1, :3] = 1.0
    pred = np.zeros((1, 2, 4, 4), "float32")
    pred[0, 0, :2] = 1.0  # good for both labels
    pred[0, 1, 3:] = 1.0  # good for neither
    max_loss = float(best_match_dice_loss(pred, gt, matching="max"))
    one_to_one = float(best_match_dice_loss(pred, gt, matching="one_to_one"))
    np.testing.assert_allclose(max_loss, numpy_dice_loss(pred, gt), rtol=1e-6)
    np.testing.assert_allclose(one_to_one, numpy_dice_loss(pred, gt, matching="one_to_one"), rtol=1e-6)
    assert one_to_one > max_loss


@pytest.mark.parametrize("matching", ["max", "one_to_one"])
def test_padding_and_empty(matching):
    pred, gt, valid = random_case(0, batch_size=3)
    valid[1] = False  # an image without label masks takes no part
    gt[0, 0] = 0.0  # an empty but valid label mask
    pred[2] = 0.0  # all-empty predictions
    loss = float(compiled_loss(matching)(pred, gt, valid))
    assert np.isfinite(loss)
    np.testing.assert_allclose(loss, numpy_dice_loss(pred, gt, valid, matching=matching), rtol=1e-5)
    # Padded slots change nothing, whatever they hold.
    padded_gt = np.concatenate([gt, np.ones_like(gt[:, :1])], axis=1)
    padded_valid = np.concatenate([valid, np.zeros_like(valid[:, :1])], axis=1)
    padded = float(compiled_loss(matching)(pred, padded_gt, padded_valid))
    np.testing.assert_allclose(padded, loss, rtol=1e-6)
    # No valid label anywhere: 0.
    assert float(compiled_loss(matching)(pred, gt, np.zeros_like(valid))) == 0.0
    assert float(compiled_loss(matching)(pred, gt[:, :0])) == 0.0


@given(
    seed=st.integers(0, 2**31 - 1),
    permutation=st.permutations(range(5)),
    matching=st.sampled_from(["max", "one_to_one"]),
)
def test_permuting_predictions_leaves_loss_unchanged(seed, permutation, matching):
    pred, gt, valid = random_case(seed, batch_size=2, num_queries=5, num_labels=3, pred_size=(6, 6))
    loss = compiled_loss(matching)(pred, gt, valid)
    permuted = compiled_loss(matching)(pred[:, list(permutation)], gt, valid)
    np.testing.assert_allclose(float(permuted), float(loss), rtol=1e-5, atol=1e-6)


@given(seed=st.integers(0, 2**31 - 1), matching=st.sampled_from(["max", "one_to_one"]), extra=st.integers(0, 2))
def test_perfect_prediction_gives_zero(seed, matching, extra):
    _, gt, valid = random_case(seed, batch_size=2, num_queries=3, num_labels=3, pred_size=(6, 6), gt_size=(6, 6))
    rng = np.random.default_rng(seed)
    # Every label mask among the predictions (in shuffled order), plus `extra` junk predictions.
    pred = np.concatenate([gt, rng.uniform(size=(2, extra, 6, 6)).astype("float32")], axis=1)
    pred = pred[:, rng.permutation(pred.shape[1])]
    loss = float(compiled_loss(matching)(pred, gt, valid))
    assert abs(loss) < 1e-6


def test_stable_in_float32_and_mixed_precision():
    rng = np.random.default_rng(3)
    logits = rng.normal(scale=100.0, size=(2, 4, 8, 8)).astype("float32")  # saturating sigmoids
    pred = ops.sigmoid(logits)
    gt = (rng.uniform(size=(2, 3, 32, 32)) < 0.5).astype("float32")
    gt[0] = 0.0
    reference = float(compiled_loss("max")(pred, gt))
    assert np.isfinite(reference)
    for dtype in ("bfloat16", "float16"):
        loss = compiled_loss("max")(ops.cast(pred, dtype), ops.cast(gt, dtype))
        assert keras.backend.standardize_dtype(loss.dtype) == "float32"
        np.testing.assert_allclose(float(loss), reference, atol=2e-2)


def test_bad_arguments():
    pred, gt, valid = random_case(0)
    with pytest.raises(ValueError, match="pred_masks"):
        best_match_dice_loss(pred[0], gt)
    with pytest.raises(ValueError, match="gt_masks"):
        best_match_dice_loss(pred, gt[0])
    with pytest.raises(ValueError, match="batch size"):
        best_match_dice_loss(pred, gt[:1])
    with pytest.raises(ValueError, match="gt_valid"):
        best_match_dice_loss(pred, gt, valid[:, :2])
    with pytest.raises(ValueError, match="pred_masks.*probabilities"):
        best_match_dice_loss(pred * 3.0 - 1.0, gt)
    with pytest.raises(ValueError, match="gt_masks.*probabilities"):
        best_match_dice_loss(pred, gt * 255.0)
    with pytest.raises(ValueError, match="matching"):
        best_match_dice_loss(pred, gt, matching="hungarian")
    with pytest.raises(ValueError, match="matching"):
        BestMatchDiceLoss(matching="hungarian")


def test_wrapper_and_serialization():
    pred, gt, valid = random_case(1)
    logits = np.log(pred) - np.log1p(-pred)
    loss = BestMatchDiceLoss(from_logits=True, matching="one_to_one")
    expected = numpy_dice_loss(pred, gt, valid, matching="one_to_one")
    got = compiled(loss.__call__)({"masks": gt, "mask_valid": valid}, logits)
    np.testing.assert_allclose(float(got), expected, rtol=1e-4)
    revived = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(revived, BestMatchDiceLoss) and revived.get_config() == loss.get_config()
    plain = compiled(BestMatchDiceLoss().__call__)
    np.testing.assert_allclose(float(plain(gt, pred)), numpy_dice_loss(pred, gt), rtol=1e-5)
    from_dict = plain({"masks": gt}, {"mask_logits": logits})
    np.testing.assert_allclose(float(from_dict), numpy_dice_loss(pred, gt), rtol=1e-4)


class MaskLogitsModel(keras.Model):
    """Mask logits of example b are row b of one dense kernel (the input is a one-hot example index).

    The loss sees the label dict and the predicted logits through `compute_loss`, as in a keras_hub Task:
    `compile(loss=...)` cannot pair a dict of labels with a single prediction tensor.
    """

    def __init__(self, num_queries, size, loss, **kwargs):
        super().__init__(**kwargs)
        self.num_queries, self.size, self.loss_fn = num_queries, size, loss
        self.dense = keras.layers.Dense(
            num_queries * size * size, use_bias=False, kernel_initializer=keras.initializers.RandomNormal(seed=0)
        )

    def call(self, x):
        return ops.reshape(self.dense(x), (-1, self.num_queries, self.size, self.size))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return self.loss_fn(y, y_pred)


@pytest.mark.parametrize("matching", ["max", "one_to_one"])
def test_gradients_reach_exactly_the_matched_queries(matching):
    batch_size, num_queries, size = 3, 4, 4
    _, gt, valid = random_case(
        5, batch_size=batch_size, num_queries=num_queries, pred_size=(size, size), gt_size=(2 * size, 2 * size)
    )
    valid[1] = False
    model = MaskLogitsModel(num_queries, size, BestMatchDiceLoss(from_logits=True, matching=matching))
    x = np.eye(batch_size, dtype="float32")
    model(x)  # builds the dense kernel
    before = keras.ops.convert_to_numpy(model.dense.kernel).reshape(batch_size, num_queries, -1)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0))
    history = model.fit(x, {"masks": gt, "mask_valid": valid}, batch_size=batch_size, epochs=1, verbose=0)
    after = keras.ops.convert_to_numpy(model.dense.kernel).reshape(batch_size, num_queries, -1)
    assert np.isfinite(history.history["loss"][0]) and np.isfinite(after).all()

    pred = 1.0 / (1.0 + np.exp(-before.reshape(batch_size, num_queries, size, size)))
    expected = numpy_dice_loss(pred, gt, valid, matching=matching)
    np.testing.assert_allclose(history.history["loss"][0], expected, rtol=1e-4)
    gt_small = numpy_area(gt, (size, size))
    for b in range(batch_size):
        matched = set()
        if valid[b].any():
            dice = np.array([[numpy_dice(s, t, 1.0) for t in gt_small[b]] for s in pred[b]])
            assigned = numpy_greedy(dice, valid[b]) if matching == "one_to_one" else {}
            matched = {assigned.get(m, int(dice[:, m].argmax())) for m in np.flatnonzero(valid[b])}
        for n in range(num_queries):
            changed = np.abs(after[b, n] - before[b, n]) > 0
            assert changed.all() if n in matched else not changed.any(), (b, n, matched)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="only TensorFlow graphs have unknown sizes")
@pytest.mark.parametrize("matching", ["max", "one_to_one"])
def test_unknown_sizes_in_tf_graph(matching):
    import tensorflow as tf

    spec = [tf.TensorSpec((None,) * 4), tf.TensorSpec((None,) * 4), tf.TensorSpec((None, None), tf.bool)]
    loss_fn = tf.function(functools.partial(best_match_dice_loss, matching=matching), input_signature=spec)
    for gt_size in ((16, 16), (9, 7)):  # integer and fractional area factors, neither known while tracing
        pred, gt, valid = random_case(7, batch_size=2, num_queries=4, num_labels=3, pred_size=(6, 5), gt_size=gt_size)
        expected = numpy_dice_loss(pred, gt, valid, matching=matching)
        np.testing.assert_allclose(float(loss_fn(pred, gt, valid)), expected, rtol=1e-5)
