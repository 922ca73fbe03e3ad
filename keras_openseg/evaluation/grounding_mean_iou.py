"""Grounding mIoU: mIoU when each image is queried only with the classes of its ground truth (paper sec. 4.3)."""

import numpy as np

from keras_openseg.evaluation.mean_iou import MeanIoU
from keras_openseg.evaluation.mean_iou import to_numpy


def grounded_predictions(logits, y_true, ignore_label=255, query_labels=None):
    """Per-pixel argmax over only the queries whose class is present in each image's ground truth.

    This turns the full-vocabulary logits of `OpenSegModel.segment` (or `segmentation_logits`) into the
    predictions of the grounding setting of paper sec. 4.3, where the text queries of an image are exactly the
    classes its ground truth contains; the model still has to localize them.

    Args:
        logits: tensor or array `[B, Q, H, W]`. Per-query logits at the resolution of `y_true`.
        y_true: int tensor `[B, H, W]`. Ground-truth class ids; `ignore_label` pixels are skipped.
        ignore_label: int or None. Label value that is not a class. Defaults to 255.
        query_labels: int array `[Q]` or None. The class id each query stands for (several queries may name one
            class, e.g. the non-VOC names that mean background; `NO_CLASS` = -1 for a query of no class).
            Defaults to None: query q is class q.

    Host-side (numpy): only the logits of the present classes enter the argmax.

    Returns:
        int32 numpy array `[B, H, W]` of class ids (query ids mapped through `query_labels`). Images with no present
        class get `query_labels[0]` everywhere, which no pixel of theirs is scored against.

    Example:
    >>> import numpy as np
    >>> logits = np.array([[[[3.0]], [[2.0]], [[1.0]]]])  # [1, 3, 1, 1]: query 0 wins over the full vocabulary
    >>> y_true = np.array([[[2]]])                           # but only class 2 is in the ground truth
    >>> int(grounded_predictions(logits, y_true)[0, 0, 0])
    2
    """
    logits = to_numpy(logits)
    if logits.ndim != 4:
        raise ValueError(f"`logits` must be [B, Q, H, W], got shape {logits.shape}.")
    y_true = to_numpy(y_true).astype(np.int64)
    num_queries = logits.shape[1]
    if query_labels is None:
        query_labels = np.arange(num_queries)
    query_labels = np.asarray(query_labels, np.int64)
    if query_labels.shape != (num_queries,):
        raise ValueError(f"`query_labels` must have shape [{num_queries}] (one per query), got {query_labels.shape}.")
    if y_true.shape != (logits.shape[0],) + logits.shape[2:]:
        raise ValueError(f"`y_true` must be [B, H, W] matching `logits` {logits.shape}, got shape {y_true.shape}.")
    predictions = np.full(y_true.shape, query_labels[0], np.int32)
    for b, labels in enumerate(y_true):
        present = np.unique(labels)
        if ignore_label is not None:
            present = present[present != ignore_label]
        allowed = np.flatnonzero(np.isin(query_labels, present))
        if allowed.size:
            predictions[b] = query_labels[allowed[np.argmax(logits[b, allowed], axis=0)]]
    return predictions


class GroundingMeanIoU(MeanIoU):
    """Grounding mIoU (paper sec. 4.3): `MeanIoU` of predictions restricted to each image's ground-truth classes.

    `update_state` takes the full-vocabulary logits and restricts the argmax itself (`grounded_predictions`), so
    the same model outputs feed both `MeanIoU` and this metric. The confusion matrix is accumulated over the
    dataset exactly as for `MeanIoU`; only the queries differ per image.

    Args:
        num_classes: int. Number of classes C of the ground truth.
        ignore_label: int or None. True-label value to skip. Defaults to 255.
        class_names: list of str or None. Names for `per_class_iou_table`. Defaults to None.

    Example:
    >>> import numpy as np
    >>> metric = GroundingMeanIoU(num_classes=3)
    >>> logits = np.array([[[[3.0, 0.0]], [[1.0, 2.0]], [[2.0, 1.0]]]])  # [1, 3, 1, 2]
    >>> metric.update_state([[[2, 1]]], logits)  # class 0 is absent, so query 0 may not win
    >>> metric.result()
    1.0
    """

    def update_state(self, y_true, logits, query_labels=None):
        """Adds pixels. `y_true [B, H, W]` int labels; `logits [B, Q, H, W]`; `query_labels` as in
        `grounded_predictions`."""
        predictions = grounded_predictions(logits, y_true, self.ignore_label, query_labels)
        super().update_state(y_true, predictions)
