"""OpenSegBackbone: keras_hub backbone checks, dynamic input sizes, mask pooling against numpy, saving, parts."""

import keras
import numpy as np
import pytest
from keras_hub.src.tests.test_case import TestCase
from tiny_openseg import EMBEDDING_DIM
from tiny_openseg import NUM_QUERIES
from tiny_openseg import TINY_HEAD
from tiny_openseg import tiny_backbone
from tiny_openseg import tiny_encoder

from keras_openseg.layers import FeatureHead
from keras_openseg.layers import MaskQueryDecoder
from keras_openseg.models import OpenSegBackbone


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


EXPECTED_OUTPUT_SHAPE = {
    "mask_logits": (2, NUM_QUERIES, 16, 16),
    "region_embeddings": (2, NUM_QUERIES, EMBEDDING_DIM),
    "pixel_embeddings": (2, 16, 16, EMBEDDING_DIM),
}


class OpenSegBackboneTest(TestCase):
    def setUp(self):
        self.init_kwargs = {"image_encoder": tiny_encoder(), **TINY_HEAD}
        # A backend tensor, as keras_hub's own backbone tests pass: the harness's mixed-precision check calls
        # `compute_output_spec(input_data)`, which in Keras 3.15 reads no shape from a numpy array.
        self.input_data = keras.ops.convert_to_tensor(
            np.random.default_rng(0).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
        )

    def test_backbone_basics(self):
        # The mixed-precision check runs (mixed_float16, mixed_bfloat16 and bfloat16 on TensorFlow and JAX;
        # keras_hub skips it on torch CPU, where test_mixed_precision_follows_the_policy covers it).
        self.run_backbone_test(
            cls=OpenSegBackbone,
            init_kwargs=self.init_kwargs,
            input_data=self.input_data,
            expected_output_shape=EXPECTED_OUTPUT_SHAPE,
        )

    def test_saving(self):
        self.run_model_saving_test(cls=OpenSegBackbone, init_kwargs=self.init_kwargs, input_data=self.input_data)

    def test_backbone_basics_with_shape_embedding(self):
        # The same keras_hub checks (mixed precision, serialization) with the option's extra layer.
        self.run_backbone_test(
            cls=OpenSegBackbone,
            init_kwargs={**self.init_kwargs, "region_shape_embedding": True},
            input_data=self.input_data,
            expected_output_shape=EXPECTED_OUTPUT_SHAPE,
        )
        self.run_model_saving_test(
            cls=OpenSegBackbone,
            init_kwargs={**self.init_kwargs, "region_shape_embedding": True},
            input_data=self.input_data,
        )


def test_any_input_size_divisible_by_32():
    outputs = tiny_backbone()(np.zeros((2, 96, 32, 3), "float32"))
    assert tuple(outputs["mask_logits"].shape) == (2, NUM_QUERIES, 24, 8)
    assert tuple(outputs["pixel_embeddings"].shape) == (2, 24, 8, EMBEDDING_DIM)
    assert tuple(outputs["region_embeddings"].shape) == (2, NUM_QUERIES, EMBEDDING_DIM)


def test_region_embeddings_pool_pixel_embeddings_with_the_masks():
    # z_i = sum_p s_i(p) F_z(p) with s = sigmoid(mask_logits) (paper sec. 3.1); "mean" divides by sum_p s_i(p).
    backbone = tiny_backbone()
    averaging = tiny_backbone(region_pooling="mean")
    averaging.set_weights(backbone.get_weights())
    images = np.random.default_rng(1).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    outputs = {k: keras.ops.convert_to_numpy(v) for k, v in backbone(images).items()}
    masks = sigmoid(outputs["mask_logits"].astype("float64"))
    expected = np.einsum("bnhw,bhwe->bne", masks, outputs["pixel_embeddings"])
    np.testing.assert_allclose(outputs["region_embeddings"], expected, rtol=1e-4, atol=1e-4)
    averaged = keras.ops.convert_to_numpy(averaging(images)["region_embeddings"])
    np.testing.assert_allclose(averaged, expected / masks.sum(axis=(2, 3))[..., None], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("options", [{}, {"region_pooling": "mean"}, {"region_shape_embedding": True}])
def test_pool_regions_is_the_backbones_own_pooling(options):
    # `pool_regions` of the backbone's own masks gives its region embeddings (what the oracle relies on).
    backbone = tiny_backbone(**options)
    if backbone.mask_shape_embedding is not None:
        kernel = backbone.mask_shape_embedding.output_dense.kernel
        kernel.assign(np.random.default_rng(8).normal(size=kernel.shape).astype("float32"))
    images = np.random.default_rng(9).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    outputs = backbone(images)
    pooled = backbone.pool_regions(keras.ops.sigmoid(outputs["mask_logits"]), outputs["pixel_embeddings"])
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(pooled),
        keras.ops.convert_to_numpy(outputs["region_embeddings"]),
        rtol=1e-4,
        atol=1e-5,
    )


def region_loss_gradients(backbone, images, variables):
    """Gradients of a loss on the region embeddings alone, with respect to `variables`."""
    projection = np.random.default_rng(2).normal(size=(NUM_QUERIES, EMBEDDING_DIM)).astype("float32")
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(backbone(images)["region_embeddings"] * projection)
        return [g if g is None else g.numpy() for g in tape.gradient(loss, variables)]
    if backend == "jax":
        import jax

        trainable = [v.value for v in backbone.trainable_variables]
        index = {id(v): i for i, v in enumerate(backbone.trainable_variables)}
        non_trainable = [v.value for v in backbone.non_trainable_variables]

        def loss(trainable):
            outputs, _ = backbone.stateless_call(trainable, non_trainable, images)
            return jax.numpy.sum(outputs["region_embeddings"] * projection)

        grads = jax.grad(loss)(trainable)
        return [np.asarray(grads[index[id(v)]]) for v in variables]
    import torch

    loss = torch.sum(backbone(images)["region_embeddings"] * torch.tensor(projection))
    grads = torch.autograd.grad(loss, [v.value for v in variables], allow_unused=True)
    return [None if g is None else g.numpy() for g in grads]


@pytest.mark.parametrize("region_mask_gradient", [True, False])
def test_region_mask_gradient(region_mask_gradient):
    # False: the region embeddings pool with constant masks, so a loss on them never reaches the mask branch
    # (the query decoder, the mask head); the region head learns either way. The outputs do not change.
    backbone = tiny_backbone(region_mask_gradient=region_mask_gradient)
    reference = tiny_backbone()
    reference.set_weights(backbone.get_weights())
    images = np.random.default_rng(3).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    for key, value in backbone(images).items():
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(value), keras.ops.convert_to_numpy(reference(images)[key]), rtol=1e-6, atol=1e-6
        )
    mask_branch = backbone.mask_decoder.trainable_variables + backbone.mask_head.trainable_variables
    region_branch = backbone.region_head.trainable_variables
    grads = region_loss_gradients(backbone, images, mask_branch + region_branch)
    mask_norm = sum(0.0 if g is None else float(np.abs(g).sum()) for g in grads[: len(mask_branch)])
    region_norm = sum(float(np.abs(g).sum()) for g in grads[len(mask_branch) :])
    assert region_norm > 0
    assert (mask_norm > 0) == region_mask_gradient
    assert OpenSegBackbone.from_config(backbone.get_config()).region_mask_gradient == region_mask_gradient


def test_region_shape_embedding_adds_the_masks_shape_to_the_normalized_pooling():
    # z_i = z_i / |z_i| + g(s_i): g starts at 0 (the pooled directions), then adds an embedding of each mask.
    backbone = tiny_backbone(region_shape_embedding=True)
    images = np.random.default_rng(4).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")

    def pooled_and_region():
        outputs = {k: keras.ops.convert_to_numpy(v) for k, v in backbone(images).items()}
        masks = sigmoid(outputs["mask_logits"].astype("float64"))
        pooled = np.einsum("bnhw,bhwe->bne", masks, outputs["pixel_embeddings"])
        return pooled / np.linalg.norm(pooled, axis=-1, keepdims=True), outputs["region_embeddings"], masks

    normalized, region, _ = pooled_and_region()
    np.testing.assert_allclose(region, normalized, rtol=1e-4, atol=1e-5)
    shape = backbone.mask_shape_embedding
    kernel = np.random.default_rng(5).normal(size=shape.output_dense.kernel.shape).astype("float32")
    shape.output_dense.kernel.assign(kernel)
    normalized, region, masks = pooled_and_region()
    expected = normalized + keras.ops.convert_to_numpy(shape(masks.astype("float32")))
    assert np.abs(region - normalized).max() > 1e-3
    np.testing.assert_allclose(region, expected, rtol=1e-4, atol=1e-5)
    restored = OpenSegBackbone.from_config(backbone.get_config())
    assert restored.region_shape_embedding and restored.count_params() == backbone.count_params()
    assert tiny_backbone().mask_shape_embedding is None


def test_region_shape_embedding_keeps_stop_gradient_masks():
    # With region_mask_gradient=False the shape embedding reads the same constant masks as the pooling: a loss
    # on the region embeddings reaches the shape layer and the region head, never the mask branch.
    backbone = tiny_backbone(region_shape_embedding=True, region_mask_gradient=False)
    shape = backbone.mask_shape_embedding
    kernel = np.random.default_rng(6).normal(size=shape.output_dense.kernel.shape).astype("float32")
    shape.output_dense.kernel.assign(kernel)
    images = np.random.default_rng(7).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    mask_branch = backbone.mask_decoder.trainable_variables + backbone.mask_head.trainable_variables
    grads = region_loss_gradients(backbone, images, mask_branch + shape.trainable_variables)
    assert all(g is None or not np.abs(g).sum() for g in grads[: len(mask_branch)])
    assert sum(float(np.abs(g).sum()) for g in grads[len(mask_branch) :]) > 0


@keras.saving.register_keras_serializable(package="keras_openseg_tests")
class ScaledMaskQueryDecoder(MaskQueryDecoder):
    """A decoder variant for the test: the mask logits times a learned scale per query."""

    def __init__(self, initial_scale=2.0, **kwargs):
        super().__init__(**kwargs)
        self.initial_scale = initial_scale

    def build(self, features_shape):
        self.logit_scale = self.add_weight(
            shape=(self.num_queries,), initializer=keras.initializers.Constant(self.initial_scale), name="logit_scale"
        )
        super().build(features_shape)

    def call(self, features, training=None):
        queries, mask_logits = super().call(features, training=training)
        return queries, mask_logits * keras.ops.cast(self.logit_scale, mask_logits.dtype)[None, :, None, None]

    def get_config(self):
        return {**super().get_config(), "initial_scale": self.initial_scale}


def test_custom_parts_round_trip_through_a_preset(tmp_path):
    decoder = ScaledMaskQueryDecoder(
        initial_scale=1.5, num_queries=NUM_QUERIES, num_layers=1, hidden_dim=16, num_heads=2, name="scaled_decoder"
    )
    backbone = tiny_backbone(mask_decoder=decoder, mask_head=FeatureHead(16, num_convs=2, name="deep_mask_head"))
    backbone.mask_decoder.logit_scale.assign(np.linspace(0.5, 2.0, NUM_QUERIES).astype("float32"))
    images = np.random.default_rng(3).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    expected = {key: keras.ops.convert_to_numpy(value) for key, value in backbone(images).items()}
    config = backbone.get_config()
    assert config["mask_decoder"]["registered_name"] == "keras_openseg_tests>ScaledMaskQueryDecoder"
    assert config["fpn_fusion"] is None and config["region_head"] is None and config["mask_pooling"] is None

    backbone.save_to_preset(str(tmp_path))
    restored = OpenSegBackbone.from_preset(str(tmp_path))
    assert type(restored.mask_decoder) is ScaledMaskQueryDecoder and restored.mask_decoder.initial_scale == 1.5
    assert type(restored.mask_head) is FeatureHead and restored.mask_head.num_convs == 2
    np.testing.assert_allclose(keras.ops.convert_to_numpy(restored.mask_decoder.logit_scale), np.linspace(0.5, 2, 6))
    for key, value in restored(images).items():
        np.testing.assert_allclose(keras.ops.convert_to_numpy(value), expected[key], rtol=1e-5, atol=1e-5, err_msg=key)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="FeaturePyramidBackbone"):
        OpenSegBackbone(keras.layers.Dense(3), **TINY_HEAD)
    encoder = tiny_encoder()
    with pytest.raises(ValueError, match="lacks the levels"):
        OpenSegBackbone(encoder, pyramid_levels=("P2", "P6"), **TINY_HEAD)
    with pytest.raises(ValueError, match="decoder_heads"):
        OpenSegBackbone(encoder, **{**TINY_HEAD, "decoder_heads": 3})
    with pytest.raises(ValueError, match="region_pooling"):
        OpenSegBackbone(encoder, region_pooling="max", **TINY_HEAD)
    with pytest.raises(ValueError, match="`mask_head` must be a Keras layer"):
        OpenSegBackbone(encoder, mask_head="conv", **TINY_HEAD)
    with pytest.raises(ValueError, match="num_queries"):
        OpenSegBackbone(encoder, mask_decoder=MaskQueryDecoder(num_queries=3, hidden_dim=16, num_heads=2), **TINY_HEAD)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "bfloat16"])
def test_mixed_precision_follows_the_policy(policy):
    # keras_hub's run_precision_test, on every backend: it returns early on torch CPU, where torch has the
    # bfloat16 kernels OpenSeg needs. (float16 is checked by the harness on TensorFlow and JAX.)
    policy = keras.DTypePolicy(policy)
    encoder = tiny_encoder()
    encoder = type(encoder).from_config({**encoder.get_config(), "dtype": policy})
    backbone = OpenSegBackbone(encoder, **TINY_HEAD, dtype=policy)
    for layer in backbone._flatten_layers():
        if isinstance(layer, (keras.layers.InputLayer, keras.layers.Softmax)):
            continue
        assert (layer.compute_dtype, layer.variable_dtype) == (policy.compute_dtype, policy.variable_dtype), layer.path
    assert all(keras.backend.standardize_dtype(w.dtype) == policy.variable_dtype for w in backbone.weights)
    images = keras.ops.convert_to_tensor(np.random.default_rng(0).uniform(-1, 1, (2, 64, 64, 3)).astype("float32"))
    outputs = backbone(images)
    specs = backbone.compute_output_spec(images)
    for key, value in outputs.items():
        assert keras.backend.standardize_dtype(value.dtype) == policy.compute_dtype, key
        assert keras.backend.standardize_dtype(specs[key].dtype) == policy.compute_dtype, key
        assert np.isfinite(keras.ops.convert_to_numpy(keras.ops.cast(value, "float32"))).all(), key


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="only TensorFlow graphs have unknown sizes")
@pytest.mark.parametrize("options", [{}, {"region_shape_embedding": True}])
def test_unknown_sizes_in_a_tf_graph(options):
    import tensorflow as tf

    backbone = tiny_backbone(**options)
    if backbone.mask_shape_embedding is not None:  # non-zero, so the graph computes the shape branch for real
        kernel = backbone.mask_shape_embedding.output_dense.kernel
        kernel.assign(np.random.default_rng(10).normal(size=kernel.shape).astype("float32"))
    run = tf.function(lambda x: backbone(x), input_signature=[tf.TensorSpec((None, None, None, 3))])
    for height, width in ((64, 64), (96, 32)):
        images = np.random.default_rng(height).uniform(-1, 1, (1, height, width, 3)).astype("float32")
        graph, eager = run(images), backbone(images)
        for key in eager:
            np.testing.assert_allclose(graph[key].numpy(), eager[key].numpy(), rtol=1e-4, atol=1e-4, err_msg=key)
