import keras
from keras import ops

from keras_openseg.layers.resizing import resize


@keras.saving.register_keras_serializable(package="keras_openseg")
class MaskPooling(keras.layers.Layer):
    """Mask pooling: one region embedding per mask, `z[n] = sum_ij s[n, i, j] F[i, j]` (OpenSeg sec. 3.1).

    A single einsum contracts the spatial axes, so `[B, N, H, W, D]` is never materialized. Masks at another
    resolution than the features are resized bilinearly to the features first. The masks are weights (the
    sigmoid of the mask logits); the sum is not normalized by the mask area because the region embeddings
    are only ever compared by cosine similarity. With `pixel_valid`, the sum runs over the valid cells of a
    padded canvas only (the masks are multiplied by it), so padding never enters a region embedding.

    Args:
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        masks: `[B, N, H, W]` mask weights, or a list `[masks, features]` (then leave `features` out).
        features: `[B, H', W', D]` per-pixel features (F_z).
        pixel_valid: `[B, H', W']` valid cells of the features (1 on the image, 0 on padding) or None (every
            cell). Defaults to `None`.

    Returns:
        `[B, N, D]` region embeddings.

    Example:

    >>> masks = np.random.uniform(size=(2, 3, 8, 8))
    >>> features = np.random.normal(size=(2, 4, 4, 5))
    >>> tuple(MaskPooling()(masks, features).shape)
    (2, 3, 5)
    """

    def _split(self, masks, features, argument):
        if features is None:
            if not isinstance(masks, (list, tuple)) or len(masks) != 2:
                raise ValueError(f"`{argument}` must be `[masks, features]` when `features` is not given.")
            masks, features = masks
        return masks, features

    def _check_shapes(self, masks_shape, features_shape):
        if len(masks_shape) != 4:
            raise ValueError(f"`masks` must be [B, N, H, W]. Received shape {tuple(masks_shape)}.")
        if len(features_shape) != 4:
            raise ValueError(f"`features` must be [B, H, W, D]. Received shape {tuple(features_shape)}.")
        if None not in (masks_shape[0], features_shape[0]) and masks_shape[0] != features_shape[0]:
            raise ValueError(
                f"`masks` and `features` must have the same batch size. Received shapes {tuple(masks_shape)} and "
                f"{tuple(features_shape)}."
            )

    def build(self, masks_shape, features_shape=None):
        masks_shape, features_shape = self._split(masks_shape, features_shape, "input_shape")
        self._check_shapes(masks_shape, features_shape)
        self.built = True

    def call(self, masks, features=None, pixel_valid=None):
        masks, features = self._split(masks, features, "masks")
        self._check_shapes(masks.shape, features.shape)
        masks = ops.cast(masks, features.dtype)
        features_size = ops.shape(features)[1:3]
        masks = resize(masks, features_size, axes=(2, 3), interpolation="bilinear")
        if pixel_valid is not None:
            masks = masks * ops.cast(pixel_valid, masks.dtype)[:, None]
        return ops.einsum("bnhw,bhwd->bnd", masks, features)

    def compute_output_shape(self, masks_shape, features_shape=None):
        masks_shape, features_shape = self._split(masks_shape, features_shape, "input_shape")
        return (masks_shape[0], masks_shape[1], features_shape[-1])
