"""Class-agnostic label masks: decoding panoptic PNGs and packing masks into a fixed [M, H, W] (TensorFlow).

The mask loss (eq. 1) takes class-agnostic masks with a `mask_valid` flag per slot. Panoptic labels arrive as
a PNG whose pixel (R, G, B) holds the segment id R + 256 G + 256^2 B (0 = void), plus a list of segments.

Crowd segments (`is_crowd`, COCO's groups of many instances) are not targets: a crowd region is not one
object, and OpenSeg's best-match dice (eq. 1) would ask some query to cover the whole group. Their pixels
belong to no valid mask, like void pixels.
"""

import tensorflow as tf


def panoptic_ids(panoptic_image):
    """Segment id of every pixel of a panoptic PNG.

    Args:
        panoptic_image: uint8 tensor [H, W, 3].

    Returns:
        int32 tensor [H, W]: R + 256 G + 256^2 B, 0 = void.
    """
    rgb = tf.cast(panoptic_image, tf.int32)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def pack_segment_masks(id_map, segment_ids, segment_valid, max_masks, mask_size=None, segment_classes=None):
    """Binary masks of the largest `max_masks` valid segments of an id map, padded to `max_masks`.

    Args:
        id_map: int32 tensor [H, W]. Segment id per pixel (after any resize / crop: segments cut away by a
            crop get no mask).
        segment_ids: int tensor [S]. Ids of the segments.
        segment_valid: bool tensor [S]. Segments that may become targets (e.g. not crowd).
        max_masks: int. M, the number of mask slots.
        mask_size: int or None. Side of the returned masks, area-resized: each value is the fraction of the
            cell the segment covers, what the mask loss computes from full-size masks. None keeps [H, W].
        segment_classes: int tensor [S] or None. The class of each segment (e.g. the tfds `category_id`).
            When given, the class of each slot is returned too. Defaults to `None`.

    Returns:
        (masks float32 [M, h, w], 0/1 at full size, mask_valid bool [M]), and with `segment_classes` a third
        entry mask_classes int32 [M]: the class of each slot's segment, -1 for slots that are not valid.
        Slots are filled largest segment first. Areas are ranked on a grid of about 128 x 128 samples of the
        id map (every pixel up to 255 px), so at 640 px a segment that no sample hits (under ~5 x 5 px) gets no
        slot; a segment with no pixel left is not valid.
    """
    segment_ids = tf.cast(segment_ids, tf.int32)
    # Areas from a histogram of the id map, never from the [S, H, W] stack of all segments (COCO has ~100);
    # at 640 px the histogram is the costly part, and ranking needs no exact areas: subsample large maps.
    stride = 1 if id_map.shape[0] is None else max(1, id_map.shape[0] // 128)
    samples = tf.reshape(id_map[::stride, ::stride], [-1])
    unique_ids, _, counts = tf.unique_with_counts(samples)
    matches = tf.equal(segment_ids[:, None], unique_ids[None, :])
    areas = tf.reduce_sum(tf.where(matches, counts[None, :], 0), axis=1)
    areas = tf.where(tf.cast(segment_valid, tf.bool) & (segment_ids != 0), areas, 0)
    count = tf.minimum(tf.size(areas), max_masks)
    top_areas, top = tf.math.top_k(areas, k=count)
    chosen = tf.gather(segment_ids, top)
    masks = tf.equal(id_map[None], chosen[:, None, None]) & (top_areas > 0)[:, None, None]
    masks, valid = _resize_and_pad(masks, tf.reduce_any(masks, axis=[1, 2]), max_masks, mask_size)
    if segment_classes is None:
        return masks, valid
    classes = tf.gather(tf.cast(segment_classes, tf.int32), top)
    classes = tf.pad(classes, [[0, max_masks - tf.shape(classes)[0]]], constant_values=-1)
    classes = tf.where(valid, classes, -1)
    return masks, valid, tf.ensure_shape(classes, [max_masks])


def pack_masks(masks, mask_valid, max_masks, mask_size=None):
    """Keeps the largest `max_masks` valid non-empty masks of a stack, padded to `max_masks`.

    Args:
        masks: bool tensor [N, H, W].
        mask_valid: bool tensor [N].
        max_masks: int. M.
        mask_size: int or None. As in `pack_segment_masks`.

    Returns:
        (masks float32 [M, h, w] of 0/1, mask_valid bool [M]), largest first.
    """
    areas = tf.reduce_sum(tf.cast(masks, tf.int32), axis=[1, 2])
    areas = tf.where(mask_valid, areas, 0)
    top_areas, top = tf.math.top_k(areas, k=tf.minimum(tf.size(areas), max_masks))
    chosen = tf.gather(masks, top) & (top_areas > 0)[:, None, None]
    return _resize_and_pad(chosen, top_areas > 0, max_masks, mask_size)


def _resize_and_pad(masks, valid, max_masks, mask_size):
    masks = tf.cast(masks, tf.float32)
    if mask_size is not None and mask_size != masks.shape[1]:
        # Resizing only the filled slots, before padding, is what makes small label masks cheap. One empty
        # slot more keeps a channel to resize when there is no mask at all.
        stack = tf.concat([masks, tf.zeros(tf.concat([[1], tf.shape(masks)[1:]], 0))], axis=0)
        resized = tf.image.resize(tf.transpose(stack, [1, 2, 0]), [mask_size, mask_size], method="area")
        masks = tf.transpose(resized, [2, 0, 1])[:-1]
        valid = valid & (tf.reduce_sum(masks, axis=[1, 2]) > 0)
    missing = max_masks - tf.shape(masks)[0]
    masks = tf.pad(masks, [[0, missing], [0, 0], [0, 0]])
    valid = tf.pad(valid, [[0, missing]], constant_values=False)
    height, width = masks.shape[1], masks.shape[2]
    return tf.ensure_shape(masks, [max_masks, height, width]), tf.ensure_shape(valid, [max_masks])
