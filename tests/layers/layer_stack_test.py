"""The layers wired as OpenSeg wires them (sec. 3.1), with both losses, at unknown sizes and in mixed precision."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_openseg.layers import FeatureHead
from keras_openseg.layers import FPNFusion
from keras_openseg.layers import LearnedPositionEmbedding
from keras_openseg.layers import MaskPooling
from keras_openseg.layers import MaskQueryDecoder
from keras_openseg.layers import Temperature
from keras_openseg.losses import best_match_dice_loss
from keras_openseg.losses import grounding_loss

LEVELS = ("P2", "P3")
EMBEDDING_DIM = 6


def openseg_heads(dtype=None):
    """Pyramid dict -> mask logits, region embeddings: FPN, F_s + PE -> decoder -> masks, F_z -> pooling."""
    pyramid = {level: keras.Input((None, None, 3), name=level) for level in LEVELS}
    fused = FPNFusion(filters=8, levels=LEVELS, dtype=dtype)(pyramid)
    mask_features = FeatureHead(8, num_convs=1, dtype=dtype)(fused)
    region_features = FeatureHead(8, num_convs=1, output_dim=EMBEDDING_DIM, dtype=dtype)(fused)
    mask_features = LearnedPositionEmbedding(grid=(4, 4), initializer="sincos", dtype=dtype)(mask_features)
    _, mask_logits = MaskQueryDecoder(num_queries=4, num_layers=1, num_heads=2, dtype=dtype)(mask_features)
    region_embeddings = MaskPooling(dtype=dtype)(ops.sigmoid(mask_logits), region_features)
    return keras.Model(pyramid, {"mask_logits": mask_logits, "region_embeddings": region_embeddings})


class OpenSegHeads(keras.Model):
    """The heads plus the learnable temperature, trained on L_G + alpha L_S (eq. 5)."""

    def __init__(self, dtype=None, alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        self.heads = openseg_heads(dtype)
        self.temperature = Temperature(0.07)
        self.alpha = alpha

    def call(self, x):
        return self.heads(x["pyramid"])

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        pred_masks = ops.sigmoid(ops.cast(y_pred["mask_logits"], "float32"))
        dice = best_match_dice_loss(pred_masks, y["masks"], y["mask_valid"], matching="one_to_one")
        grounding = grounding_loss(
            y_pred["region_embeddings"], x["word_embeddings"], x["word_valid"], temperature=self.temperature()
        )
        return grounding + self.alpha * dice


def random_batch(batch_size=2, image_size=16, seed=0):
    rng = np.random.default_rng(seed)
    pyramid = {
        level: rng.normal(size=(batch_size, image_size // 2**stride, image_size // 2**stride, 3)).astype("float32")
        for level, stride in zip(LEVELS, (2, 3))
    }
    x = {
        "pyramid": pyramid,
        "word_embeddings": rng.normal(size=(batch_size, 3, EMBEDDING_DIM)).astype("float32"),
        "word_valid": np.array([[True, True, False]] * batch_size),
    }
    y = {
        "masks": (rng.uniform(size=(batch_size, 2, image_size, image_size)) < 0.3).astype("float32"),
        "mask_valid": np.array([[True, False]] * batch_size),
    }
    return x, y


@pytest.mark.slow
def test_trains_in_mixed_precision_at_any_size():
    # float32 training of every layer is in its own run_layer_test; torch CPU lacks bfloat16 kernels for some
    # of these ops (keras_hub skips mixed precision on torch CPU too), so torch trains in float32 here.
    dtype = None if keras.backend.backend() == "torch" else "mixed_bfloat16"
    model = OpenSegHeads(dtype=dtype)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1))
    x, y = random_batch(image_size=16)
    before = [np.array(keras.ops.convert_to_numpy(w)) for w in model.trainable_weights]
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"])
    after = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    assert all(w.dtype == np.float32 and np.isfinite(w).all() for w in after)
    unchanged = [w.path for w, b, a in zip(model.trainable_weights, before, after) if np.array_equal(b, a)]
    assert not unchanged, unchanged  # every weight lies on a path to L_G or L_S
    # Another image size and batch size: same weights, no rebuild.
    x, _ = random_batch(batch_size=3, image_size=24)
    outputs = model.predict_on_batch(x)
    assert outputs["mask_logits"].shape == (3, 4, 6, 6)
    assert outputs["region_embeddings"].shape == (3, 4, EMBEDDING_DIM)
    assert np.isfinite(outputs["mask_logits"]).all() and np.isfinite(outputs["region_embeddings"]).all()


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="only TensorFlow graphs have unknown sizes")
def test_unknown_sizes_in_tf_graph():
    import tensorflow as tf

    heads = openseg_heads()
    spec = {level: tf.TensorSpec((None, None, None, 3)) for level in LEVELS}
    run = tf.function(lambda pyramid: heads(pyramid), input_signature=[spec])
    for image_size in (16, 40):
        x, _ = random_batch(batch_size=1, image_size=image_size)
        outputs = run(x["pyramid"])
        eager = heads(x["pyramid"])
        np.testing.assert_allclose(outputs["mask_logits"].numpy(), eager["mask_logits"].numpy(), atol=1e-4)
        np.testing.assert_allclose(outputs["region_embeddings"].numpy(), eager["region_embeddings"].numpy(), atol=1e-3)
