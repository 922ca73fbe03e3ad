"""What the semantic-segmentation builders (`ade20k`, `pascal_context`, `pascal_voc`) share.

Their features (`semantic_segmentation_features`), the check that a label has its image's size
(`check_same_size`), and the field's preparation of ADE20K's validation images (`resize_to_shorter_side`: a
shorter side of at most 512, the image bilinear, the labels nearest; facebookresearch/MaskFormer,
`datasets/prepare_ade20k_full_sem_seg.py`, which CAT-Seg, SAN and FC-CLIP reuse).
"""

import io

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from keras_openseg.datasets.manual_download import ManualDirError

# What MaskFormer's preparation writes resized images with: Pillow's JPEG defaults (quality 75).
RESIZED_JPEG_QUALITY = 75


def semantic_segmentation_features():
    """The features of every semantic-segmentation builder of the package.

    `image` (JPEG), `image/filename` (e.g. `ADE_val_00000001.jpg`) and `semantic`, a 1-channel uint16 PNG of
    label values (indices into `metadata["class_names"]`, or `metadata["ignore_label"]`).
    """
    return tfds.features.FeaturesDict(
        {
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
            "image/filename": tfds.features.Text(),
            "semantic": tfds.features.Image(shape=(None, None, 1), dtype=np.uint16, encoding_format="png"),
        }
    )


def check_same_size(image, label, path):
    """Raises `ManualDirError` naming `path` unless `label` (`[H, W]` or `[H, W, 1]`) has the size of `image`.

    Args:
        image: bytes. The encoded image; Pillow reads its size from the header without decoding the pixels.
        label: np.ndarray. The label map.
        path: str. The label file, named in the message.
    """
    width, height = Image.open(io.BytesIO(image)).size
    if tuple(label.shape[:2]) != (height, width):
        raise ManualDirError(
            f"{path}: the label is {label.shape[1]}x{label.shape[0]} but its image is {width}x{height}."
        )


def shorter_side_size(height, width, max_shorter_side):
    """The `(height, width)` an image gets when its shorter side is brought down to `max_shorter_side`.

    The rule of MaskFormer's ADE20K preparation: an image whose shorter side exceeds `max_shorter_side` gets
    that shorter side and its longer side scaled with it, rounded (Python's `round`); any other image keeps
    its size.
    """
    if width >= height > max_shorter_side:
        return max_shorter_side, round(width / float(height) * max_shorter_side)
    if height >= width > max_shorter_side:
        return round(height / float(width) * max_shorter_side), max_shorter_side
    return height, width


def resize_bilinear(pixels, size):
    """Resizes `[H, W]` or `[H, W, C]` uint8 pixels to `size` as OpenCV's `INTER_LINEAR` samples them.

    Pixel centres are aligned (source coordinate `(x + 0.5) * H / h - 0.5`), coordinates outside the image
    are clamped to its edge and there is no antialiasing. Computed in float and rounded, so a value may
    differ by one from OpenCV's fixed-point result.
    """
    pixels = np.asarray(pixels)
    (rows, row_weights), (cols, col_weights) = (
        _linear_taps(source, target) for source, target in zip(pixels.shape[:2], size)
    )
    image = pixels.astype(np.float64)
    if image.ndim == 3:
        row_weights, col_weights = row_weights[:, None, None], col_weights[:, None]
    else:
        row_weights = row_weights[:, None]
    top, bottom = image[rows[0]], image[rows[1]]
    vertical = top + row_weights * (bottom - top)
    left, right = vertical[:, cols[0]], vertical[:, cols[1]]
    resized = left + col_weights * (right - left)
    return np.clip(np.rint(resized), 0, 255).astype(np.uint8)


def resize_nearest(labels, size):
    """Resizes a `[H, W]` label map to `size` as OpenCV's `INTER_NEAREST` does: source `floor(x * H / h)`."""
    labels = np.asarray(labels)
    rows, cols = (
        np.minimum(np.floor(np.arange(target) * (source / target)).astype(np.int64), source - 1)
        for source, target in zip(labels.shape[:2], size)
    )
    return labels[rows[:, None], cols[None, :]]


def resize_to_shorter_side(image, label, max_shorter_side):
    """Brings an example's shorter side down to `max_shorter_side` (ADE20K validation, as the field prepares it).

    Args:
        image: bytes. The encoded image (JPEG).
        label: np.ndarray. `[H, W]` label map (class values; resized nearest, so no value is invented).
        max_shorter_side: int. The largest shorter side kept.

    Returns:
        (bytes, np.ndarray): the image, re-encoded as a JPEG of quality `RESIZED_JPEG_QUALITY` when resized
        (unchanged otherwise), and the label map at the image's new size.
    """
    with Image.open(io.BytesIO(image)) as decoded:
        width, height = decoded.size
        size = shorter_side_size(height, width, max_shorter_side)
        if size == (height, width):
            return image, label
        pixels = np.asarray(decoded.convert("RGB"))
    buffer = io.BytesIO()
    Image.fromarray(resize_bilinear(pixels, size)).save(buffer, "JPEG", quality=RESIZED_JPEG_QUALITY)
    return buffer.getvalue(), resize_nearest(label, size)


def _linear_taps(source, target):
    """The two source indices and the weight of the second one for each of `target` output positions."""
    position = (np.arange(target) + 0.5) * (source / target) - 0.5
    lower = np.floor(position).astype(np.int64)
    weight = position - lower
    weight[lower < 0] = 0.0
    lower = np.maximum(lower, 0)
    weight[lower >= source - 1] = 0.0
    lower = np.minimum(lower, source - 1)
    return (lower, np.minimum(lower + 1, source - 1)), weight
