import keras
from keras_hub.models import Preprocessor
from keras_hub.src.utils.tensor_utils import preprocessing_function

from keras_openseg.models.openseg_backbone import OpenSegBackbone
from keras_openseg.models.openseg_image_converter import OpenSegImageConverter


@keras.saving.register_keras_serializable(package="keras_openseg")
class OpenSegPreprocessor(Preprocessor):
    """Preprocessing of OpenSeg samples: the image converter applied to the images, the rest passed through.

    `x` is either images `[B, H, W, 3]` (inference, the teacher) or the training dict
    `{"images", "word_embeddings", "word_valid"}`; only `images` is changed. Labels `y`
    (`{"masks", "mask_valid"}`) and `sample_weight` pass through unchanged: the label masks stay at the
    image resolution and the dice loss resizes them to the predictions. Runs eagerly, in `tf.data` and in
    grain pipelines on every backend, like every keras_hub preprocessor.

    Args:
        image_converter: `OpenSegImageConverter` or None. None leaves the images unchanged. Defaults to
            `None`.
        **kwargs: base layer arguments (`name`, `dtype`).

    Example:

    >>> preprocessor = OpenSegPreprocessor(OpenSegImageConverter(scale=1 / 255.0))
    >>> x = {"images": np.full((2, 64, 64, 3), 255, "uint8"), "word_embeddings": np.zeros((2, 3, 8)),
    ...      "word_valid": np.ones((2, 3), bool)}
    >>> float(preprocessor(x)["images"][0, 0, 0, 0])
    1.0
    """

    backbone_cls = OpenSegBackbone
    image_converter_cls = OpenSegImageConverter

    def __init__(self, image_converter=None, **kwargs):
        super().__init__(**kwargs)
        self.image_converter = image_converter

    @preprocessing_function
    def call(self, x, y=None, sample_weight=None):
        if self.image_converter is None:
            return keras.utils.pack_x_y_sample_weight(x, y, sample_weight)
        if y is not None and self.image_converter.image_size is not None:
            # Resizing the images would leave the label masks at the old size (and misaligned when the aspect
            # ratio changes); the input pipeline resizes both together.
            raise ValueError(
                "`OpenSegPreprocessor` cannot resize label masks along with the images: resize images and "
                "masks together in the input pipeline and set `image_converter.image_size = None`. Received "
                f"image_size={self.image_converter.image_size}."
            )
        if isinstance(x, dict):
            if "images" not in x:
                raise ValueError(f"`x` must hold `images` when it is a dict. Received keys {sorted(x)}.")
            x = {**x, "images": self.image_converter(x["images"])}
        else:
            x = self.image_converter(x)
        return keras.utils.pack_x_y_sample_weight(x, y, sample_weight)
