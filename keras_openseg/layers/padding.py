"""The valid region of a padded canvas, carried through the backbone (Mask2Former-style padding masks).

Images of different sizes share a batch by being padded (bottom and right) onto one canvas. A `padding_mask`
`[B, H, W]` says which canvas pixels belong to an image (1) and which are padding (0), keras_hub's convention
for text (1 = real). At a feature stride s a cell is valid when any of its s x s pixels is (ceil semantics):
`pixel_valid = max_pool(padding_mask, s)`. Every function here takes `None` for "every pixel is valid" and then
returns its input unchanged, so an unpadded batch computes exactly what it computed before padding masks.
"""

import keras
from keras import ops

# The mask logit of a padded cell: its mask probability is exactly 0, so no sum over a mask (pooling, the
# mean pooling's area, the dice loss, pseudo-label scores) sees padding.
PADDED_MASK_LOGIT = -1e4


def padding_grid(padding_mask, stride):
    """`[B, H, W]` padding mask -> `[B, H / stride, W / stride]` float32 valid cells, or None for None.

    A cell is valid (1.0) when any pixel of its `stride x stride` block is; H and W must be multiples of
    `stride`.

    Args:
        padding_mask: `[B, H, W]` bool, int or float tensor (1 on image pixels, 0 on padding), or None.
        stride: int. The feature stride.

    Returns:
        `[B, H / stride, W / stride]` float32 tensor of 0 / 1, or None.

    Example:

    >>> mask = np.zeros((1, 8, 8), "float32")
    >>> mask[0, :5, :3] = 1.0
    >>> keras.ops.convert_to_numpy(padding_grid(mask, 4))[0].tolist()
    [[1.0, 0.0], [1.0, 0.0]]
    """
    if padding_mask is None:
        return None
    valid = ops.cast(ops.greater(ops.cast(padding_mask, "float32"), 0.0), "float32")
    if stride == 1:
        return valid
    pooled = ops.max_pool(valid[..., None], pool_size=stride, strides=stride, padding="valid")
    return pooled[..., 0]


def mask_padded(features, pixel_valid, fill=0.0, channels_axis=-1):
    """`features` with the padded cells set to `fill` (`where`, so no value leaks from them), or as is.

    Args:
        features: `[B, h, w, C]` (channels last) or `[B, N, h, w]` (`channels_axis=1`) tensor.
        pixel_valid: `[B, h, w]` valid cells or None.
        fill: float. The value of the padded cells. Defaults to `0.0`.
        channels_axis: int. `-1` for `[B, h, w, C]`, `1` for `[B, N, h, w]`. Defaults to `-1`.

    Returns:
        A tensor like `features`.
    """
    if pixel_valid is None:
        return features
    valid = ops.greater(pixel_valid, 0.0)
    valid = valid[..., None] if channels_axis == -1 else valid[:, None]
    return ops.where(valid, features, ops.cast(fill, features.dtype))


def valid_extent(pixel_valid):
    """Per-image `(rows, columns)` int32 `[B]` of the valid region (padding at the bottom and right)."""
    rows = ops.sum(ops.max(pixel_valid, axis=2), axis=1)
    columns = ops.sum(ops.max(pixel_valid, axis=1), axis=1)
    return ops.cast(rows, "int32"), ops.cast(columns, "int32")


def extent_grid(rows, columns, image_size, size):
    """`[B, h, w]` float32 valid cells of a feature map from the valid extent of each image.

    Cell (i, j) of an `h x w` map over an `H x W` canvas is valid when it covers a pixel of the
    `rows x columns` image at the canvas's top left: `i * H < rows * h` and `j * W < columns * w` (ceil
    semantics at any stride, sizes may be dynamic).

    Args:
        rows: `[B]` int valid pixel rows of each image.
        columns: `[B]` int valid pixel columns.
        image_size: `(H, W)` of the canvas (ints or scalar tensors).
        size: `(h, w)` of the feature map.
    """
    cell_rows = ops.cast(ops.arange(size[0]), "int32")[None, :] * ops.cast(image_size[0], "int32")
    cell_columns = ops.cast(ops.arange(size[1]), "int32")[None, :] * ops.cast(image_size[1], "int32")
    row_valid = cell_rows < ops.cast(rows, "int32")[:, None] * ops.cast(size[0], "int32")
    column_valid = cell_columns < ops.cast(columns, "int32")[:, None] * ops.cast(size[1], "int32")
    return ops.cast(ops.logical_and(row_valid[:, :, None], column_valid[:, None, :]), "float32")


@keras.saving.register_keras_serializable(package="keras_openseg")
class PaddingGrid(keras.layers.Layer):
    """`padding_grid` as a layer of a functional graph: `[B, H, W]` mask -> `[B, H/s, W/s]` valid cells.

    The padding mask is an optional input of `OpenSegBackbone`: when it is not given the layer receives None
    and returns None, and every layer downstream treats None as "every cell valid".

    Args:
        stride: int. The stride of the grid. Defaults to `4`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        padding_mask: `[B, H, W]` (1 on image pixels) or None.

    Returns:
        `[B, H / stride, W / stride]` float32, or None.

    Example:

    >>> tuple(PaddingGrid(stride=4)(np.ones((2, 32, 64), "float32")).shape)
    (2, 8, 16)
    """

    def __init__(self, stride=4, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(stride, int) or stride < 1:
            raise ValueError(f"`stride` must be a positive int. Received: stride={stride!r}")
        self.stride = stride

    def call(self, padding_mask=None):
        return padding_grid(padding_mask, self.stride)

    def compute_output_shape(self, padding_mask_shape):
        batch, height, width = padding_mask_shape
        return (
            batch,
            None if height is None else height // self.stride,
            None if width is None else width // self.stride,
        )

    def compute_output_spec(self, padding_mask=None):
        if padding_mask is None:
            return None
        return keras.KerasTensor(self.compute_output_shape(padding_mask.shape), dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update({"stride": self.stride})
        return config


@keras.saving.register_keras_serializable(package="keras_openseg")
class PaddingFill(keras.layers.Layer):
    """`mask_padded` as a layer: sets the padded cells of a feature map to `fill` (identity without a mask).

    The backbone applies it to the normalized images (so padding is exactly 0 whatever the pipeline put
    there), to the fused features and F_z (so convolutions across the border see the same zeros in every
    canvas), and to the mask logits (`fill=PADDED_MASK_LOGIT`: padded cells have probability 0).

    Args:
        fill: float. Value of the padded cells. Defaults to `0.0`.
        channels_axis: int. `-1` for `[B, h, w, C]` features, `1` for `[B, N, h, w]` masks. Defaults to `-1`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        features: the feature map.
        pixel_valid: `[B, h, w]` valid cells at the feature map's resolution, or None.

    Returns:
        A tensor like `features`.

    Example:

    >>> valid = np.zeros((1, 2, 2), "float32")
    >>> valid[0, 0, 0] = 1.0
    >>> out = PaddingFill()(np.ones((1, 2, 2, 3), "float32"), valid)
    >>> keras.ops.convert_to_numpy(out)[0, ..., 0].tolist()
    [[1.0, 0.0], [0.0, 0.0]]
    """

    def __init__(self, fill=0.0, channels_axis=-1, **kwargs):
        super().__init__(**kwargs)
        if channels_axis not in (-1, 1):
            raise ValueError(f"`channels_axis` must be -1 or 1. Received: channels_axis={channels_axis!r}")
        self.fill = float(fill)
        self.channels_axis = channels_axis

    def call(self, features, pixel_valid=None):
        return mask_padded(features, pixel_valid, self.fill, self.channels_axis)

    def compute_output_shape(self, features_shape, pixel_valid_shape=None):
        return tuple(features_shape)

    def compute_output_spec(self, features, pixel_valid=None):
        return keras.KerasTensor(features.shape, dtype=features.dtype)

    def get_config(self):
        config = super().get_config()
        config.update({"fill": self.fill, "channels_axis": self.channels_axis})
        return config
