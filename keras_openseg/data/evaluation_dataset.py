"""The evaluation input pipeline: images with their semantic label maps, sized for the model (tf.data)."""

import tensorflow as tf


def make_evaluation_dataset(dataset, image_size=None, size_divisor=32, batch_size=1, ignore_label=255):
    """Images and semantic label maps, resized and padded to a size the backbone accepts.

    The backbone's feature pyramid halves the resolution five times, so inputs are padded (bottom / right) to
    a multiple of `size_divisor`. The label map gets the same resize (nearest) and its padding is
    `ignore_label`, so predictions on the padding never count.

    Args:
        dataset: `tf.data.Dataset` of tfds examples with "image" uint8 [H, W, 3] and "semantic" int
            [H, W, 1] (class index per pixel, in the dataset's `class_names` order).
        image_size: int or None. Resize so that the long side is `image_size` and pad to a square of
            `image_size` rounded up to `size_divisor`; every batch then has one shape. None keeps each
            image's size and pads it to a multiple of `size_divisor` (batches pad to their largest image).
            Defaults to `None`.
        size_divisor: int. Defaults to `32`.
        batch_size: int. Defaults to `1`.
        ignore_label: int. Label of padding pixels. Defaults to `255`.

    Returns:
        `tf.data.Dataset` of dicts: "images" float32 [B, H', W', 3] in 0..255, "semantic" int32 [B, H', W']
        and "valid_size" int32 [B, 2] (height, width of the image inside the padding).

    Example:
    ```python
    builder = tfds.builder("openseg_shapes/tiny")
    dataset = make_evaluation_dataset(builder.as_dataset(split="held_out"), image_size=64, batch_size=4)
    ```
    """
    if size_divisor < 1 or batch_size < 1:
        raise ValueError(
            f"`size_divisor` and `batch_size` must be positive. Received: size_divisor={size_divisor}, "
            f"batch_size={batch_size}"
        )
    if image_size is not None and image_size < 1:
        raise ValueError(f"`image_size` must be a positive int or None. Received: image_size={image_size}")
    spec = dataset.element_spec
    if not isinstance(spec, dict) or "image" not in spec or "semantic" not in spec:
        raise ValueError(f"`dataset` elements must be dicts with 'image' and 'semantic'. Received: {spec}")

    def prepare(example):
        image = tf.cast(example["image"], tf.float32)
        semantic = tf.cast(example["semantic"], tf.int32)
        if semantic.shape.rank == 2:
            semantic = semantic[..., None]
        if image_size is not None:
            shape = tf.cast(tf.shape(image)[:2], tf.float32)
            scale = image_size / tf.reduce_max(shape)
            size = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), 1)
            image = tf.image.resize(image, size, method="bilinear")
            semantic = tf.image.resize(semantic, size, method="nearest")
            padded_height = padded_width = -(-image_size // size_divisor) * size_divisor
        else:
            size = tf.shape(image)[:2]
            padded_height = (size[0] + size_divisor - 1) // size_divisor * size_divisor
            padded_width = (size[1] + size_divisor - 1) // size_divisor * size_divisor
        paddings = [[0, padded_height - size[0]], [0, padded_width - size[1]], [0, 0]]
        image = tf.pad(image, paddings)
        semantic = tf.pad(semantic - ignore_label, paddings) + ignore_label  # pads with ignore_label
        return {"images": image, "semantic": semantic[..., 0], "valid_size": tf.cast(size, tf.int32)}

    dataset = dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    if image_size is not None:
        dataset = dataset.batch(batch_size)
    else:
        dataset = dataset.padded_batch(
            batch_size, padding_values={"images": 0.0, "semantic": ignore_label, "valid_size": 0}
        )
    return dataset.prefetch(tf.data.AUTOTUNE)
