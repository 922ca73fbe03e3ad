import keras
from keras import ops

from keras_openseg.layers.padding import mask_padded
from keras_openseg.layers.padding import padding_grid
from keras_openseg.layers.resizing import resize


def _level_number(level):
    try:
        return int(str(level).split("_")[0][1:])
    except ValueError:
        raise ValueError(f"`levels` must be names like 'P2' ... 'P5'. Received: {level!r}") from None


@keras.saving.register_keras_serializable(package="keras_openseg")
class FPNFusion(keras.layers.Layer):
    """Feature pyramid fused into one stride-4 feature map (OpenSeg sec. 3.1, App. C).

    Each pyramid level gets a lateral 1x1 convolution; the FPN top-down path adds every coarser level
    (nearest-upsampled) into the next finer one; a 3x3 convolution smooths each level; then every level is
    resized bilinearly to the finest level's resolution and the levels are summed. The output is the F of the
    paper, from which the mask head F_s and the region head F_z are computed.

    With a `padding_mask`, every level is zero on its padded cells before each convolution (so a
    convolution across the image border sees the same zeros in every canvas), and the bilinear resizing to
    the finest level interpolates from valid cells only (normalized by the resized valid grid, which is the
    edge clamping of an image alone on its canvas): an image's features do not depend on the canvas.

    Args:
        filters: int. Channels of the lateral, output and fused features. Defaults to `640`.
        levels: tuple of strings. Pyramid levels to fuse, named as in keras_hub's
            `FeaturePyramidBackbone.pyramid_outputs`; the finest level (lowest number) sets the output
            resolution. Other keys of the input dict are ignored. Defaults to `("P2", "P3", "P4", "P5")`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: dict level name -> `[B, h_l, w_l, c_l]` features.
        padding_mask: `[B, H, W]` (1 on image pixels, 0 on the padding of a canvas) at the image resolution,
            level `Pk` at stride `2**k`; or None (every pixel valid). Defaults to `None`.

    Returns:
        `[B, h, w, filters]` features at the resolution of the finest level.

    Example:

    >>> pyramid = {f"P{l}": np.ones((1, 64 // 2**l, 64 // 2**l, 8)) for l in range(2, 6)}
    >>> tuple(FPNFusion(filters=16)(pyramid).shape)
    (1, 16, 16, 16)
    """

    def __init__(self, filters=640, levels=("P2", "P3", "P4", "P5"), **kwargs):
        super().__init__(**kwargs)
        if not levels:
            raise ValueError(f"`levels` must name at least one pyramid level. Received: levels={levels}")
        self.filters = filters
        self.levels = tuple(sorted(levels, key=_level_number))
        self.lateral_convs = {
            level: keras.layers.Conv2D(filters, 1, dtype=self.dtype_policy, name=f"lateral_{level}")
            for level in self.levels
        }
        self.output_convs = {
            level: keras.layers.Conv2D(filters, 3, padding="same", dtype=self.dtype_policy, name=f"output_{level}")
            for level in self.levels
        }

    def _select(self, inputs, argument="inputs"):
        if not isinstance(inputs, dict):
            raise ValueError(f"`{argument}` must be a dict level name -> features. Received: {type(inputs).__name__}")
        # `run_layer_test` and keras' build pass shapes keyed "P2_shape"; accept both spellings.
        by_level = {str(key).split("_")[0]: value for key, value in inputs.items()}
        missing = [level for level in self.levels if level not in by_level]
        if missing:
            raise ValueError(
                f"`{argument}` lacks the pyramid levels {missing}; it has {sorted(by_level)} and the layer fuses "
                f"levels={self.levels}."
            )
        return {level: by_level[level] for level in self.levels}

    def build(self, input_shape):
        shapes = self._select(input_shape, "input_shape")
        for level, shape in shapes.items():
            if len(shape) != 4:
                raise ValueError(f"`inputs['{level}']` must be [B, h, w, c]. Received shape {tuple(shape)}.")
            self.lateral_convs[level].build(shape)
            self.output_convs[level].build(tuple(shape[:-1]) + (self.filters,))
        self.built = True

    def call(self, inputs, padding_mask=None):
        features = self._select(inputs)
        valid = {level: padding_grid(padding_mask, 2 ** _level_number(level)) for level in self.levels}
        # Top-down: from the coarsest level to the finest, each level adds the upsampled coarser one.
        merged = {}
        coarser = None
        for level in reversed(self.levels):
            lateral = self.lateral_convs[level](mask_padded(features[level], valid[level]))
            if coarser is not None:
                size = ops.shape(lateral)[1:3]
                lateral = lateral + resize(coarser, size, interpolation="nearest")
            merged[level] = mask_padded(lateral, valid[level])
            coarser = merged[level]
        finest = self.levels[0]
        size = ops.shape(merged[finest])[1:3]
        fused = None
        for level in self.levels:
            output = mask_padded(self.output_convs[level](merged[level]), valid[level])
            output = resize(output, size, interpolation="bilinear")
            if valid[level] is not None and level != finest:
                # Interpolate from the valid cells only: divide by the resized valid grid.
                weight = resize(ops.cast(valid[level], output.dtype)[..., None], size, interpolation="bilinear")
                output = output / ops.maximum(weight, ops.cast(1e-6, output.dtype))
            fused = output if fused is None else fused + output
        return mask_padded(fused, valid[finest])

    def compute_output_shape(self, input_shape):
        shapes = self._select(input_shape, "input_shape")
        finest = shapes[self.levels[0]]
        return tuple(finest[:-1]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update({"filters": self.filters, "levels": self.levels})
        return config
