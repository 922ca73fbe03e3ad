import keras
import numpy as np
from keras import ops

from keras_openseg.layers.padding import valid_extent
from keras_openseg.layers.resizing import _static_int
from keras_openseg.layers.resizing import resize


def sincos_position_table(height, width, dim, max_period=10000.0):
    """A `[height, width, dim]` 2D sine/cosine position table (half the channels code y, half x).

    Positions are in units of grid cells; channel k of each half uses frequency `max_period ** (-k / quarter)`,
    sine then cosine. A `dim` that is not a multiple of 4 is filled up to one and cut back.
    """
    quarter = -(-dim // 4)
    frequencies = max_period ** (-np.arange(quarter, dtype=np.float64) / quarter)

    def code(positions):
        angles = positions[:, None] * frequencies[None, :]
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=-1)  # [n, 2 quarter]

    y = code(np.arange(height, dtype=np.float64))
    x = code(np.arange(width, dtype=np.float64))
    table = np.concatenate(
        [
            np.broadcast_to(y[:, None, :], (height, width, 2 * quarter)),
            np.broadcast_to(x[None, :, :], (height, width, 2 * quarter)),
        ],
        axis=-1,
    )
    return table[..., :dim].astype("float32")


def _is_sincos(initializer):
    return isinstance(initializer, str) and initializer == "sincos"


@keras.saving.register_keras_serializable(package="keras_openseg")
class LearnedPositionEmbedding(keras.layers.Layer):
    """Learned 2D position embedding added to a feature map (OpenSeg sec. 3.1: `F_s + PE`).

    A learnable `[h, w, D]` table laid out in absolute feature coordinates, the way training lays it out:
    training canvases are `grid * stride` pixels, so cell (i, j) of a feature map gets table cell (i, j). An
    image whose valid region (`pixel_valid`, or the whole map without one) fits in the table gets exactly the
    table's top-left cells, whatever the canvas it is padded to; along a side where the image is larger than
    the table, the table is resized bilinearly (half-pixel) to cover the image's own valid region, never the
    canvas. The layout of each side is chosen per image, so the images of one batch need not agree.

    Args:
        grid: tuple of 2 ints. `(h, w)` size of the learned table, typically the feature size at the training
            resolution (e.g. `(160, 160)` for 640 px images at stride 4).
        initializer: string, `keras.initializers.Initializer` or `"sincos"`. Initial values; `"sincos"` (beyond
            the paper) starts from a 2D sine/cosine code, which makes the queries' first cross-attention
            position-aware from the first step. Defaults to `"truncated_normal"`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: `[B, H, W, D]` features.
        pixel_valid: `[B, H, W]` valid cells (1 on the image, 0 on the bottom / right padding) or None (every
            cell valid).

    Returns:
        `[B, H, W, D]`: the features plus the position embedding (zero on padded cells when `pixel_valid` is
        given).

    Example:

    >>> layer = LearnedPositionEmbedding(grid=(8, 8), initializer="sincos")
    >>> tuple(layer(np.zeros((2, 16, 12, 32))).shape)
    (2, 16, 12, 32)
    """

    def __init__(self, grid, initializer="truncated_normal", **kwargs):
        super().__init__(**kwargs)
        if len(grid) != 2 or min(grid) < 1:
            raise ValueError(f"`grid` must be a pair of positive ints (h, w). Received: grid={grid}")
        self.grid = tuple(int(g) for g in grid)
        self.initializer = initializer if _is_sincos(initializer) else keras.initializers.get(initializer)

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(f"`inputs` must be [B, H, W, D] with a known D. Received shape {tuple(input_shape)}.")
        if _is_sincos(self.initializer):

            def initializer(shape, dtype=None):
                return ops.convert_to_tensor(sincos_position_table(*shape), dtype=dtype)

        else:
            initializer = self.initializer
        self.position_table = self.add_weight(
            name="position_table", shape=self.grid + (input_shape[-1],), initializer=initializer
        )
        self.built = True

    def position_embedding(self, height, width):
        """The table resized bilinearly to `[height, width, D]` (sizes may be scalar tensors)."""
        table = ops.cast(self.position_table, self.compute_dtype)
        return resize(table, (height, width), axes=(0, 1), interpolation="bilinear")

    def _layout(self, canvas_size, image_sizes, table_size):
        """`[B, canvas_size, table_size]` weights of the table cells for each canvas cell along one side.

        Canvas cell i < the image's size n takes table cell i when n <= table_size, else the half-pixel
        bilinear sample of the table at (i + 0.5) * table_size / n - 0.5; cells past the image get none.
        """
        positions = ops.cast(ops.arange(canvas_size), "float32")[None, :]  # [1, canvas]
        sizes = ops.cast(image_sizes, "float32")[:, None]  # [B, 1]
        scale = ops.where(sizes > table_size, table_size / ops.maximum(sizes, 1.0), 1.0)
        coordinates = ops.clip((positions + 0.5) * scale - 0.5, 0.0, table_size - 1.0)
        low = ops.floor(coordinates)
        fraction = coordinates - low
        cells = ops.cast(ops.arange(table_size), "float32")[None, None, :]
        low, fraction = low[..., None], fraction[..., None]
        high = ops.minimum(low + 1.0, table_size - 1.0)
        weights = ops.where(cells == low, 1.0 - fraction, 0.0) + ops.where(cells == high, fraction, 0.0)
        # A clipped coordinate has low == high: its two terms sum to 1.
        inside = ops.cast(positions < sizes, "float32")[..., None]
        return ops.cast(weights * inside, self.compute_dtype)

    def layout_position_embedding(self, height, width, rows=None, columns=None):
        """Per-image `[B, height, width, D]` position embeddings of images `rows x columns` cells large.

        Args:
            height: int or scalar tensor. Rows of the feature map (the canvas).
            width: int or scalar tensor. Columns of the feature map.
            rows: `[B]` int tensor, the valid rows of each image, or None (all `height`).
            columns: `[B]` int tensor, the valid columns of each image, or None (all `width`).

        Returns:
            `[B, height, width, D]` (`[1, height, width, D]` when `rows` and `columns` are None).
        """
        table = ops.cast(self.position_table, self.compute_dtype)
        table_height, table_width = self.grid
        static_height = _static_int(height)
        static_width = _static_int(width)
        if static_height is not None and static_width is not None:
            if static_height <= table_height and static_width <= table_width:
                # Every image fits in the table (it fits in the canvas): the training layout, a crop, exact.
                return table[None, :static_height, :static_width]
        if rows is None and columns is None:
            rows = ops.reshape(ops.cast(height, "int32"), (1,))
            columns = ops.reshape(ops.cast(width, "int32"), (1,))
        row_weights = self._layout(height, rows, table_height)  # [B, H, h]
        column_weights = self._layout(width, columns, table_width)  # [B, W, w]
        embedding = ops.einsum("bih,hwd->biwd", row_weights, table)
        return ops.einsum("biwd,bjw->bijd", embedding, column_weights)

    def call(self, inputs, pixel_valid=None):
        height, width = ops.shape(inputs)[1], ops.shape(inputs)[2]
        if pixel_valid is None:
            return inputs + self.layout_position_embedding(height, width)
        rows, columns = valid_extent(ops.cast(pixel_valid, "float32"))
        embedding = self.layout_position_embedding(height, width, rows, columns)
        return inputs + embedding * ops.cast(pixel_valid, inputs.dtype)[..., None]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "grid": self.grid,
                "initializer": (
                    self.initializer if _is_sincos(self.initializer) else keras.initializers.serialize(self.initializer)
                ),
            }
        )
        return config
