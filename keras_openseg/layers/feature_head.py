import keras

from keras_openseg.layers.padding import mask_padded


@keras.saving.register_keras_serializable(package="keras_openseg")
class FeatureHead(keras.layers.Layer):
    """Per-pixel feature head: a dense (fc) layer then `num_convs` 3x3 convolutions (OpenSeg App. C).

    OpenSeg computes two of these on the fused FPN features: F_s, which the mask queries are dotted with to
    give the mask logits, and F_z, which the masks pool into region embeddings. The dense layer and all but
    the last convolution are followed by `activation`; the last convolution is linear when there is no
    projection, so the features can take either sign (they are dotted with queries or text embeddings).

    Args:
        filters: int. Channels of the dense layer and the convolutions.
        num_convs: int. Number of 3x3 convolutions. Defaults to `3`.
        output_dim: int or None. When set, a final linear dense projection to `output_dim` channels (e.g.
            the text-embedding size for F_z). Defaults to `None` (output has `filters` channels).
        activation: string or callable. Activation between layers. Defaults to `"relu"`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: `[B, H, W, C]` features.
        pixel_valid: `[B, H, W]` valid cells (1 on the image, 0 on the padding of a canvas) or None. The
            features are zero on padded cells before every convolution and at the output, so a convolution
            across the image border sees the same zeros in every canvas. Defaults to `None`.

    Returns:
        `[B, H, W, output_dim or filters]` features.

    Example:

    >>> tuple(FeatureHead(filters=8, num_convs=2, output_dim=4)(np.ones((1, 16, 16, 3))).shape)
    (1, 16, 16, 4)
    """

    def __init__(self, filters, num_convs=3, output_dim=None, activation="relu", **kwargs):
        super().__init__(**kwargs)
        if num_convs < 0:
            raise ValueError(f"`num_convs` must be >= 0. Received: num_convs={num_convs}")
        self.filters = filters
        self.num_convs = num_convs
        self.output_dim = output_dim
        self.activation = keras.activations.get(activation)
        last_is_linear = output_dim is None
        self.dense = keras.layers.Dense(
            filters,
            activation=None if (last_is_linear and num_convs == 0) else self.activation,
            dtype=self.dtype_policy,
            name="dense",
        )
        self.convs = [
            keras.layers.Conv2D(
                filters,
                3,
                padding="same",
                activation=None if (last_is_linear and index == num_convs - 1) else self.activation,
                dtype=self.dtype_policy,
                name=f"conv_{index}",
            )
            for index in range(num_convs)
        ]
        self.projection = (
            None if output_dim is None else keras.layers.Dense(output_dim, dtype=self.dtype_policy, name="projection")
        )

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"`inputs` must be [B, H, W, C]. Received shape {tuple(input_shape)}.")
        self.dense.build(input_shape)
        shape = tuple(input_shape[:-1]) + (self.filters,)
        for conv in self.convs:
            conv.build(shape)
        if self.projection is not None:
            self.projection.build(shape)
        self.built = True

    def call(self, inputs, pixel_valid=None):
        x = self.dense(inputs)
        for conv in self.convs:
            x = conv(mask_padded(x, pixel_valid))
        if self.projection is not None:
            x = self.projection(x)
        return mask_padded(x, pixel_valid)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.output_dim or self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "num_convs": self.num_convs,
                "output_dim": self.output_dim,
                "activation": keras.activations.serialize(self.activation),
            }
        )
        return config
