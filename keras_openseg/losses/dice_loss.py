import keras
from keras import ops

from keras_openseg.layers.resizing import resize

MATCHINGS = ("max", "one_to_one")


def check_probabilities(x, argument):
    """Raise a ValueError when `x` holds values outside [0, 1].

    Only the two extremes are brought to the host, and only when they are concrete: while a graph is being
    traced (`tf.function`, `jax.jit`) converting them fails and the check is skipped, so tracing never breaks.
    """
    if 0 in tuple(x.shape):
        return
    try:
        low = float(ops.convert_to_numpy(ops.min(x)))
        high = float(ops.convert_to_numpy(ops.max(x)))
    except Exception:  # symbolic tensors and tracers have no values yet
        return
    if low < 0.0 or high > 1.0:
        raise ValueError(
            f"`{argument}` must hold probabilities in [0, 1] (apply a sigmoid to logits first). Received values "
            f"in [{low:.4g}, {high:.4g}]."
        )


def dice_matrix(pred_masks, gt_masks, smooth=1.0):
    """Dice coefficient of every predicted mask with every label mask.

    Args:
        pred_masks: `[B, N, H, W]` float32 probabilities.
        gt_masks: `[B, M, H, W]` float32 labels at the same resolution.
        smooth: float. Added to numerator and denominator.

    Returns:
        `[B, N, M]` float32: `(2 sum(s t) + smooth) / (sum(s) + sum(t) + smooth)`.
    """
    pred = ops.reshape(pred_masks, (ops.shape(pred_masks)[0], ops.shape(pred_masks)[1], -1))
    gt = ops.reshape(gt_masks, (ops.shape(gt_masks)[0], ops.shape(gt_masks)[1], -1))
    intersection = ops.einsum("bnp,bmp->bnm", pred, gt)
    pred_area = ops.sum(pred, axis=-1)[:, :, None]
    gt_area = ops.sum(gt, axis=-1)[:, None, :]
    return (2.0 * intersection + smooth) / (pred_area + gt_area + smooth)


def greedy_assignment(scores, valid):
    """One-to-one assignment of label masks to queries, greedily by decreasing score, in the graph.

    Repeats M times (M = number of label slots, a fixed trip count, so it compiles on every backend): take
    the largest score among the queries and labels not yet assigned, assign that pair, retire its row and
    column. Greedy gives each valid label its own query while queries last (N >= number of valid labels) and
    its total score is at least half the optimal (Hungarian) one; it equals the optimum whenever the best
    pairs do not compete, the common case once training has separated the queries.

    Args:
        scores: `[B, N, M]` float32, larger is better, values >= 0.
        valid: `[B, M]` bool, labels that take part.

    Returns:
        `[B, N, M]` float32 0/1 assignment: each column at most one 1, each row at most one 1; a valid column
        has no 1 only when the queries ran out.
    """
    num_queries, num_labels = ops.shape(scores)[1], ops.shape(scores)[2]
    if isinstance(num_labels, int) and num_labels == 0:
        return ops.zeros_like(scores)
    # Retired rows/columns and invalid labels score -1, below every dice value, so they are never chosen.
    available = ops.where(valid[:, None, :], scores, -1.0)
    flat_size = num_queries * num_labels

    def step(_, state):
        available, assignment = state
        flat = ops.reshape(available, (ops.shape(available)[0], flat_size))
        best = ops.argmax(flat, axis=-1)
        best_value = ops.max(flat, axis=-1)
        row = ops.one_hot(best // num_labels, num_queries, dtype="float32")  # [B, N]
        column = ops.one_hot(best % num_labels, num_labels, dtype="float32")  # [B, M]
        chosen = ops.cast(best_value >= 0.0, "float32")[:, None, None]
        pair = row[:, :, None] * column[:, None, :] * chosen
        assignment = assignment + pair
        retired = ops.maximum(row[:, :, None], column[:, None, :]) * chosen
        available = ops.where(retired > 0.0, -1.0, available)
        return available, assignment

    _, assignment = ops.fori_loop(0, num_labels, step, (available, ops.zeros_like(scores)))
    return ops.stop_gradient(assignment)


def best_match_dice_loss(pred_masks, gt_masks, gt_valid=None, smooth=1.0, matching="max", return_assignment=False):
    """Best-match dice loss L_S between predicted and label masks (OpenSeg eq. 1, sec. 3.3).

    Every label mask is matched to a predicted mask and scored by `1 - dice`; per image the loss is the mean
    over its valid label masks, and the batch loss is the mean over the images with at least one valid label
    mask (0 when none has). Computed in float32 whatever the input dtype.

    Args:
        pred_masks: `[B, N, h, w]` predicted mask probabilities (sigmoid of the mask logits).
        gt_masks: `[B, M, H, W]` label masks in [0, 1], at any resolution; resized to `(h, w)` with area
            interpolation (the fraction of each prediction pixel covered by the label).
        gt_valid: `[B, M]` bool or None. Which label slots are real (the rest is padding). Defaults to `None`
            (all valid).
        smooth: float. Dice smoothing added to numerator and denominator. Defaults to `1.0`.
        matching: `"max"` or `"one_to_one"`. `"max"` is the paper's: each label takes the prediction with the
            highest dice, so several labels may share one query. `"one_to_one"` (beyond the paper) gives each
            label its own query by a greedy in-graph assignment on the dice matrix (see `greedy_assignment`);
            labels left over when the valid labels outnumber the queries fall back to their best query.
            Defaults to `"max"`.
        return_assignment: bool. Also return which query each label mask was matched to (e.g. to read out
            the matched queries' region embeddings, as `SupervisedRegionModel` does). Defaults to `False`.

    Returns:
        A float32 scalar; with `return_assignment`, a tuple `(loss, assignment)` where `assignment` is
        `[B, N, M]` float32 0/1 with the gradient stopped: column m is the one-hot of the query label m was
        scored with (its best query for `"max"`, its own query for `"one_to_one"`), all zeros for invalid
        labels.

    Example:

    >>> pred = np.random.uniform(size=(2, 4, 8, 8)).astype("float32")
    >>> gt = (np.random.uniform(size=(2, 3, 32, 32)) > 0.5).astype("float32")
    >>> float(best_match_dice_loss(pred, gt, gt_valid=np.array([[1, 1, 0], [0, 0, 0]], bool))) > 0
    True
    """
    if matching not in MATCHINGS:
        raise ValueError(f"`matching` must be one of {MATCHINGS}. Received: matching={matching!r}")
    pred_masks = ops.cast(pred_masks, "float32")
    gt_masks = ops.cast(gt_masks, "float32")
    if len(pred_masks.shape) != 4:
        raise ValueError(f"`pred_masks` must be [B, N, h, w]. Received shape {tuple(pred_masks.shape)}.")
    if len(gt_masks.shape) != 4:
        raise ValueError(f"`gt_masks` must be [B, M, H, W]. Received shape {tuple(gt_masks.shape)}.")
    if None not in (pred_masks.shape[0], gt_masks.shape[0]) and pred_masks.shape[0] != gt_masks.shape[0]:
        raise ValueError(
            f"`pred_masks` and `gt_masks` must have the same batch size. Received shapes "
            f"{tuple(pred_masks.shape)} and {tuple(gt_masks.shape)}."
        )
    check_probabilities(pred_masks, "pred_masks")
    check_probabilities(gt_masks, "gt_masks")
    if gt_valid is None:
        gt_valid = ops.ones(ops.shape(gt_masks)[:2], dtype="bool")
    else:
        gt_valid = ops.cast(gt_valid, "bool")
        if len(gt_valid.shape) != 2 or any(
            a is not None and b is not None and a != b for a, b in zip(gt_valid.shape, gt_masks.shape[:2])
        ):
            raise ValueError(
                f"`gt_valid` must be [B, M] matching `gt_masks` {tuple(gt_masks.shape)}. Received shape "
                f"{tuple(gt_valid.shape)}."
            )

    if gt_masks.shape[1] == 0:
        # No label slots at all; keep the graph connected to the predictions so gradients are zeros, not None.
        loss = ops.sum(pred_masks) * 0.0
        if return_assignment:
            return loss, ops.zeros((ops.shape(pred_masks)[0], ops.shape(pred_masks)[1], 0), "float32")
        return loss

    gt_masks = resize(gt_masks, ops.shape(pred_masks)[2:4], axes=(2, 3), interpolation="area")
    dice = dice_matrix(pred_masks, gt_masks, smooth)  # [B, N, M]
    best_dice = ops.max(dice, axis=1)  # [B, M]
    assignment = None
    if matching == "one_to_one":
        assignment = greedy_assignment(dice, gt_valid)
        assigned = ops.sum(assignment, axis=1)  # [B, M], 1 where the label got its own query
        matched_dice = ops.sum(assignment * dice, axis=1)
        best_dice = ops.where(assigned > 0.0, matched_dice, best_dice)

    valid = ops.cast(gt_valid, "float32")
    count = ops.sum(valid, axis=1)  # [B]
    per_image = ops.sum(valid * (1.0 - best_dice), axis=1) / ops.maximum(count, 1.0)
    has_labels = ops.cast(count > 0.0, "float32")
    loss = ops.sum(per_image * has_labels) / ops.maximum(ops.sum(has_labels), 1.0)
    if not return_assignment:
        return loss
    return loss, _matched_queries(dice, valid, assignment)


def _matched_queries(dice, valid, assignment=None):
    """`[B, N, M]` 0/1 (gradient stopped): the query each valid label is scored with by `best_match_dice_loss`.

    Without a one-to-one `assignment` that is each label's best query (argmax of its dice, the first on ties,
    whose dice is the max); with one, the assigned query, and the best one for labels left without.
    """
    dice = ops.stop_gradient(dice)
    best = ops.transpose(ops.one_hot(ops.argmax(dice, axis=1), ops.shape(dice)[1], dtype="float32"), (0, 2, 1))
    if assignment is not None:
        assigned = ops.sum(assignment, axis=1, keepdims=True) > 0.0  # [B, 1, M]
        best = ops.where(assigned, assignment, best)
    return ops.stop_gradient(best * valid[:, None, :])


@keras.saving.register_keras_serializable(package="keras_openseg")
class BestMatchDiceLoss(keras.losses.Loss):
    """Keras loss wrapper of `best_match_dice_loss` (OpenSeg eq. 1).

    Args:
        smooth: float. Dice smoothing. Defaults to `1.0`.
        matching: `"max"` (paper) or `"one_to_one"`. Defaults to `"max"`.
        from_logits: bool. Whether `y_pred` holds mask logits (a sigmoid is applied) instead of
            probabilities. Defaults to `False`.
        name: string. Defaults to `"best_match_dice_loss"`.
        **kwargs: `keras.losses.Loss` arguments (`reduction`, `dtype`).

    Call arguments:
        y_true: `[B, M, H, W]` label masks, or a dict `{"masks": ..., "mask_valid": [B, M]}`.
        y_pred: `[B, N, h, w]` predicted masks, or a dict holding them under `"masks"` or `"mask_logits"`
            (the latter always gets a sigmoid).

    Returns:
        A float32 scalar (the loss is already a batch mean; `sample_weight` is not supported).

    Example:

    >>> loss = BestMatchDiceLoss(from_logits=True)
    >>> y_true = {"masks": np.ones((2, 3, 16, 16)), "mask_valid": np.ones((2, 3), bool)}
    >>> float(loss(y_true, np.zeros((2, 4, 8, 8)))) > 0
    True
    """

    def __init__(self, smooth=1.0, matching="max", from_logits=False, name="best_match_dice_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if matching not in MATCHINGS:
            raise ValueError(f"`matching` must be one of {MATCHINGS}. Received: matching={matching!r}")
        self.smooth = smooth
        self.matching = matching
        self.from_logits = from_logits

    def call(self, y_true, y_pred):
        if isinstance(y_true, dict):
            gt_masks, gt_valid = y_true["masks"], y_true.get("mask_valid")
        else:
            gt_masks, gt_valid = y_true, None
        from_logits = self.from_logits
        if isinstance(y_pred, dict):
            from_logits = "mask_logits" in y_pred
            y_pred = y_pred["mask_logits"] if from_logits else y_pred["masks"]
        pred_masks = ops.sigmoid(ops.cast(y_pred, "float32")) if from_logits else y_pred
        if gt_valid is not None:
            gt_valid = ops.cast(gt_valid, "float32") > 0.5
        return best_match_dice_loss(pred_masks, gt_masks, gt_valid, smooth=self.smooth, matching=self.matching)

    def get_config(self):
        config = super().get_config()
        config.update({"smooth": self.smooth, "matching": self.matching, "from_logits": self.from_logits})
        return config
