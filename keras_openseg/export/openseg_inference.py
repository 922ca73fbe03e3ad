"""`OpenSegInference`, the serving graph of an OpenSeg model, and its export with Keras' exporters.

See the `keras_openseg.export` package docstring for the inputs, the outputs and which backend exports which
format.
"""

import importlib.util
import os

import keras
import numpy as np
from keras import ops

from keras_openseg.export.formats import FORMATS
from keras_openseg.export.formats import IMAGE_DTYPES
from keras_openseg.layers.resizing import resize
from keras_openseg.models.open_vocabulary_logits import region_pooled_pixel_features
from keras_openseg.models.open_vocabulary_logits import segmentation_logits
from keras_openseg.models.openseg_image_converter import image_normalizer

STRIDE = 32  # the backbone needs sides that are multiples of P5's stride
MASK_STRIDE = 4  # masks and pixel embeddings live on the P2 grid

# format -> backend -> python modules the Keras exporter imports (None: the pair does not export this model,
# see the module docstring).
_REQUIREMENTS = {
    "saved_model": {"tensorflow": (), "jax": (), "torch": ("torch_xla",)},
    "onnx": {"tensorflow": ("tf2onnx", "onnx"), "jax": None, "torch": None},
    "litert": {"tensorflow": (), "jax": None, "torch": ("litert_torch",)},
    "torch": {"tensorflow": None, "jax": None, "torch": ()},
}
# (format, backend) pairs whose exporter keeps the image size free; the others trace fixed shapes.
_FREE_IMAGE_SIZE = {("saved_model", "tensorflow"), ("saved_model", "jax"), ("onnx", "tensorflow")}


@keras.saving.register_keras_serializable(package="keras_openseg")
class OpenSegInference(keras.Model):
    """The serving graph of an OpenSeg model: raw images + text embeddings -> segmentation (sec. 3.4, eq. 6).

    Normalizes the images with the image converter (without its resizing), pads them (bottom and right,
    with zeros after normalization) to a multiple of 32, runs the backbone with the canvas's padding mask
    (built from the image size), scores every pixel against every category with eq. (6)
    (`segmentation_logits`), crops the logits to the stride-4 cells covering the image, upsamples them by 4
    and crops them to the image, exactly as `OpenSegModel.segment` does for each image. Every step is a
    `keras.ops` call with no python-side shape logic, so the graph traces with unknown batch, height,
    width and number of categories on every backend (and under JAX shape polymorphism).

    Args:
        backbone: `OpenSegBackbone`.
        image_converter: `OpenSegImageConverter` (or any keras_hub `ImageConverter`) or None. It normalizes
            the images (its `image_size` is not applied); None means the images come normalized. Defaults
            to `None`.
        **kwargs: `keras.Model` arguments (`name`).

    Inputs:
        A dict with `images` `[B, H, W, 3]` (0..255, any float or integer dtype) and `text_embeddings`
        `[C, E]`.

    Outputs:
        A dict with `labels` `[B, H, W]` int32, `scores` `[B, H, W]`, `masks` `[B, N, h, w]`,
        `region_embeddings` `[B, N, E]`, `pixel_embeddings` and `pixel_features` `[B, h, w, E]`
        (float32; h = ceil(H / 4), w = ceil(W / 4)). See the module docstring.

    Example:

    ```python
    inference = OpenSegInference(model.backbone, model.preprocessor.image_converter)
    out = inference({"images": images, "text_embeddings": text_embeddings})
    out["labels"]  # [B, H, W], the labels of model.segment(images, text_embeddings=text_embeddings)
    ```
    """

    def __init__(self, backbone, image_converter=None, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.image_converter = image_converter
        self.normalizer = image_normalizer(image_converter)

    @classmethod
    def from_model(cls, model, **kwargs):
        """The serving graph of an `OpenSegModel` (its backbone and its preprocessor's image converter)."""
        backbone = getattr(model, "backbone", None)
        if backbone is None or not hasattr(backbone, "embedding_dim"):
            raise ValueError(
                f"`model` must be an `OpenSegModel` (with an `OpenSegBackbone`). Received: {type(model).__name__}"
            )
        converter = getattr(getattr(model, "preprocessor", None), "image_converter", None)
        return cls(backbone, converter, **kwargs)

    def normalize(self, images):
        """Raw images -> float32 as the image converter normalizes them (its resizing left out)."""
        return ops.cast(images if self.normalizer is None else self.normalizer(images), "float32")

    def call(self, inputs):
        if not isinstance(inputs, dict) or not {"images", "text_embeddings"} <= set(inputs):
            received = sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__
            raise ValueError(f"`inputs` must be a dict with `images` and `text_embeddings`. Received: {received}")
        return self.segment_normalized({**inputs, "images": self.normalize(inputs["images"])})

    def segment_normalized(self, inputs):
        """`call` on images the image converter has normalized already (`{"images", "text_embeddings"}`)."""
        images = ops.cast(inputs["images"], "float32")
        shape = ops.shape(images)
        height, width = shape[1], shape[2]
        # The canvas size is written as a multiple of 32 (not as `height + (-height) % 32`), so that JAX shape
        # polymorphism can prove the strided feature maps of the encoder line up.
        canvas_height = (height + STRIDE - 1) // STRIDE * STRIDE
        canvas_width = (width + STRIDE - 1) // STRIDE * STRIDE
        canvas = ops.pad(images, [[0, 0], [0, canvas_height - height], [0, canvas_width - width], [0, 0]])
        # The padding mask of the canvas (1 on the images' pixels), built from the image size: the backbone
        # ignores the padding, so the outputs are those of `segment` on the same image, whatever its canvas.
        static_size = tuple(images.shape[1:3])
        if all(isinstance(side, int) and side % STRIDE == 0 for side in static_size):
            # A fixed size that needs no padding (e.g. LiteRT's fixed `image_size`): every pixel is valid, which
            # is what the backbone computes without a mask, and the graph keeps to LiteRT's built-in ops.
            outputs = self.backbone(canvas, training=False)
        else:
            padding_mask = ops.ones_like(images[..., 0])
            padding_mask = ops.pad(padding_mask, [[0, 0], [0, canvas_height - height], [0, canvas_width - width]])
            outputs = self.backbone({"images": canvas, "padding_mask": padding_mask}, training=False)
        masks = ops.sigmoid(ops.cast(outputs["mask_logits"], "float32"))
        region_embeddings = ops.cast(outputs["region_embeddings"], "float32")
        logits = segmentation_logits(masks, region_embeddings, inputs["text_embeddings"])
        grid_height = (height + MASK_STRIDE - 1) // MASK_STRIDE
        grid_width = (width + MASK_STRIDE - 1) // MASK_STRIDE
        # As `ImageCanvas.restore`: crop to the cells covering the image, upsample by the stride, crop.
        logits = logits[:, :, :grid_height, :grid_width]
        logits = resize(logits, (grid_height * MASK_STRIDE, grid_width * MASK_STRIDE), axes=(2, 3))
        logits = logits[:, :, :height, :width]
        pixel_features = region_pooled_pixel_features(masks, region_embeddings)
        scores = ops.max(logits, axis=1)
        # argmax as "the first category reaching the max": `ops.argmax` on TensorFlow tests the sign bit of
        # zeros with a bitwise op that LiteRT's builtin ops lack.
        categories = ops.arange(ops.shape(logits)[1], dtype="int32")[None, :, None, None]
        labels = ops.min(ops.where(logits >= scores[:, None], categories, np.iinfo("int32").max), axis=1)
        return {
            "labels": ops.cast(labels, "int32"),
            "scores": scores,
            "masks": masks[:, :, :grid_height, :grid_width],
            "region_embeddings": region_embeddings,
            "pixel_embeddings": ops.cast(outputs["pixel_embeddings"], "float32")[:, :grid_height, :grid_width],
            "pixel_features": pixel_features[:, :grid_height, :grid_width],
        }

    def input_signature(self, image_size=None, image_dtype="float32"):
        """The export signature: `[{"images": InputSpec, "text_embeddings": InputSpec}]`.

        Args:
            image_size: None, an int or `(height, width)`. None leaves the image size free. Defaults to `None`.
            image_dtype: `"float32"` or `"uint8"`. Defaults to `"float32"`.
        """
        height, width = _standardize_image_size(image_size) or (None, None)
        if image_dtype not in IMAGE_DTYPES:
            raise ValueError(f"`image_dtype` must be one of {IMAGE_DTYPES}. Received: image_dtype={image_dtype!r}")
        return [
            {
                "images": keras.InputSpec(shape=(None, height, width, 3), dtype=image_dtype, name="images"),
                "text_embeddings": keras.InputSpec(
                    shape=(None, self.backbone.embedding_dim), dtype="float32", name="text_embeddings"
                ),
            }
        ]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "backbone": keras.layers.serialize(self.backbone),
                "image_converter": None
                if self.image_converter is None
                else keras.layers.serialize(self.image_converter),
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("backbone", "image_converter"):
            if isinstance(config.get(key), dict):
                config[key] = keras.layers.deserialize(config[key])
        return cls(**config)


def _standardize_image_size(image_size):
    """`image_size` as `(height, width)` python ints, or None."""
    if image_size is None:
        return None
    size = (image_size, image_size) if isinstance(image_size, (int, np.integer)) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(side, (int, np.integer)) and side >= 1 for side in size):
        raise ValueError(f"`image_size` must be None, a positive int or (height, width). Received: {image_size!r}")
    return int(size[0]), int(size[1])


def check_format(format, backend=None):
    """Raise a ValueError unless `backend` (default: the current one) can export `format` here.

    Checks that Keras has an exporter for the pair and that the packages it imports are installed.
    """
    backend = backend or keras.backend.backend()
    if format not in FORMATS:
        raise ValueError(f"`format` must be one of {FORMATS}. Received: format={format!r}")
    requirements = _REQUIREMENTS[format].get(backend)
    if requirements is None:
        able = [name for name, needs in _REQUIREMENTS[format].items() if needs is not None]
        raise ValueError(
            f"format={format!r} cannot be exported from the {backend} backend; it can from: {', '.join(able)}. "
            "Set KERAS_BACKEND to one of those (the preset loads on any backend)."
        )
    missing = [module for module in requirements if importlib.util.find_spec(module) is None]
    if missing:
        packages = " ".join(module.replace("_", "-") for module in missing)
        raise ValueError(
            f"Exporting format={format!r} on the {backend} backend needs the packages {missing}, which are not "
            f"installed: `pip install {packages}` (or `pip install keras-openseg[export]`), or use another backend."
        )


def export_model(model, path, format="saved_model", image_size=None, image_dtype="float32", verbose=False):
    """Export an OpenSeg model's serving graph (`OpenSegInference`) with Keras' exporters.

    Args:
        model: `OpenSegModel` (or an `OpenSegInference`).
        path: string. A directory for `"saved_model"`, a file for the other formats.
        format: `"saved_model"`, `"onnx"`, `"litert"` or `"torch"`. See the module docstring for which
            backend exports which format. Defaults to `"saved_model"`.
        image_size: None, an int or `(height, width)`. The image size the artifact accepts; None accepts any
            size (where the format allows it). Defaults to `None`, or the image converter's `image_size` when
            the model's converter has one.
        image_dtype: `"float32"` or `"uint8"`. The dtype of the `images` input (raw 0..255 pixels either
            way). Defaults to `"float32"`.
        verbose: bool. Let Keras print the exported signature. Defaults to `False`.

    Returns:
        `path`.

    Example:

    ```python
    export_model(model, "openseg_saved_model")
    served = tf.saved_model.load("openseg_saved_model")
    out = served.serve({"images": images, "text_embeddings": text_embeddings})
    ```
    """
    inference = model if isinstance(model, OpenSegInference) else OpenSegInference.from_model(model)
    if image_size is None:
        image_size = getattr(inference.image_converter, "image_size", None)
    image_size = _standardize_image_size(image_size)
    check_format(format)
    if image_size is None and (format, keras.backend.backend()) not in _FREE_IMAGE_SIZE:
        raise ValueError(
            f"Exporting format={format!r} on the {keras.backend.backend()} backend needs a fixed `image_size` "
            "(e.g. image_size=512, or --image-size 512): this exporter traces fixed shapes. Resize or pad images "
            "to that size before serving them."
        )
    path = os.fspath(path)
    signature = inference.input_signature(image_size, image_dtype)
    # Build the wrapper (and trace its shapes) on a small concrete batch before any exporter touches it.
    height, width = image_size or (STRIDE, STRIDE)
    inference(
        {
            "images": np.zeros((1, height, width, 3), image_dtype),
            "text_embeddings": np.ones((1, inference.backbone.embedding_dim), "float32"),
        }
    )
    if format == "saved_model":
        archive = keras.export.ExportArchive()
        archive.track(inference)
        if keras.backend.backend() == "jax":
            _add_jax_serving_endpoints(archive, inference, signature, image_size)
        else:
            archive.add_endpoint("serve", inference.call, input_signature=signature)
        archive.write_out(path, verbose=verbose)
        return path
    kwargs = {}
    if format == "torch":
        import torch  # torch backend only: keep the batch and the number of categories free

        images_shape = {0: torch.export.Dim("batch", min=1)}
        text_shape = {0: torch.export.Dim("categories", min=1)}
        kwargs["dynamic_shapes"] = {"args": ({"images": images_shape, "text_embeddings": text_shape},)}
    inference.export(path, format=format, input_signature=signature, verbose=verbose, **kwargs)
    return path


def _add_jax_serving_endpoints(archive, inference, signature, image_size):
    """`serve` (and `serving_default`) on the JAX backend: the converter in TensorFlow, the rest through jax2tf.

    keras_hub's image converters take their TensorFlow path inside any `tf.function`, which cannot trace JAX
    values; so the normalization runs in TensorFlow and calls the jax2tf graph of `segment_normalized`.
    """
    import tensorflow as tf  # the SavedModel's own graph around the jax2tf function

    height, width = image_size or (None, None)
    # Name each free dimension: Keras' default names the first axis of every input "batch", which would tie the
    # number of categories to the batch size.
    images_shape = "(b, h, w, 3)" if image_size is None else f"(b, {height}, {width}, 3)"
    text_shape = f"(c, {inference.backbone.embedding_dim})"
    normalized_signature = [
        {
            "images": keras.InputSpec(shape=signature[0]["images"].shape, dtype="float32", name="images"),
            "text_embeddings": signature[0]["text_embeddings"],
        }
    ]
    segment_normalized = archive.add_endpoint(
        "serve_normalized",
        inference.segment_normalized,
        input_signature=normalized_signature,
        jax2tf_kwargs={"polymorphic_shapes": [{"images": images_shape, "text_embeddings": text_shape}]},
    )
    specs = {name: tf.TensorSpec(spec.shape, spec.dtype, name=name) for name, spec in signature[0].items()}

    @tf.function(input_signature=[specs])
    def serve(inputs):
        images = inputs["images"] if inference.normalizer is None else inference.normalizer(inputs["images"])
        return segment_normalized({"images": tf.cast(images, tf.float32), "text_embeddings": inputs["text_embeddings"]})

    archive.add_endpoint("serve", serve)
    archive.add_endpoint("serving_default", serve)


def export_info(model, format, image_size=None, image_dtype="float32"):
    """A JSON-able description of an exported artifact: its inputs, outputs and the text encoder to use."""
    inference = model if isinstance(model, OpenSegInference) else OpenSegInference.from_model(model)
    text_embedder = getattr(model, "text_embedder", None)
    height, width = _standardize_image_size(image_size) or (None, None)
    embedding_dim = inference.backbone.embedding_dim
    return {
        "format": format,
        "backend": keras.backend.backend(),
        "endpoint": "serve" if format == "saved_model" else None,
        "inputs": {
            "images": {"shape": [None, height, width, 3], "dtype": image_dtype, "range": [0, 255]},
            "text_embeddings": {"shape": [None, embedding_dim], "dtype": "float32"},
        },
        "outputs": {
            "labels": "[B, H, W] int32: index of the winning category",
            "scores": "[B, H, W] float32: its eq. (6) logit",
            "masks": "[B, N, ceil(H/4), ceil(W/4)] float32: mask proposal probabilities",
            "region_embeddings": "[B, N, E] float32: region embedding of each proposal",
            "pixel_embeddings": "[B, ceil(H/4), ceil(W/4), E] float32: per-pixel embeddings F_z",
            "pixel_features": "[B, ceil(H/4), ceil(W/4), E] float32: region-pooled pixel features",
        },
        "num_queries": inference.backbone.num_queries,
        "embedding_dim": embedding_dim,
        "text_encoder": getattr(text_embedder, "identity", None),
    }
