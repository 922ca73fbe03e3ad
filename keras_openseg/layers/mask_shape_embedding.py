import keras
from keras import ops


def mask_crops(masks, crop_size, extent=2.5):
    """Each mask resampled onto a `crop_size` square around its centre, scaled to its spread.

    The crop of mask s (weights over an h x w grid of unit cells, cell (i, j) centred at (i + 0.5, j + 0.5)) is
    centred on its weighted mean position mu and spans mu +- r on both axes, with
    r = extent * max(sigma_y, sigma_x) + 0.5 cells (sigma: the weighted standard deviations; one radius for
    both axes keeps the aspect ratio, the half cell keeps a one-cell mask at one cell). Output cell (u, v) reads
    the mask at y_u = mu_y + r (2 (u + 0.5) / crop_size - 1) (x_v likewise) with bilinear (tent) weights
    max(0, 1 - |y_u - (i + 0.5)|); points outside the grid read 0. So a mask's crop depends on its shape, not
    on where it is or how large it is. An empty mask gives a zero crop.

    Args:
        masks: `[B, N, h, w]` mask weights in [0, 1].
        crop_size: int. Side of the square crops.
        extent: float. Crop radius in standard deviations (2.5: a uniform disc or square fits with a margin).

    Returns:
        `[B, N, crop_size, crop_size]` float32 crops.
    """
    masks = ops.cast(masks, "float32")
    height, width = ops.shape(masks)[2], ops.shape(masks)[3]
    rows = ops.cast(ops.arange(height), "float32") + 0.5
    columns = ops.cast(ops.arange(width), "float32") + 0.5
    row_weights = ops.sum(masks, axis=3)  # [B, N, h]
    column_weights = ops.sum(masks, axis=2)  # [B, N, w]
    total = ops.maximum(ops.sum(row_weights, axis=2), 1e-6)  # [B, N]
    mean_row = ops.sum(row_weights * rows, axis=2) / total
    mean_column = ops.sum(column_weights * columns, axis=2) / total
    variance_row = ops.sum(row_weights * ops.square(rows - mean_row[..., None]), axis=2) / total
    variance_column = ops.sum(column_weights * ops.square(columns - mean_column[..., None]), axis=2) / total
    radius = extent * ops.sqrt(ops.maximum(variance_row, variance_column)) + 0.5  # [B, N]
    offsets = 2.0 * (ops.cast(ops.arange(crop_size), "float32") + 0.5) / crop_size - 1.0  # [c]

    def tent_weights(mean, positions):
        samples = mean[..., None] + radius[..., None] * offsets  # [B, N, c]
        return ops.relu(1.0 - ops.abs(samples[..., None] - positions))  # [B, N, c, h or w]

    crops = ops.einsum("bnuh,bnhw->bnuw", tent_weights(mean_row, rows), masks)
    return ops.einsum("bnuw,bnvw->bnuv", crops, tent_weights(mean_column, columns))


@keras.saving.register_keras_serializable(package="keras_openseg")
class MaskShapeEmbedding(keras.layers.Layer):
    """An embedding of each mask's shape: its position- and scale-normalized crop through a small CNN.

    Beyond the paper. OpenSeg's region embedding z = sum_p s(p) F_z(p) sums features over the mask, so for a
    region of uniform appearance it is dominated by the interior, which looks the same whatever the outline
    (only the cells along the boundary differ): a square and a circle of one colour and texture pool to nearly
    the same z. This layer sees the outline itself: `mask_crops` resamples every mask around its centre at a
    scale set by its spread, a few 3x3 convolutions (ReLU, stride 2 after the first) and a dense layer map the
    crop to `output_dim`. `OpenSegBackbone(region_shape_embedding=True)` adds it to the region embeddings.
    The output layer starts at zero (`kernel_initializer="zeros"`), so at initialization the embedding is 0
    and a model with it computes what the model without it does.

    Args:
        output_dim: int. Size of the embedding (the region embeddings' size).
        crop_size: int. Side of the square crop each mask is resampled to. Defaults to `16`.
        filters: tuple of ints. Channels of the convolutions; every one after the first halves the crop.
            Defaults to `(16, 32, 64)`.
        extent: float. Crop radius in standard deviations of the mask (`mask_crops`). Defaults to `2.5`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        masks: `[B, N, h, w]` mask weights in [0, 1] (e.g. the sigmoid of the mask logits; padding at 0).

    Returns:
        `[B, N, output_dim]` shape embeddings.

    Example:

    >>> masks = np.zeros((1, 2, 16, 16), "float32")
    >>> masks[0, 0, 2:8, 2:8] = 1.0  # a square
    >>> masks[0, 1, 6:14, 5:13] = 1.0  # the same square, larger and elsewhere
    >>> crops = keras.ops.convert_to_numpy(mask_crops(masks, crop_size=8))
    >>> bool(np.abs(crops[0, 0] - crops[0, 1]).max() < 0.2)
    True
    >>> tuple(MaskShapeEmbedding(output_dim=4)(masks).shape)
    (1, 2, 4)
    """

    def __init__(self, output_dim, crop_size=16, filters=(16, 32, 64), extent=2.5, **kwargs):
        super().__init__(**kwargs)
        if int(output_dim) < 1:
            raise ValueError(f"`output_dim` must be a positive integer. Received: {output_dim}")
        if int(crop_size) < 2 ** (len(filters) - 1):
            raise ValueError(
                f"`crop_size` must be at least 2 ** (len(filters) - 1) = {2 ** (len(filters) - 1)} (every filter "
                f"after the first halves the crop). Received: crop_size={crop_size}, filters={tuple(filters)}"
            )
        if not filters:
            raise ValueError("`filters` must name at least one convolution.")
        if extent <= 0:
            raise ValueError(f"`extent` must be positive. Received: {extent}")
        self.output_dim = int(output_dim)
        self.crop_size = int(crop_size)
        self.filters = tuple(int(f) for f in filters)
        self.extent = float(extent)
        self.convs = [
            keras.layers.Conv2D(
                f,
                3,
                strides=1 if index == 0 else 2,
                padding="same",
                activation="relu",
                dtype=self.dtype_policy,
                name=f"conv_{index}",
            )
            for index, f in enumerate(self.filters)
        ]
        self.flatten = keras.layers.Flatten(dtype=self.dtype_policy, name="flatten")
        self.output_dense = keras.layers.Dense(
            self.output_dim, kernel_initializer="zeros", dtype=self.dtype_policy, name="output_dense"
        )

    def build(self, masks_shape):
        if len(masks_shape) != 4:
            raise ValueError(f"`masks` must be [B, N, h, w]. Received shape {tuple(masks_shape)}.")
        shape = (None, self.crop_size, self.crop_size, 1)
        for conv in self.convs:
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
        self.flatten.build(shape)
        self.output_dense.build(self.flatten.compute_output_shape(shape))
        self.built = True

    def call(self, masks):
        if len(masks.shape) != 4:
            raise ValueError(f"`masks` must be [B, N, h, w]. Received shape {tuple(masks.shape)}.")
        num_masks = ops.shape(masks)[1]
        crops = mask_crops(masks, self.crop_size, self.extent)
        x = ops.cast(ops.reshape(crops, (-1, self.crop_size, self.crop_size, 1)), self.compute_dtype)
        for conv in self.convs:
            x = conv(x)
        x = self.output_dense(self.flatten(x))
        return ops.reshape(x, (-1, num_masks, self.output_dim))

    def compute_output_shape(self, masks_shape):
        return (masks_shape[0], masks_shape[1], self.output_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"output_dim": self.output_dim, "crop_size": self.crop_size, "filters": self.filters, "extent": self.extent}
        )
        return config
