import keras
from keras import ops
from keras_hub.models import Backbone

from keras_openseg.layers import FeatureHead
from keras_openseg.layers import FPNFusion
from keras_openseg.layers import LearnedPositionEmbedding
from keras_openseg.layers import MaskPooling
from keras_openseg.layers import MaskQueryDecoder
from keras_openseg.models.preset_loading import OpenSegPresetMixin

REGION_POOLINGS = ("sum", "mean")


@keras.saving.register_keras_serializable(package="keras_openseg")
class OpenSegBackbone(OpenSegPresetMixin, Backbone):
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
    stride of P5), and the learned position embedding is resized to each feature map.

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
        mask_pooling: optional layer replacing `MaskPooling` (same call signature; register it as
            serializable so presets round-trip), for research on pooling variants. Defaults to `None`.
        region_mask_gradient: bool. Whether the region embeddings pass gradients to the masks they pool
            with. `True` is the paper's z_i = sum_p s_i(p) F_z(p), differentiated in s and F_z: the grounding
            loss also moves the masks. `False` (beyond the paper) pools with the masks held constant
            (stop-gradient): the masks learn from the mask loss L_S alone and the grounding loss trains F_z.
            On `openseg_shapes` the grounding loss otherwise bends the masks towards whatever lowers it
            (the quick-start demo's dice loss rose from 0.21 to 0.35 and recall@0.5 fell from 0.85 to
            0.54). Outputs are identical either way. Defaults to `True`.
        dtype: string or `keras.DTypePolicy`. The dtype policy of the heads. Defaults to `None` (global
            policy).
        **kwargs: `keras_hub.models.Backbone` arguments (`name`, `trainable`).

    Inputs:
        images: `[B, H, W, 3]` float images, already normalized by the image converter; H and W multiples
            of 32.

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
        mask_pooling=None,
        region_mask_gradient=True,
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

        # === Layers ===
        self.image_encoder = image_encoder
        self.feature_extractor = keras.Model(
            image_encoder.input, {level: pyramid[level] for level in pyramid_levels}, name="feature_extractor"
        )
        self.fpn_fusion = FPNFusion(hidden_dim, levels=pyramid_levels, dtype=dtype, name="fpn_fusion")
        self.mask_head = FeatureHead(hidden_dim, num_convs=head_convs, dtype=dtype, name="mask_head")
        self.region_head = FeatureHead(
            hidden_dim, num_convs=head_convs, output_dim=embedding_dim, dtype=dtype, name="region_head"
        )
        self.position_embedding = LearnedPositionEmbedding(
            position_grid, initializer=position_initializer, dtype=dtype, name="position_embedding"
        )
        self.mask_decoder = MaskQueryDecoder(
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
        # A research hook: any layer with MaskPooling's call signature ([B,N,h,w], [B,h,w,E]) -> [B,N,E].
        self.mask_pooling = mask_pooling or MaskPooling(dtype=dtype, name="mask_pooling")

        # === Functional Model ===
        images = keras.Input(shape=image_encoder.input.shape[1:], name="images")
        fused = self.fpn_fusion(self.feature_extractor(images))
        mask_features = self.position_embedding(self.mask_head(fused))
        pixel_embeddings = self.region_head(fused)
        _, mask_logits = self.mask_decoder(mask_features)
        masks = ops.sigmoid(mask_logits)
        if not region_mask_gradient:
            masks = ops.stop_gradient(masks)
        region_embeddings = self.mask_pooling(masks, pixel_embeddings)
        if region_pooling == "mean":
            area = ops.sum(ops.cast(masks, region_embeddings.dtype), axis=(2, 3))
            region_embeddings = region_embeddings / ops.maximum(area, 1e-6)[:, :, None]
        super().__init__(
            inputs=images,
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
                "mask_pooling": None
                if type(self.mask_pooling) is MaskPooling
                else keras.layers.serialize(self.mask_pooling),
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("image_encoder"), dict):
            config["image_encoder"] = keras.layers.deserialize(config["image_encoder"])
        if isinstance(config.get("mask_pooling"), dict):
            config["mask_pooling"] = keras.layers.deserialize(config["mask_pooling"])
        if isinstance(config.get("position_initializer"), dict):
            config["position_initializer"] = keras.initializers.deserialize(config["position_initializer"])
        return super().from_config(config)
