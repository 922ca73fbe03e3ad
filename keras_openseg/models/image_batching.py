"""Batched inference on raw images of any size: normalize, resize, pad to a multiple of 32, and back.

`OpenSegModel.segment`, `OpenSegModel.pixel_features` and `OpenSegTeacher.pseudo_label` share these steps:
every image is normalized by the model's image converter, optionally resized to fit the converter's
`image_size`, padded (bottom and right, with zeros after normalization) onto one canvas whose sides are
multiples of 32, run through the backbone as one batch together with its `padding_mask` (1 on each image's
pixels), and each per-pixel result is cropped back to its image and resized to the image's own size. With the
mask the backbone ignores the padding, so an image's result does not depend on what it is batched with.
"""

import math

import numpy as np
from keras import ops

from keras_openseg.layers.resizing import resize
from keras_openseg.models.openseg_image_converter import image_normalizer

STRIDE = 32


def as_image_list(images):
    """`images` as a list of `[H, W, 3]` numpy arrays, and whether they came as one `[B, H, W, 3]` array.

    Accepts one `[H, W, 3]` image, a `[B, H, W, 3]` array or tensor, or a list of `[H, W, 3]` images
    (sizes may differ).
    """
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("`images` is empty: give at least one [H, W, 3] image.")
        image_list = [np.asarray(ops.convert_to_numpy(image)) for image in images]
        stacked = False
    else:
        array = np.asarray(ops.convert_to_numpy(images))
        if array.ndim == 3:
            array = array[None]
        image_list = list(array)
        stacked = True
    for index, image in enumerate(image_list):
        if image.ndim != 3 or image.shape[-1] != 3 or min(image.shape[:2]) < 1:
            raise ValueError(f"`images[{index}]` must be [H, W, 3] with H, W >= 1. Received shape {image.shape}.")
    return image_list, stacked


def _normalize(image, normalizer):
    image = image.astype("float32")
    if normalizer is None:
        return image
    return np.asarray(ops.convert_to_numpy(normalizer(image[None])), "float32")[0]


def _round_up(value, multiple=STRIDE):
    return int(math.ceil(value / multiple) * multiple)


class ImageCanvas:
    """A batch of images of any sizes, normalized, resized to fit `image_size` and padded into one canvas.

    Args:
        images: list of `[H, W, 3]` numpy images (raw pixels, e.g. uint8).
        image_converter: keras_hub `ImageConverter` or None. Its `scale` and `offset` normalize the pixels;
            its `image_size`, when set, is the box every image is resized into (aspect ratio kept).

    Attributes:
        canvas: `[B, Hc, Wc, 3]` float32, Hc and Wc multiples of 32.
        padding_mask: `[B, Hc, Wc]` float32, 1 on each image's pixels and 0 on its padding.
        sizes: list of the original `(H, W)`.
        fitted_sizes: list of the `(h, w)` each image covers on the canvas.
    """

    def __init__(self, images, image_converter=None):
        image_size = getattr(image_converter, "image_size", None)
        self.sizes = [tuple(image.shape[:2]) for image in images]
        normalizer = image_normalizer(image_converter)  # the converter's normalization, its resizing left out
        fitted = []
        for image in images:
            image = _normalize(image, normalizer)
            if image_size is not None:
                height, width = image.shape[:2]
                factor = min(image_size[0] / height, image_size[1] / width)
                size = (max(1, round(height * factor)), max(1, round(width * factor)))
                if size != (height, width):
                    image = ops.convert_to_numpy(resize(ops.convert_to_tensor(image[None]), size))[0]
            fitted.append(image)
        self.fitted_sizes = [tuple(image.shape[:2]) for image in fitted]
        if image_size is not None:
            canvas_size = (_round_up(image_size[0]), _round_up(image_size[1]))
        else:
            canvas_size = (
                _round_up(max(size[0] for size in self.fitted_sizes)),
                _round_up(max(size[1] for size in self.fitted_sizes)),
            )
        self.canvas = np.zeros((len(fitted),) + canvas_size + (3,), "float32")
        self.padding_mask = np.zeros((len(fitted),) + canvas_size, "float32")
        for index, image in enumerate(fitted):
            self.canvas[index, : image.shape[0], : image.shape[1]] = image
            self.padding_mask[index, : image.shape[0], : image.shape[1]] = 1.0

    @property
    def inputs(self):
        """The backbone's inputs: `{"images": canvas, "padding_mask": padding_mask}`."""
        return {"images": self.canvas, "padding_mask": self.padding_mask}

    def pixel_valid(self, grid_size):
        """`[B, h, w]` bool valid cells of a `grid_size` map over the canvas (a cell covering any image pixel)."""
        rows = np.arange(grid_size[0]) * self.canvas.shape[1]
        columns = np.arange(grid_size[1]) * self.canvas.shape[2]
        valid = np.zeros((len(self.fitted_sizes),) + tuple(grid_size), bool)
        for index, (height, width) in enumerate(self.fitted_sizes):
            valid[index] = (rows < height * grid_size[0])[:, None] & (columns < width * grid_size[1])[None, :]
        return valid

    def restore(self, maps, interpolation="bilinear"):
        """Per-image `[C, H, W]` numpy maps at the original sizes from `[B, C, h, w]` maps over the canvas.

        The maps (at the canvas resolution or any whole fraction of it, e.g. stride 4) are first cropped to
        the cells that cover each image (ceil), so no value comes from a padded cell, then resized by the
        stride, cropped to the image's pixels and resized to the image's own size. The result does not
        depend on the canvas the image was padded to.
        """
        maps = ops.convert_to_tensor(maps)
        canvas_height, canvas_width = self.canvas.shape[1:3]
        stride_y = canvas_height // int(maps.shape[2])
        stride_x = canvas_width // int(maps.shape[3])
        restored = []
        for index, (fitted, size) in enumerate(zip(self.fitted_sizes, self.sizes)):
            rows, columns = -(-fitted[0] // stride_y), -(-fitted[1] // stride_x)
            crop = maps[index : index + 1, :, :rows, :columns]
            if (stride_y, stride_x) != (1, 1):
                crop = resize(crop, (rows * stride_y, columns * stride_x), axes=(2, 3), interpolation=interpolation)
            crop = crop[:, :, : fitted[0], : fitted[1]]
            if fitted != size:
                crop = resize(crop, size, axes=(2, 3), interpolation=interpolation)
            restored.append(np.asarray(ops.convert_to_numpy(crop))[0])
        return restored
