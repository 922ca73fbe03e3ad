import keras
from keras_hub.layers import ImageConverter

from keras_openseg.models.openseg_backbone import OpenSegBackbone
from keras_openseg.models.preset_loading import architecture_entry


@keras.saving.register_keras_serializable(package="keras_openseg")
class OpenSegImageConverter(ImageConverter):
    """Raw images to OpenSeg inputs: optional resize, then the image encoder's normalization (sec. 3.1).

    A keras_hub `ImageConverter` registered for `OpenSegBackbone`, so `from_preset` finds it and presets
    save it as `image_converter.json`. `scale` and `offset` are those of the image encoder's own preset
    (e.g. ImageNet mean and standard deviation for a ResNet): the converter maps 0..255 pixels to the range
    the encoder was trained on.

    OpenSeg runs on any image whose sides are multiples of 32, so `image_size` is usually `None` (no
    resizing): the input pipeline crops and jitters training images, and `OpenSegModel.segment` pads
    arbitrary images itself.

    Args:
        image_size: `(int, int)` or None. Output size; None keeps the input size. Defaults to `None`.
        scale: float, tuple of 3 floats or None. Multiplies the pixels (per channel for a tuple). Defaults
            to `None`.
        offset: float, tuple of 3 floats or None. Added after `scale`. Defaults to `None`.
        **kwargs: further `keras_hub.layers.ImageConverter` arguments (`crop_to_aspect_ratio`,
            `interpolation`, `antialias`, ...).

    Example:

    >>> converter = OpenSegImageConverter(scale=1 / 255.0)
    >>> tuple(converter(np.full((1, 64, 64, 3), 255, "uint8")).shape)
    (1, 64, 64, 3)
    """

    backbone_cls = OpenSegBackbone

    @classmethod
    def from_architecture(cls, name):
        """The converter of a named architecture: its image encoder's normalization, no resizing.

        A paper-scale architecture takes `scale` and `offset` from its image encoder's keras_hub preset
        (fetched unless cached or local); a random-init one has them in the registry entry.

        Args:
            name: string. A key of `OpenSegBackbone.architectures`.
        """
        entry = architecture_entry(name)
        normalization = entry.get("image_normalization")
        if normalization is None:
            encoder_converter = ImageConverter.from_preset(entry["image_encoder"])
            normalization = {"scale": encoder_converter.scale, "offset": encoder_converter.offset}
        return cls(**normalization)


def image_normalizer(image_converter):
    """A copy of `image_converter` that only normalizes (no resizing), or None for no converter.

    Code that resizes and pads images itself (batched inference on images of any size, the serving graphs)
    still normalizes by calling the converter, so the normalization is written once: the converter's.

    Args:
        image_converter: keras_hub `ImageConverter` or None.

    Returns:
        An `ImageConverter` of the same class and settings with `image_size=None`, or None.

    Example:

    >>> converter = OpenSegImageConverter(image_size=(32, 32), scale=1 / 127.5, offset=-1.0)
    >>> normalizer = image_normalizer(converter)
    >>> values = keras.ops.convert_to_numpy(normalizer(np.full((1, 8, 8, 3), 255.0, "float32")))
    >>> values.shape, float(values.max())
    ((1, 8, 8, 3), 1.0)
    """
    if image_converter is None:
        return None
    config = image_converter.get_config()
    config["image_size"] = None
    return type(image_converter).from_config(config)
