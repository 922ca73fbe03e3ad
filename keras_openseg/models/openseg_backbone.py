import inspect

import keras
import keras_hub
from keras import ops
from keras_hub.models import Backbone
from keras_hub.src.utils.python_utils import classproperty

from keras_openseg.layers import FeatureHead
from keras_openseg.layers import FPNFusion
from keras_openseg.layers import LearnedPositionEmbedding
from keras_openseg.layers import MaskPooling
from keras_openseg.layers import MaskQueryDecoder
from keras_openseg.layers import MaskShapeEmbedding
from keras_openseg.layers.padding import PADDED_MASK_LOGIT
from keras_openseg.layers.padding import PaddingFill
from keras_openseg.layers.padding import PaddingGrid
from keras_openseg.layers.padding import extent_grid
from keras_openseg.layers.padding import valid_extent
from keras_openseg.losses.grounding_loss import l2_normalize
from keras_openseg.models.openseg_presets import OPENSEG_ARCHITECTURES
from keras_openseg.models.preset_loading import architecture_entry
from keras_openseg.models.preset_loading import load_checked_preset

REGION_POOLINGS = ("sum", "mean")
# The replaceable parts: constructor arguments, attributes and config entries of the same name.
PARTS = ("fpn_fusion", "mask_head", "region_head", "mask_decoder", "mask_pooling")


def backbone_inputs(inputs):
    """`OpenSegBackbone`'s input dict from images `[B, H, W, 3]` or a dict with `images` (and `padding_mask`).

    Without a `padding_mask` every pixel is valid (`padding_mask` None).
    """
    if isinstance(inputs, dict):
        if "images" not in inputs:
            raise ValueError(f"Backbone inputs given as a dict must hold `images`. Received keys {sorted(inputs)}.")
        return {"images": inputs["images"], "padding_mask": inputs.get("padding_mask")}
    return {"images": inputs, "padding_mask": None}


class PaddedFeatureExtractor(keras.Model):
    """The image encoder's pyramid as a functional model that can keep the padding of a canvas at zero.

    keras_hub encoders take no padding mask. Called with `padding_mask`, this model runs the encoder's graph
    layer by layer and sets the padded cells of every spatial (`[B, h, w, C]`) activation to zero (cell i of
    an h-row map over an H-row canvas is padding when `i * H >= rows * h`), except the outputs of
    `ZeroPadding2D`, whose border is the convolution's own. Every convolution then sees zeros beyond the
    image, as it does beyond the edge of a canvas that ends at the image: the encoder's outputs on the
    image's cells do not depend on how far the canvas reaches. Without `padding_mask` it is the plain
    encoder graph.
    """

    def __init__(self, inputs, outputs, **kwargs):
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

    def call(self, inputs, padding_mask=None, training=None, mask=None):
        if padding_mask is None:
            return super().call(inputs, training=training, mask=mask)
        images = self._standardize_inputs(inputs)
        canvas_size = ops.shape(images[0])[1:3]
        rows, columns = valid_extent(ops.cast(padding_mask, "float32"))

        def masked(output):
            if len(getattr(output, "shape", ())) != 4:
                return output
            size = ops.shape(output)[1:3]
            valid = extent_grid(rows, columns, canvas_size, size)
            return ops.where(valid[..., None] > 0.0, output, ops.zeros_like(output))

        def masked_operation(operation):
            def call(*args, **kwargs):
                if training is not None and "training" in getattr(operation, "_call_context_args", ()):
                    kwargs["training"] = training  # as the functional graph passes it
                outputs = operation(*args, **kwargs)
                if isinstance(operation, keras.layers.ZeroPadding2D):
                    return outputs
                return keras.tree.map_structure(masked, outputs)

            return call

        outputs = self._run_through_graph(images, operation_fn=masked_operation)
        return outputs[0] if isinstance(outputs, list) and len(outputs) == 1 else outputs

    def compute_output_spec(self, inputs, padding_mask=None, training=None, mask=None):
        return super().compute_output_spec(inputs, training=training, mask=mask)


def _pool_regions(mask_pooling, shape_embedding, region_pooling, masks, pixel_embeddings, pixel_valid=None):
    """Region embeddings from masks `[B, N, h, w]` (weights on F_z's grid) and F_z: the backbone's own path."""
    region_embeddings = _call_part(mask_pooling, masks, pixel_embeddings, pixel_valid=pixel_valid)
    if region_pooling == "mean":
        area = ops.sum(ops.cast(masks, region_embeddings.dtype), axis=(2, 3))
        region_embeddings = region_embeddings / ops.maximum(area, 1e-6)[:, :, None]
    if shape_embedding is not None:
        region_embeddings = l2_normalize(region_embeddings) + shape_embedding(masks)
    return region_embeddings


def _call_part(part, *args, **padding_kwargs):
    """Call a (possibly replaced) part, passing the padding arguments its `call` accepts."""
    parameters = inspect.signature(part.call).parameters
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    kwargs = {k: v for k, v in padding_kwargs.items() if takes_kwargs or k in parameters}
    return part(*args, **kwargs)


@keras.saving.register_keras_serializable(package="keras_openseg")
class OpenSegBackbone(Backbone):
    """OpenSeg mask proposals and region embeddings on top of any keras_hub feature pyramid (sec. 3.1, App. C).

    The image encoder's pyramid (P2 to P5) is fused into one stride-4 feature map F (`FPNFusion`). Two
    `FeatureHead`s compute F_s (mask features, `hidden_dim` channels) and F_z (region features, projected to
    the text-embedding size `embedding_dim`). `num_queries` learned queries cross-attend to F_s + PE
    (`MaskQueryDecoder`) and their dot products with F_s + PE are the mask logits; the masks
    s = sigmoid(mask_logits) pool F_z into one region embedding per query,
    z_i = sum_p s_i(p) F_z(p) (`MaskPooling`).

    The paper's pooling is the plain sum. Only the direction of z is ever used (every score and loss takes
    cosine similarities), so dividing by the mask area (`region_pooling="mean"`) changes no result; it keeps
    the magnitudes independent of the image size, which helps low-precision training on large images.

    Spatial sizes are dynamic: the same weights run on any input whose sides are multiples of 32 (the
    stride of P5). The learned position embedding is laid out as in training (`LearnedPositionEmbedding`):
    feature cell (i, j) takes table cell (i, j), and only an image larger than the table stretches it (over
    its own valid region).

    Padding (keras_hub / Mask2Former-style padding masks): images of different sizes share a batch by being
    padded at the bottom and right onto one canvas, and `padding_mask` says which pixels are the image's.
    The normalized images are multiplied by it (so padding is exactly 0 whatever value the pipeline or the
    canvas put there: training's and inference's padding agree by construction); at the stride-4 grid a
    cell is valid when any of its pixels is (max pooling). Padded cells are zero in the fused features, in
    F_s and F_z (so convolutions across the border see the same zeros in every canvas), are masked out of
    the decoder's cross-attention keys, and get mask logit -1e4 (probability 0), so mask pooling, the mean
    pooling's area and every per-image sum over a mask ignore them; the position embedding is laid out for
    the image region, not the canvas. An image's outputs on its valid cells then do not depend on what it
    is batched with, up to the image encoder's own receptive field reaching past the image border (keras_hub
    encoders take no mask; they see zeros there in every canvas, but a different amount of them).

    Args:
        image_encoder: `keras_hub.models.FeaturePyramidBackbone`. Any keras_hub backbone with
            `pyramid_outputs` holding `pyramid_levels` (ResNet, EfficientNet, CSPNet, ...).
        num_queries: int. Number N of mask queries (mask proposals). Defaults to `128`.
        hidden_dim: int. Channels of the fused features F, of F_s and of the queries. Defaults to `640`.
        embedding_dim: int. Size E of the region and pixel embeddings; must equal the text encoder's
            embedding size. Defaults to `768`.
        decoder_layers: int. Cross-attention blocks of the mask-query decoder. Defaults to `3`.
        decoder_heads: int. Attention heads per decoder block. Defaults to `8`.
        head_convs: int. 3x3 convolutions in each of the F_s and F_z heads. Defaults to `3`.
        mlp_dim: int or None. MLP size of the decoder blocks; None means `4 * hidden_dim`. Defaults to `None`.
        dropout: float. Dropout in the decoder blocks. Defaults to `0.0`.
        self_attention: bool. Query self-attention in the decoder blocks (beyond the paper, App. C has
            none). Defaults to `False`.
        position_grid: tuple of 2 ints. Size of the learned position-embedding table, the stride-4 feature
            size at the training resolution (640 px -> 160). Defaults to `(160, 160)`.
        position_initializer: string or initializer. Initial values of the position table; `"sincos"` starts
            from a 2D sine/cosine code. Defaults to `"truncated_normal"`.
        pyramid_levels: tuple of strings. Levels of `image_encoder.pyramid_outputs` to fuse. Defaults to
            `("P2", "P3", "P4", "P5")`.
        region_pooling: `"sum"` or `"mean"`. `"sum"` is the paper's z_i = sum_p s_i(p) F_z(p); `"mean"`
            divides by the mask area sum_p s_i(p). Defaults to `"sum"`.
        fpn_fusion: optional layer replacing `FPNFusion` (same call: the dict of `pyramid_levels` ->
            `[B, h, w, hidden_dim]`); `hidden_dim` and `pyramid_levels` then describe what it must fit.
            Defaults to `None`.
        mask_head: optional layer replacing the F_s `FeatureHead` (`[B, h, w, C] -> [B, h, w, hidden_dim]`).
            Defaults to `None`.
        region_head: optional layer replacing the F_z `FeatureHead` (`[B, h, w, C] -> [B, h, w,
            embedding_dim]`). Defaults to `None`.
        mask_decoder: optional layer replacing `MaskQueryDecoder` (`[B, h, w, hidden_dim] -> (queries
            [B, N, hidden_dim], mask_logits [B, N, h, w])` with N = `num_queries`); `decoder_*`, `mlp_dim`,
            `dropout` and `self_attention` only configure the default one. Defaults to `None`.
        mask_pooling: optional layer replacing `MaskPooling` (same call signature), for research on pooling
            variants. Defaults to `None`.
            Each replacement part is saved with the backbone (register its class as serializable, with its
            constructor arguments in `get_config`, so presets round-trip); None builds the default part from
            the arguments above.
        region_mask_gradient: bool. Whether the region embeddings pass gradients to the masks they pool
            with. `True` is the paper's z_i = sum_p s_i(p) F_z(p), differentiated in s and F_z: the grounding
            loss also moves the masks. `False` (beyond the paper) pools with the masks held constant
            (stop-gradient): the masks learn from the mask loss L_S alone and the grounding loss trains F_z.
            On `openseg_shapes` the grounding loss otherwise bends the masks towards whatever lowers it
            (the quick-start demo's dice loss rose from 0.21 to 0.35 and recall@0.5 fell from 0.85 to
            0.54). Outputs are identical either way. Defaults to `True`.
        region_shape_embedding: bool. Whether each region embedding also says its mask's shape (beyond the
            paper): z_i = z_i / |z_i| + g(s_i), with g a `MaskShapeEmbedding` of the mask (a small CNN on the
            mask resampled around its centre at its own scale; it sees the same masks as the pooling, so
            stop-gradient ones when `region_mask_gradient=False`). A pooled feature sums the mask's interior,
            which for a region of uniform appearance is the same whatever its outline; g adds the outline.
            g starts at 0, so an untrained model gives the paper's directions. Defaults to `False`.
        dtype: string or `keras.DTypePolicy`. The dtype policy of the heads. Defaults to `None` (global
            policy).
        **kwargs: `keras_hub.models.Backbone` arguments (`name`, `trainable`).

    Inputs:
        Either images `[B, H, W, 3]` (every pixel valid) or a dict with `images` and, optionally,
        `padding_mask`:
        images: `[B, H, W, 3]` float images, already normalized by the image converter; H and W multiples
            of 32.
        padding_mask: `[B, H, W]` 1 (or True) on image pixels and 0 on padding (keras_hub's convention: 1 =
            real), the image at the top left of the canvas. Optional: None or left out means every pixel is
            valid.

    Outputs:
        A dict with `mask_logits` `[B, N, H/4, W/4]`, `region_embeddings` `[B, N, embedding_dim]` and
        `pixel_embeddings` `[B, H/4, W/4, embedding_dim]` (F_z).

    Example:

    ```python
    encoder = keras_hub.models.ResNetBackbone(
        input_conv_filters=[8], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 8, 8, 8],
        stackwise_num_blocks=[1, 1, 1, 1], stackwise_num_strides=[1, 2, 2, 2], block_type="basic_block_vd",
        image_shape=(None, None, 3),
    )
    backbone = OpenSegBackbone(encoder, num_queries=4, hidden_dim=16, embedding_dim=8, decoder_heads=2)
    outputs = backbone(np.zeros((1, 64, 96, 3), "float32"))
    outputs["mask_logits"].shape  # (1, 4, 16, 24)
    padding_mask = np.zeros((1, 64, 96), "float32")
    padding_mask[:, :45, :70] = 1.0  # a 45 x 70 image on a 64 x 96 canvas
    outputs = backbone({"images": np.zeros((1, 64, 96, 3), "float32"), "padding_mask": padding_mask})
    ```
    """

    def __init__(
        self,
        image_encoder,
        num_queries=128,
        hidden_dim=640,
        embedding_dim=768,
        decoder_layers=3,
        decoder_heads=8,
        head_convs=3,
        mlp_dim=None,
        dropout=0.0,
        self_attention=False,
        position_grid=(160, 160),
        position_initializer="truncated_normal",
        pyramid_levels=("P2", "P3", "P4", "P5"),
        region_pooling="sum",
        fpn_fusion=None,
        mask_head=None,
        region_head=None,
        mask_decoder=None,
        mask_pooling=None,
        region_mask_gradient=True,
        region_shape_embedding=False,
        dtype=None,
        **kwargs,
    ):
        pyramid = getattr(image_encoder, "pyramid_outputs", None)
        if not isinstance(image_encoder, keras.Model) or not pyramid:
            raise ValueError(
                "`image_encoder` must be a keras_hub `FeaturePyramidBackbone` (a model with `pyramid_outputs`, "
                f"e.g. `keras_hub.models.ResNetBackbone`). Received: {type(image_encoder).__name__}"
            )
        missing = [level for level in pyramid_levels if level not in pyramid]
        if missing:
            raise ValueError(
                f"`image_encoder.pyramid_outputs` lacks the levels {missing} named by `pyramid_levels`; it has "
                f"{sorted(pyramid)}."
            )
        if hidden_dim % decoder_heads:
            raise ValueError(
                f"`decoder_heads` must divide `hidden_dim`. Received: hidden_dim={hidden_dim}, "
                f"decoder_heads={decoder_heads}"
            )
        if region_pooling not in REGION_POOLINGS:
            raise ValueError(f"`region_pooling` must be one of {REGION_POOLINGS}. Received: {region_pooling!r}")
        parts = {
            "fpn_fusion": fpn_fusion,
            "mask_head": mask_head,
            "region_head": region_head,
            "mask_decoder": mask_decoder,
            "mask_pooling": mask_pooling,
        }
        for name, part in parts.items():
            if part is not None and not isinstance(part, keras.layers.Layer):
                raise ValueError(f"`{name}` must be a Keras layer or None. Received: {type(part).__name__}")
        replaced_parts = tuple(name for name, part in parts.items() if part is not None)
        if getattr(mask_decoder, "num_queries", num_queries) != num_queries:
            raise ValueError(
                f"`mask_decoder.num_queries` ({mask_decoder.num_queries}) differs from `num_queries` ({num_queries})."
            )

        # === Layers ===
        self.image_encoder = image_encoder
        self.feature_extractor = PaddedFeatureExtractor(
            image_encoder.input, {level: pyramid[level] for level in pyramid_levels}, name="feature_extractor"
        )
        # A functional model ignores `dtype=`: it computes in its layers' (the encoder's) policy, so say so.
        self.feature_extractor.dtype_policy = image_encoder.dtype_policy
        # Research hooks: any layer with the default part's call signature replaces it (see the Args).
        if fpn_fusion is None:
            fpn_fusion = FPNFusion(hidden_dim, levels=pyramid_levels, dtype=dtype, name="fpn_fusion")
        if mask_head is None:
            mask_head = FeatureHead(hidden_dim, num_convs=head_convs, dtype=dtype, name="mask_head")
        if region_head is None:
            region_head = FeatureHead(
                hidden_dim, num_convs=head_convs, output_dim=embedding_dim, dtype=dtype, name="region_head"
            )
        if mask_decoder is None:
            mask_decoder = MaskQueryDecoder(
                num_queries=num_queries,
                num_layers=decoder_layers,
                hidden_dim=hidden_dim,
                num_heads=decoder_heads,
                mlp_dim=mlp_dim,
                dropout=dropout,
                self_attention=self_attention,
                dtype=dtype,
                name="mask_decoder",
            )
        if mask_pooling is None:
            mask_pooling = MaskPooling(dtype=dtype, name="mask_pooling")
        self.fpn_fusion = fpn_fusion
        self.mask_head = mask_head
        self.region_head = region_head
        self.position_embedding = LearnedPositionEmbedding(
            position_grid, initializer=position_initializer, dtype=dtype, name="position_embedding"
        )
        self.mask_decoder = mask_decoder
        self.mask_pooling = mask_pooling
        self.mask_shape_embedding = None
        if region_shape_embedding:
            self.mask_shape_embedding = MaskShapeEmbedding(embedding_dim, dtype=dtype, name="mask_shape_embedding")

        # === Functional Model ===
        images = keras.Input(shape=image_encoder.input.shape[1:], name="images")
        # 1 on image pixels, 0 on the padding of a canvas; None (not given) means every pixel is valid.
        padding_mask = keras.Input(
            shape=image_encoder.input.shape[1:3], dtype="float32", name="padding_mask", optional=True
        )
        finest_stride = 2 ** min(int(str(level).split("_")[0][1:]) for level in pyramid_levels)
        image_valid = PaddingGrid(1, dtype=dtype, name="image_valid")(padding_mask)
        pixel_valid = PaddingGrid(finest_stride, dtype=dtype, name="pixel_valid")(padding_mask)
        # One pad convention: padded pixels are exactly 0 after normalization, whatever the canvas held.
        masked_images = PaddingFill(dtype=dtype, name="image_padding")(images, image_valid)
        pyramid = self.feature_extractor(masked_images, padding_mask=image_valid)
        fused = _call_part(self.fpn_fusion, pyramid, padding_mask=padding_mask)
        fused = PaddingFill(dtype=dtype, name="fused_padding")(fused, pixel_valid)
        mask_features = _call_part(self.mask_head, fused, pixel_valid=pixel_valid)
        mask_features = self.position_embedding(mask_features, pixel_valid)
        pixel_embeddings = _call_part(self.region_head, fused, pixel_valid=pixel_valid)
        pixel_embeddings = PaddingFill(dtype=dtype, name="pixel_embeddings_padding")(pixel_embeddings, pixel_valid)
        _, mask_logits = _call_part(self.mask_decoder, mask_features, pixel_valid=pixel_valid)
        # Padded cells get probability 0: no sum over a mask (pooling, area, dice, pseudo labels) sees them.
        mask_logits = PaddingFill(PADDED_MASK_LOGIT, channels_axis=1, dtype=dtype, name="mask_logits_padding")(
            mask_logits, pixel_valid
        )
        masks = ops.sigmoid(mask_logits)
        if not region_mask_gradient:
            masks = ops.stop_gradient(masks)
        region_embeddings = _pool_regions(
            self.mask_pooling, self.mask_shape_embedding, region_pooling, masks, pixel_embeddings, pixel_valid
        )
        super().__init__(
            inputs={"images": images, "padding_mask": padding_mask},
            outputs={
                "mask_logits": mask_logits,
                "region_embeddings": region_embeddings,
                "pixel_embeddings": pixel_embeddings,
            },
            dtype=dtype,
            **kwargs,
        )

        # === Config ===
        self.num_queries = num_queries
        self.hidden_dim = hidden_dim
        self.embedding_dim = embedding_dim
        self.decoder_layers = decoder_layers
        self.decoder_heads = decoder_heads
        self.head_convs = head_convs
        self.mlp_dim = mlp_dim
        self.dropout = dropout
        self.self_attention = self_attention
        self.position_grid = tuple(position_grid)
        self.position_initializer = position_initializer
        self.pyramid_levels = tuple(pyramid_levels)
        self.region_pooling = region_pooling
        self.region_mask_gradient = region_mask_gradient
        self.region_shape_embedding = region_shape_embedding
        # The parts given as arguments, saved with the config; the default ones are rebuilt from it.
        self._replaced_parts = replaced_parts

    def __call__(self, inputs, *args, **kwargs):
        # Images alone, or a dict without `padding_mask`: every pixel valid.
        return super().__call__(backbone_inputs(inputs), *args, **kwargs)

    def call(self, inputs, training=None, mask=None):
        return super().call(backbone_inputs(inputs), training=training, mask=mask)

    def compute_output_spec(self, inputs, training=None, mask=None):
        return super().compute_output_spec(backbone_inputs(inputs), training=training, mask=mask)

    def pool_regions(self, masks, pixel_embeddings, pixel_valid=None):
        """Region embeddings of any masks, computed as the backbone computes its own from its proposals.

        The backbone's mask pooling part (`MaskPooling` or its replacement), the `region_pooling` ("mean"
        divides by the mask area) and, with `region_shape_embedding`, the normalization and the mask's shape
        embedding. E.g. the ground-truth-mask oracle (paper table 4) pools ground-truth masks with it.

        Args:
            masks: `[B, N, h, w]` mask weights on the grid of `pixel_embeddings` (0 on padding).
            pixel_embeddings: `[B, h, w, embedding_dim]` F_z (the backbone's `pixel_embeddings` output).
            pixel_valid: `[B, h, w]` valid cells, or None (every cell). Defaults to `None`.

        Returns:
            `[B, N, embedding_dim]` region embeddings.

        Example:

        ```python
        outputs = backbone(images)
        masks = keras.ops.sigmoid(outputs["mask_logits"])
        regions = backbone.pool_regions(masks, outputs["pixel_embeddings"])  # == outputs["region_embeddings"]
        ```
        """
        return _pool_regions(
            self.mask_pooling, self.mask_shape_embedding, self.region_pooling, masks, pixel_embeddings, pixel_valid
        )

    def get_config(self):
        config = super().get_config()
        position_initializer = self.position_initializer
        if not isinstance(position_initializer, str):
            position_initializer = keras.initializers.serialize(position_initializer)
        config.update(
            {
                "image_encoder": keras.layers.serialize(self.image_encoder),
                "num_queries": self.num_queries,
                "hidden_dim": self.hidden_dim,
                "embedding_dim": self.embedding_dim,
                "decoder_layers": self.decoder_layers,
                "decoder_heads": self.decoder_heads,
                "head_convs": self.head_convs,
                "mlp_dim": self.mlp_dim,
                "dropout": self.dropout,
                "self_attention": self.self_attention,
                "position_grid": self.position_grid,
                "position_initializer": position_initializer,
                "pyramid_levels": self.pyramid_levels,
                "region_pooling": self.region_pooling,
                "region_mask_gradient": self.region_mask_gradient,
                "region_shape_embedding": self.region_shape_embedding,
            }
        )
        for name in PARTS:
            replaced = name in self._replaced_parts
            config[name] = keras.layers.serialize(getattr(self, name)) if replaced else None
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("image_encoder"), dict):
            config["image_encoder"] = keras.layers.deserialize(config["image_encoder"])
        for name in PARTS:
            if isinstance(config.get(name), dict):
                config[name] = keras.layers.deserialize(config[name])
        if isinstance(config.get("position_initializer"), dict):
            config["position_initializer"] = keras.initializers.deserialize(config["position_initializer"])
        return super().from_config(config)

    # === Presets ===

    @classproperty
    def architectures(cls):
        """Named untrained architectures (`openseg_presets.OPENSEG_ARCHITECTURES`): name -> metadata."""
        return {name: dict(entry["metadata"]) for name, entry in OPENSEG_ARCHITECTURES.items()}

    @classmethod
    def from_architecture(cls, name, load_weights=True, **kwargs):
        """Build a named architecture's backbone: its image encoder with a fresh OpenSeg head.

        A paper-scale architecture's encoder comes from its keras_hub preset (downloaded unless cached or
        local); a small one's is a random-init keras_hub model. Either way the encoder takes images of any
        size (`image_shape=(None, None, 3)`). The task classes' `from_architecture` add the image converter.

        Args:
            name: string. A key of `architectures`.
            load_weights: bool. Load the image encoder's pretrained weights. Defaults to `True`.
            **kwargs: `OpenSegBackbone` arguments overriding the architecture's (e.g. `num_queries=64`,
                `embedding_dim=` of another text encoder).

        Example:

        ```python
        backbone = OpenSegBackbone.from_architecture("test_tiny", num_queries=4)
        backbone(np.zeros((1, 64, 64, 3), "float32"))["mask_logits"].shape  # (1, 4, 16, 16)
        ```
        """
        entry = architecture_entry(name)
        encoder = entry["image_encoder"]
        # Dynamic spatial size: OpenSeg runs at any multiple of 32, whatever size the encoder was saved with.
        if isinstance(encoder, str):
            image_encoder = Backbone.from_preset(encoder, load_weights=load_weights, image_shape=(None, None, 3))
        else:
            encoder_cls = getattr(keras_hub.models, encoder["class_name"])
            image_encoder = encoder_cls(**encoder["config"], image_shape=(None, None, 3))
        return cls(image_encoder, **{**entry["backbone"], **kwargs})

    @classmethod
    def from_preset(cls, preset, load_weights=True, **kwargs):
        """Load a saved `OpenSegBackbone` preset: a local directory or a `kaggle://` / `hf://` handle.

        Configs are deserialized in Keras safe mode. A local directory is checked first, and a missing,
        unreadable or mismatched file raises a ValueError that names it.

        Args:
            preset: string. Path of a preset directory written by `save_to_preset`, or a hub handle.
            load_weights: bool. Load the saved weights; False gives a random initialization of the saved
                configuration. Defaults to `True`.
            **kwargs: constructor arguments that override the saved ones (e.g. `dtype=`).
        """
        return load_checked_preset(cls, super().from_preset, preset, load_weights, **kwargs)
