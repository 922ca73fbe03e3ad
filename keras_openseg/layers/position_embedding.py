import keras
import numpy as np
from keras import ops

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

    A learnable `[h, w, D]` table, resized bilinearly to the spatial size of the features it is added to, so
    the same weights serve every input resolution (and `None` spatial sizes in functional models).

    Args:
        grid: tuple of 2 ints. `(h, w)` size of the learned table, typically the feature size at the training
            resolution (e.g. `(160, 160)` for 640 px images at stride 4).
        initializer: string, `keras.initializers.Initializer` or `"sincos"`. Initial values; `"sincos"` (beyond
            the paper) starts from a 2D sine/cosine code, which makes the queries' first cross-attention
            position-aware from the first step. Defaults to `"truncated_normal"`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: `[B, H, W, D]` features.

    Returns:
        `[B, H, W, D]`: the features plus the position embedding resized to `(H, W)`.

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

    def call(self, inputs):
        height, width = ops.shape(inputs)[1], ops.shape(inputs)[2]
        return inputs + self.position_embedding(height, width)[None]

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
