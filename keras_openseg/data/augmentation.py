"""Scale jitter, random crop / pad and horizontal flip that keep an image and its masks aligned (TensorFlow),
and a hue rotation that keeps the caption true.

The paper trains at 640 x 640 with scale jitter in [0.8, 1.2] (sec. 4, following large-scale jitter): the
image is resized so that its long side is `scale * image_size`, then a random `image_size` square is cut out
of it, or the image is padded at the bottom and right when it is smaller. One `Geometry` is drawn per example
and applied to the image (bilinear), the panoptic id map (nearest, so ids stay ids) and any mask stack.

Beyond the paper, `random_hue_rotation` turns an image's colour wheel by a random angle (saturation and
value kept); the training pipeline then drops the caption words that name a chromatic colour
(`CHROMATIC_COLOUR_WORDS`), which the rotation made false, so that a word cannot be matched through the
colours it co-occurs with in the training set.
"""

import collections

import tensorflow as tf

Geometry = collections.namedtuple("Geometry", ["height", "width", "offset_y", "offset_x", "flip"])
Geometry.__doc__ = """One example's jitter: resized size, crop offset in the resized image, and a flip flag."""


def random_geometry(seed, image_shape, image_size, scale_range=(0.8, 1.2), flip=True):
    """Draws the jitter of one example from a stateless seed.

    Args:
        seed: int tensor [2]. Stateless random seed.
        image_shape: int tensor [2] or [3]. (height, width[, channels]) of the input image.
        image_size: int. Side of the square training crop.
        scale_range: (float, float). The long side becomes `image_size * U(scale_range)`.
        flip: bool. Flip horizontally with probability 1/2.

    Returns:
        `Geometry` of int32 scalars (and a bool flip).
    """
    seeds = tf.random.experimental.stateless_split(seed, num=4)
    height = tf.cast(image_shape[0], tf.float32)
    width = tf.cast(image_shape[1], tf.float32)
    scale = tf.random.stateless_uniform([], seeds[0], scale_range[0], scale_range[1])
    scale = scale * image_size / tf.maximum(height, width)
    new_height = tf.maximum(tf.cast(tf.round(height * scale), tf.int32), 1)
    new_width = tf.maximum(tf.cast(tf.round(width * scale), tf.int32), 1)
    offset_y = _random_offset(seeds[1], new_height - image_size)
    offset_x = _random_offset(seeds[2], new_width - image_size)
    do_flip = tf.random.stateless_uniform([], seeds[3]) < 0.5 if flip else tf.constant(False)
    return Geometry(new_height, new_width, offset_y, offset_x, do_flip)


# English names of chromatic colours (those a hue rotation changes; black, white and grey it keeps), as caption
# words after lemmatization. A hue-rotated example loses these words from its caption.
CHROMATIC_COLOUR_WORDS = (
    "red",
    "orange",
    "yellow",
    "green",
    "blue",
    "purple",
    "pink",
    "brown",
    "violet",
    "indigo",
    "cyan",
    "magenta",
    "turquoise",
    "teal",
    "lime",
    "olive",
    "maroon",
    "navy",
    "crimson",
    "scarlet",
    "gold",
    "golden",
    "beige",
    "tan",
)


def random_hue_rotation(seed, image, probability):
    """Rotates the hue of `image` by a uniform random angle, with probability `probability`.

    Args:
        seed: int tensor [2]. Stateless random seed.
        image: float tensor [H, W, 3] of RGB values in 0..255.
        probability: float in [0, 1]. How often the image is rotated.

    Returns:
        `(image, rotated)`: the image, rotated by a hue shift uniform in [-0.5, 0.5) of the colour wheel (its
        saturation and value unchanged, so greys and the zero padding stay as they are) when `rotated`, a
        bool scalar tensor, is true; else the input.
    """
    draw = tf.random.stateless_uniform([2], seed)
    rotated = draw[0] < probability
    # Only a rotated image pays for the colour-space round trip.
    image = tf.cond(rotated, lambda: tf.image.adjust_hue(image / 255.0, draw[1] - 0.5) * 255.0, lambda: image)
    return image, rotated


def _random_offset(seed, slack):
    # Uniform over the 0..slack valid offsets of the crop; 0 when the resized image is smaller than the crop.
    return tf.random.stateless_uniform([], seed, 0, tf.maximum(slack, 0) + 1, dtype=tf.int32)


def padding_mask(geometry, image_size):
    """The `[image_size, image_size]` float32 padding mask of `apply_geometry`'s output: 1 on the image's pixels.

    The resized image, cropped to at most `image_size` per side and flipped, sits at the top left; the rest is
    padding (0). The model multiplies its normalized images by this mask, so the padding is 0 after
    normalization, as at inference (`keras_openseg.models.image_batching.ImageCanvas`).

    Args:
        geometry: `Geometry` from `random_geometry`.
        image_size: int. Output side.

    Returns:
        tensor [image_size, image_size] float32 of 0 / 1.
    """
    rows = tf.range(image_size) < tf.minimum(geometry.height, image_size)
    columns = tf.range(image_size) < tf.minimum(geometry.width, image_size)
    return tf.cast(tf.logical_and(rows[:, None], columns[None, :]), tf.float32)


def apply_geometry(tensor, geometry, image_size, method="bilinear"):
    """Resizes, crops, flips and pads a [H, W, C] tensor to [image_size, image_size, C].

    Args:
        tensor: tensor [H, W, C]. Image, id map or stacked masks (channels last).
        geometry: `Geometry` from `random_geometry` (or one built by hand).
        image_size: int. Output side.
        method: str. `tf.image.resize` method: "bilinear" for images and soft masks, "nearest" for id maps
            (keeps the dtype and the exact ids).

    Returns:
        tensor [image_size, image_size, C]; the padding (bottom / right) is 0.
    """
    resized = tf.image.resize(tensor, tf.stack([geometry.height, geometry.width]), method=method)
    crop_height = tf.minimum(geometry.height, image_size)
    crop_width = tf.minimum(geometry.width, image_size)
    cropped = tf.slice(
        resized, tf.stack([geometry.offset_y, geometry.offset_x, 0]), tf.stack([crop_height, crop_width, -1])
    )
    cropped = tf.cond(geometry.flip, lambda: tf.reverse(cropped, axis=[1]), lambda: cropped)
    padded = tf.image.pad_to_bounding_box(cropped, 0, 0, image_size, image_size)
    return tf.ensure_shape(padded, [image_size, image_size, tensor.shape[-1]])
