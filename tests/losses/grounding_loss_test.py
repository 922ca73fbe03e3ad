import functools

import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from keras import ops

from keras_openseg.layers import Temperature
from keras_openseg.losses import GroundingLoss
from keras_openseg.losses import grounding_loss


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
def compiled_loss(group_size=None):
    return compiled(functools.partial(grounding_loss, group_size=group_size))


def numpy_grounding_loss(regions, words, valid=None, temperature=0.07, group_size=None):
    """Eqs. (2)-(4) with the SPEC's semantics, one image-caption pair at a time, in float64."""
    regions = regions.astype("float64")
    words = words.astype("float64")
    regions = regions / np.maximum(np.linalg.norm(regions, axis=-1, keepdims=True), 1e-6)
    words = words / np.maximum(np.linalg.norm(words, axis=-1, keepdims=True), 1e-6)
    batch_size = regions.shape[0]
    valid = np.ones(words.shape[:2], bool) if valid is None else valid
    group_size = group_size or batch_size
    losses = []
    for start in range(0, batch_size, group_size):
        members = [b for b in range(start, start + group_size) if valid[b].any()]
        scores = {}
        for a in members:
            for c in members:
                similarity = regions[a] @ words[c][valid[c]].T  # [N, K_c]
                attention = np.exp((similarity - similarity.max(axis=0)) / temperature)
                attention /= attention.sum(axis=0, keepdims=True)
                scores[a, c] = np.mean(np.sum(attention * similarity, axis=0))

        def log_softmax_at(logits, index):
            logits = np.asarray(logits) / temperature
            top = logits.max()
            return logits[index] - top - np.log(np.sum(np.exp(logits - top)))

        for position, b in enumerate(members):
            over_images = log_softmax_at([scores[a, b] for a in members], position)
            over_captions = log_softmax_at([scores[b, c] for c in members], position)
            losses.append(-(over_images + over_captions))
    return float(np.mean(losses)) if losses else 0.0


def random_case(seed, batch_size=4, num_regions=5, num_words=3, dim=6):
    rng = np.random.default_rng(seed)
    regions = rng.normal(size=(batch_size, num_regions, dim)).astype("float32")
    words = rng.normal(size=(batch_size, num_words, dim)).astype("float32")
    valid = rng.uniform(size=(batch_size, num_words)) < 0.7
    return regions, words, valid


@pytest.mark.parametrize(
    "shapes,group_size",
    [
        (dict(batch_size=1, num_regions=1, num_words=1, dim=2), None),
        (dict(batch_size=4, num_regions=5, num_words=3, dim=6), None),
        (dict(batch_size=4, num_regions=5, num_words=3, dim=6), 2),
        (dict(batch_size=6, num_regions=3, num_words=4, dim=5), 3),
    ],
)
@pytest.mark.filterwarnings("ignore:You are using a softmax over axis")  # N = 1 region is a legal edge case
def test_matches_numpy(shapes, group_size):
    loss_fn = compiled_loss(group_size)
    for seed in range(3):
        regions, words, valid = random_case(seed, **shapes)
        for temperature in (0.07, 1.0):
            expected = numpy_grounding_loss(regions, words, valid, temperature, group_size)
            got = float(loss_fn(regions, words, valid, temperature=temperature))
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_padding_and_empty_captions():
    regions, words, valid = random_case(1, batch_size=4)
    valid[2] = False  # a caption without words: neither positive nor negative
    valid[0, 0] = True
    loss = float(compiled_loss()(regions, words, valid))
    np.testing.assert_allclose(loss, numpy_grounding_loss(regions, words, valid), rtol=1e-4)
    # Dropping the empty example changes nothing.
    keep = [0, 1, 3]
    np.testing.assert_allclose(float(compiled_loss()(regions[keep], words[keep], valid[keep])), loss, rtol=1e-5)
    # Padded word slots change nothing, whatever they hold.
    padded_words = np.concatenate([words, 100.0 * np.ones_like(words[:, :2])], axis=1)
    padded_valid = np.concatenate([valid, np.zeros_like(valid[:, :2])], axis=1)
    np.testing.assert_allclose(float(compiled_loss()(regions, padded_words, padded_valid)), loss, rtol=1e-5)
    # No caption has a word: 0. A group whose captions are all empty adds nothing.
    assert float(compiled_loss()(regions, words, np.zeros_like(valid))) == 0.0
    valid[:2] = False
    np.testing.assert_allclose(
        float(compiled_loss(2)(regions, words, valid)),
        numpy_grounding_loss(regions[2:], words[2:], valid[2:], group_size=2),
        rtol=1e-5,
    )


def test_stable_at_low_temperature_large_values_and_mixed_precision():
    regions, words, valid = random_case(2)
    for temperature in (0.01, 0.001):
        loss = float(compiled_loss()(1e15 * regions, words, valid, temperature=temperature))
        assert np.isfinite(loss)
        np.testing.assert_allclose(loss, numpy_grounding_loss(regions, words, valid, temperature), rtol=1e-3)
    zero_regions = float(compiled_loss()(np.zeros_like(regions), words, valid))  # all-empty masks pool to 0
    assert np.isfinite(zero_regions)
    reference = float(compiled_loss()(regions, words, valid))
    for dtype in ("bfloat16", "float16"):
        loss = compiled_loss()(ops.cast(regions, dtype), ops.cast(words, dtype), valid)
        assert keras.backend.standardize_dtype(loss.dtype) == "float32"
        np.testing.assert_allclose(float(loss), reference, rtol=5e-2)


def test_temperature_as_tensor():
    regions, words, valid = random_case(3)
    tensor = ops.convert_to_tensor(0.2)
    np.testing.assert_allclose(
        float(compiled_loss()(regions, words, valid, temperature=tensor)),
        numpy_grounding_loss(regions, words, valid, 0.2),
        rtol=1e-4,
    )
    np.testing.assert_allclose(
        float(ops.convert_to_numpy(compiled_loss()(regions, words, valid, temperature=Temperature(0.2)()))),
        numpy_grounding_loss(regions, words, valid, 0.2),
        rtol=1e-4,
    )


@given(seed=st.integers(0, 2**31 - 1), scales=st.lists(st.floats(1e-3, 1e3), min_size=4, max_size=4))
def test_scaling_region_embeddings_leaves_loss_unchanged(seed, scales):
    regions, words, valid = random_case(seed)
    scaled = regions * np.asarray(scales, "float32")[:, None, None]
    loss_fn = compiled_loss()
    np.testing.assert_allclose(float(loss_fn(scaled, words, valid)), float(loss_fn(regions, words, valid)), rtol=1e-4)


@given(seed=st.integers(0, 2**31 - 1))
def test_group_size_of_whole_batch_is_sync(seed):
    regions, words, valid = random_case(seed)
    np.testing.assert_allclose(
        float(compiled_loss(4)(regions, words, valid)), float(compiled_loss()(regions, words, valid)), rtol=1e-6
    )


def test_bad_arguments():
    regions, words, valid = random_case(0)
    with pytest.raises(ValueError, match="region_embeddings"):
        grounding_loss(regions[0], words)
    with pytest.raises(ValueError, match="word_embeddings"):
        grounding_loss(regions, words[0])
    with pytest.raises(ValueError, match="batch size"):
        grounding_loss(regions, words[:2])
    with pytest.raises(ValueError, match="embedding size"):
        grounding_loss(regions, words[..., :3])
    with pytest.raises(ValueError, match="word_valid"):
        grounding_loss(regions, words, valid[:, :2])
    with pytest.raises(ValueError, match="group_size"):
        grounding_loss(regions, words, valid, group_size=3)
    with pytest.raises(ValueError, match="temperature"):
        grounding_loss(regions, words, valid, temperature=0.0)
    with pytest.raises(ValueError, match="temperature"):
        GroundingLoss(temperature=-1.0)


def test_wrapper_and_serialization():
    regions, words, valid = random_case(4)
    loss = GroundingLoss(temperature=0.1, group_size=2)
    expected = numpy_grounding_loss(regions, words, valid, 0.1, 2)
    y_true = {"word_embeddings": words, "word_valid": valid}
    np.testing.assert_allclose(float(compiled(loss.__call__)(y_true, regions)), expected, rtol=1e-4)
    # A temperature among the predictions (the model's learnable one) wins over the constructor's.
    y_pred = {"region_embeddings": regions, "temperature": ops.convert_to_tensor(0.5)}
    with_temperature = compiled(lambda y_true, y_pred: loss(y_true, y_pred))(y_true, y_pred)
    np.testing.assert_allclose(float(with_temperature), numpy_grounding_loss(regions, words, valid, 0.5, 2), rtol=1e-4)
    revived = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(revived, GroundingLoss) and revived.get_config() == loss.get_config()


class RegionModel(keras.Model):
    """Region embeddings of example b are row b of one dense kernel; the temperature is learned alongside."""

    def __init__(self, num_regions, dim, **kwargs):
        super().__init__(**kwargs)
        self.num_regions, self.dim = num_regions, dim
        self.dense = keras.layers.Dense(
            num_regions * dim, use_bias=False, kernel_initializer=keras.initializers.RandomNormal(seed=0)
        )
        self.temperature = Temperature(0.07)
        self.grounding = GroundingLoss()

    def call(self, x):
        regions = ops.reshape(self.dense(x), (-1, self.num_regions, self.dim))
        return {"region_embeddings": regions, "temperature": self.temperature(regions)}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return self.grounding(y, y_pred)


def test_gradients_reach_regions_and_temperature():
    batch_size, num_regions, dim = 4, 3, 5
    _, words, valid = random_case(5, batch_size=batch_size, num_regions=num_regions, dim=dim)
    valid[1] = False
    valid[:, 0] = [True, False, True, True]
    model = RegionModel(num_regions, dim)
    x = np.eye(batch_size, dtype="float32")
    model(x)
    before = keras.ops.convert_to_numpy(model.dense.kernel).reshape(batch_size, num_regions, dim)
    temperature_before = float(keras.ops.convert_to_numpy(model.temperature()))
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1))
    history = model.fit(x, {"word_embeddings": words, "word_valid": valid}, batch_size=batch_size, verbose=0)
    after = keras.ops.convert_to_numpy(model.dense.kernel).reshape(batch_size, num_regions, dim)
    expected = numpy_grounding_loss(before, words, valid, temperature_before)
    np.testing.assert_allclose(history.history["loss"][0], expected, rtol=1e-4)
    assert np.isfinite(after).all()
    changed = np.abs(after - before).max(axis=-1) > 0  # [B, N]
    # Every region of every example with words gets a gradient (softmax over regions); the example without
    # words takes no part, so its regions get none.
    np.testing.assert_array_equal(changed, np.array([True, False, True, True])[:, None].repeat(num_regions, 1))
    temperature_after = float(keras.ops.convert_to_numpy(model.temperature()))
    assert np.isfinite(temperature_after) and temperature_after > 0 and temperature_after != temperature_before


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="only TensorFlow graphs have unknown sizes")
def test_unknown_sizes_in_tf_graph():
    import tensorflow as tf

    regions, words, valid = random_case(6, batch_size=4)
    spec = [tf.TensorSpec((None, None, 6)), tf.TensorSpec((None, None, 6)), tf.TensorSpec((None, None), tf.bool)]
    sync = tf.function(grounding_loss, input_signature=spec)
    grouped = tf.function(functools.partial(grounding_loss, group_size=2), input_signature=spec)
    expected = numpy_grounding_loss(regions, words, valid)
    np.testing.assert_allclose(float(sync(regions, words, valid)), expected, rtol=1e-4)
    np.testing.assert_allclose(
        float(grouped(regions, words, valid)), numpy_grounding_loss(regions, words, valid, group_size=2), rtol=1e-4
    )
