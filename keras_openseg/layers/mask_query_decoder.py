import keras
from keras import ops

from keras_openseg.layers.mask_cross_attention import MaskCrossAttentionBlock
from keras_openseg.layers.mask_cross_attention import flatten_spatial


@keras.saving.register_keras_serializable(package="keras_openseg")
class MaskQueryDecoder(keras.layers.Layer):
    """Mask-query decoder: learned queries refined by cross-attention, dotted with F_s + PE (OpenSeg sec. 3.1).

    `num_queries` learned queries q0 `[N, D]` pass through `num_layers` `MaskCrossAttentionBlock`s attending
    to the position-embedded mask features; the mask logits are the per-pixel dot products of the final
    queries with those same features: `mask_logits[b, n, i, j] = <q[b, n], (F_s + PE)[b, i, j]>`.

    The decoder takes the features with the position embedding already added (apply
    `LearnedPositionEmbedding` to F_s first); it adds no position embedding itself, so one tensor serves as
    keys, values and the right-hand side of the mask dot product.

    Args:
        num_queries: int. Number N of mask queries (mask proposals). Defaults to `128`.
        num_layers: int. Number of decoder blocks. Defaults to `3`.
        hidden_dim: int or None. Size D of queries and features; None takes it from the features. Defaults
            to `None`.
        num_heads: int. Attention heads per block. Defaults to `8`.
        mlp_dim: int or None. MLP hidden size per block; None means `4 * hidden_dim`. Defaults to `None`.
        dropout: float. Dropout rate in the blocks. Defaults to `0.0`.
        self_attention: bool. Query self-attention in every block (beyond the paper). Defaults to `False`.
        query_initializer: string or `keras.initializers.Initializer`. Initial values of q0. Defaults to
            `"truncated_normal"`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        features: `[B, H, W, D]` position-embedded mask features F_s + PE.
        pixel_valid: `[B, H, W]` valid cells (1 on the image, 0 on the padding of a canvas) or None. Padded
            cells are masked out of the cross-attention's keys. Defaults to `None` (every cell valid).
        training: bool. Enables dropout.

    Returns:
        A tuple `(queries [B, N, D], mask_logits [B, N, H, W])`.

    Example:

    >>> decoder = MaskQueryDecoder(num_queries=4, num_layers=1, num_heads=2)
    >>> queries, mask_logits = decoder(np.ones((2, 8, 8, 16)))
    >>> tuple(queries.shape), tuple(mask_logits.shape)
    ((2, 4, 16), (2, 4, 8, 8))
    """

    def __init__(
        self,
        num_queries=128,
        num_layers=3,
        hidden_dim=None,
        num_heads=8,
        mlp_dim=None,
        dropout=0.0,
        self_attention=False,
        query_initializer="truncated_normal",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if num_queries < 1 or num_layers < 0:
            raise ValueError(
                f"`num_queries` must be >= 1 and `num_layers` >= 0. Received: num_queries={num_queries}, "
                f"num_layers={num_layers}"
            )
        if hidden_dim is not None and hidden_dim % num_heads:
            raise ValueError(
                f"`num_heads` must divide `hidden_dim`. Received: hidden_dim={hidden_dim}, num_heads={num_heads}"
            )
        self.num_queries = num_queries
        self.num_layers = num_layers
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.dropout = dropout
        self.self_attention = self_attention
        self.query_initializer = keras.initializers.get(query_initializer)
        self.blocks = []
        if hidden_dim is not None:
            self._make_blocks(hidden_dim)

    def _make_blocks(self, hidden_dim):
        self.blocks = [
            MaskCrossAttentionBlock(
                hidden_dim,
                self.num_heads,
                self.mlp_dim or 4 * hidden_dim,
                dropout=self.dropout,
                self_attention=self.self_attention,
                dtype=self.dtype_policy,
                name=f"block_{index}",
            )
            for index in range(self.num_layers)
        ]

    def _hidden_dim_of(self, features_shape):
        if len(features_shape) != 4 or features_shape[-1] is None:
            raise ValueError(f"`features` must be [B, H, W, D] with a known D. Received shape {tuple(features_shape)}.")
        if self.hidden_dim is not None and features_shape[-1] != self.hidden_dim:
            raise ValueError(
                f"`features` must have hidden_dim={self.hidden_dim} channels. Received shape {tuple(features_shape)}."
            )
        return features_shape[-1]

    def build(self, features_shape):
        hidden_dim = self._hidden_dim_of(features_shape)
        if not self.blocks and self.num_layers:
            if hidden_dim % self.num_heads:
                raise ValueError(
                    f"`num_heads`={self.num_heads} must divide the features' channels {hidden_dim} (hidden_dim)."
                )
            self._make_blocks(hidden_dim)
        self.initial_queries = self.add_weight(
            name="initial_queries", shape=(self.num_queries, hidden_dim), initializer=self.query_initializer
        )
        queries_shape = (features_shape[0], self.num_queries, hidden_dim)
        for block in self.blocks:
            block.build(queries_shape, features_shape)
        self.built = True

    def call(self, features, pixel_valid=None, training=None):
        self._hidden_dim_of(features.shape)
        batch_size = ops.shape(features)[0]
        queries = ops.cast(self.initial_queries, self.compute_dtype)
        queries = ops.broadcast_to(queries[None], (batch_size,) + tuple(queries.shape))
        keys = flatten_spatial(features)
        key_valid = None if pixel_valid is None else flatten_spatial(pixel_valid[..., None])[..., 0]
        for block in self.blocks:
            queries = block(queries, keys, key_valid=key_valid, training=training)
        mask_logits = ops.einsum("bnd,bhwd->bnhw", queries, features)
        return queries, mask_logits

    def compute_output_shape(self, features_shape):
        batch, height, width, hidden_dim = features_shape
        return (batch, self.num_queries, hidden_dim), (batch, self.num_queries, height, width)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_queries": self.num_queries,
                "num_layers": self.num_layers,
                "hidden_dim": self.hidden_dim,
                "num_heads": self.num_heads,
                "mlp_dim": self.mlp_dim,
                "dropout": self.dropout,
                "self_attention": self.self_attention,
                "query_initializer": keras.initializers.serialize(self.query_initializer),
            }
        )
        return config
