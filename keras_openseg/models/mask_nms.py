"""Greedy mask non-maximum suppression in `keras.ops`, with a fixed trip count so it compiles on every backend."""

from keras import ops


def mask_iou(masks):
    """Pairwise intersection over union of binary masks.

    Args:
        masks: `[B, N, H, W]` masks in {0, 1} (any float or bool dtype).

    Returns:
        `[B, N, N]` float32 IoU; 0 between two empty masks.
    """
    masks = ops.cast(masks, "float32")
    flat = ops.reshape(masks, (ops.shape(masks)[0], ops.shape(masks)[1], -1))
    intersection = ops.einsum("bnp,bmp->bnm", flat, flat)
    area = ops.sum(flat, axis=-1)
    union = area[:, :, None] + area[:, None, :] - intersection
    return intersection / ops.maximum(union, 1.0)


def mask_nms(masks, scores, iou_threshold=0.5, score_threshold=0.0):
    """Greedy non-maximum suppression of masks (the de-duplication of the teacher's proposals, sec. 3.3).

    Masks are visited by decreasing score; a mask is kept when its score reaches `score_threshold`, it is not
    empty, and its IoU with every mask kept before it is at most `iou_threshold`. The loop runs exactly N
    times (`ops.fori_loop`), so the function traces under `jax.jit`, `tf.function` and torch alike.

    Args:
        masks: `[B, N, H, W]` binary masks.
        scores: `[B, N]` float scores.
        iou_threshold: float. Largest IoU allowed with a higher-scoring kept mask. Defaults to `0.5`.
        score_threshold: float. Smallest score a kept mask may have. Defaults to `0.0`.

    Returns:
        `[B, N]` bool: which masks are kept (in the input order).

    Example:

    >>> masks = np.zeros((1, 3, 4, 4), "float32")
    >>> masks[0, 0, :2] = masks[0, 1, :2] = masks[0, 2, 2:] = 1
    >>> keras.ops.convert_to_numpy(mask_nms(masks, np.array([[0.9, 0.8, 0.7]])))
    array([[ True, False,  True]])
    """
    scores = ops.cast(scores, "float32")
    num_masks = ops.shape(masks)[1]
    order = ops.argsort(-scores, axis=-1)  # [B, N], best first
    sorted_masks = ops.take_along_axis(ops.cast(masks, "float32"), order[:, :, None, None], axis=1)
    sorted_scores = ops.take_along_axis(scores, order, axis=1)
    iou = mask_iou(sorted_masks)  # [B, N, N] in sorted order
    nonempty = ops.sum(ops.reshape(sorted_masks, (ops.shape(masks)[0], num_masks, -1)), axis=-1) > 0.0
    candidates = ops.logical_and(sorted_scores >= score_threshold, nonempty)
    overlaps = ops.cast(iou > iou_threshold, "float32")

    def step(index, keep):
        position = ops.one_hot(index, num_masks, dtype="float32")  # [N]
        # Row `index` of the overlap matrix, against the masks kept so far (all of them earlier in the order).
        overlapping = ops.einsum("bij,i->bj", overlaps, position)
        suppressed = ops.sum(overlapping * keep, axis=-1) > 0.0
        candidate = ops.sum(ops.cast(candidates, "float32") * position, axis=-1) > 0.0
        kept = ops.cast(ops.logical_and(candidate, ops.logical_not(suppressed)), "float32")
        return keep + kept[:, None] * position[None, :]

    keep_sorted = ops.fori_loop(0, num_masks, step, ops.zeros(ops.shape(scores), "float32"))
    # Back to the input order: scatter through the inverse permutation.
    inverse = ops.argsort(order, axis=-1)
    return ops.take_along_axis(keep_sorted, inverse, axis=1) > 0.5
