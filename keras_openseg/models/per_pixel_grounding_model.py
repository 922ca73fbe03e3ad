import keras
from keras import ops

from keras_openseg.models.openseg_model import OpenSegModel
from keras_openseg.models.openseg_task import frozen_parts


# Saved as "keras_openseg>PerPixelGroundingModel" (the outer, last registration names the class); presets the
# demo saved before the class moved here name it "keras_openseg_demo>PerPixelGroundingModel" and load too.
@keras.saving.register_keras_serializable(package="keras_openseg")
@keras.saving.register_keras_serializable(package="keras_openseg_demo")
class PerPixelGroundingModel(OpenSegModel):
    """A per-pixel baseline: caption words grounded in pixel embeddings instead of region embeddings.

    Like LSeg+ in the paper's table 4, it learns per-pixel features from the same data as OpenSeg: the
    grounding loss (eqs. 2-4) treats every pixel embedding of F_z (average-pooled to stride 8 to bound the
    cost) as one "region", so each word attends to pixels rather than to mask proposals. The dice loss on
    the mask branch stays, so network, data and objective differ from OpenSeg's only in what is grounded.
    It segments per pixel: `segment(..., use_proposals=False)`. The quick-start demo trains it as its
    baseline.

    Args:
        Those of `OpenSegModel`.

    Example:

    ```python
    model = PerPixelGroundingModel.from_architecture("quick")
    model.compile()
    ```
    """

    def fit(self, *args, **kwargs):
        """`keras.Model.fit` with the mask shape embedding (`region_shape_embedding=True`) frozen: pixel
        embeddings are grounded, not regions, so it gets no gradient. Trainable again afterwards."""
        with frozen_parts(getattr(self.backbone, "mask_shape_embedding", None)):
            return super().fit(*args, **kwargs)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        pixels = ops.average_pool(y_pred["pixel_embeddings"], 2, strides=2)
        pixels = ops.reshape(pixels, (ops.shape(pixels)[0], -1, ops.shape(pixels)[-1]))
        y_pred = {**y_pred, "region_embeddings": pixels}
        return super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
