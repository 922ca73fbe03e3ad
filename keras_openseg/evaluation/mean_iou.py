"""Streaming mean intersection-over-union from a confusion matrix (paper sec. 4.1)."""

import keras
import numpy as np

# A prediction that names no class of the vocabulary (e.g. a "background" query when the ground truth has no
# background class). It counts as a miss for the true class and as a prediction of no class.
NO_CLASS = -1


def to_numpy(x):
    """Backend tensor, numpy array or nested list -> numpy array (host side)."""
    if isinstance(x, np.ndarray):
        return x
    return np.asarray(keras.ops.convert_to_numpy(x))


class MeanIoU:
    """Mean IoU of semantic labels, accumulated over batches in one confusion matrix.

    The confusion matrix `[C, C + 1]` counts (true class, predicted class) pixel pairs over the whole dataset;
    the extra column holds predictions of `NO_CLASS` (-1). Pixels whose true label is `ignore_label` are skipped.
    IoU_c = TP_c / (GT_c + Pred_c - TP_c). A class that appears neither in the ground truth nor in the
    predictions has no IoU (NaN) and stays out of the mean, as in the standard ADE20k / Pascal evaluation; a
    class predicted but never present has IoU 0 and counts.

    Host-side (numpy) metric: evaluation is not part of the compiled graph. Inputs may be backend tensors or
    numpy arrays. The method names follow `keras.metrics.Metric`.

    Args:
        num_classes: int. Number of classes C; true labels lie in [0, C) or equal `ignore_label`.
        ignore_label: int or None. True-label value to skip (None: skip nothing). Defaults to 255.
        class_names: list of str or None. Names for `per_class_iou_table`. Defaults to None ("0", "1", ...).

    Example:
    >>> metric = MeanIoU(num_classes=2)
    >>> metric.update_state([[0, 0, 1, 255]], [[0, 1, 1, 0]])
    >>> round(metric.result(), 4)  # IoU 0.5 for both classes
    0.5
    """

    def __init__(self, num_classes, ignore_label=255, class_names=None):
        if int(num_classes) < 1:
            raise ValueError(f"`num_classes` must be a positive int, got {num_classes!r}.")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"`class_names` must have `num_classes`={num_classes} entries, got {len(class_names)}.")
        self.num_classes = int(num_classes)
        self.ignore_label = ignore_label
        self.class_names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
        self.reset_state()

    def reset_state(self):
        self.confusion_matrix = np.zeros((self.num_classes, self.num_classes + 1), np.int64)

    def update_state(self, y_true, y_pred):
        """Adds pixels. `y_true` and `y_pred`: int labels of the same shape (e.g. `[B, H, W]`)."""
        y_true = to_numpy(y_true).astype(np.int64)
        y_pred = to_numpy(y_pred).astype(np.int64)
        if y_true.shape != y_pred.shape:
            raise ValueError(f"`y_true` and `y_pred` must have the same shape, got {y_true.shape} and {y_pred.shape}.")
        if self.ignore_label is not None:
            keep = y_true != self.ignore_label
            y_true, y_pred = y_true[keep], y_pred[keep]
        y_true, y_pred = y_true.ravel(), y_pred.ravel()
        c = self.num_classes
        if y_true.size and (y_true.min() < 0 or y_true.max() >= c):
            bad = y_true[(y_true < 0) | (y_true >= c)][0]
            raise ValueError(
                f"`y_true` holds label {bad}, outside [0, {c}) and not the ignore label {self.ignore_label}."
            )
        if y_pred.size and (y_pred.min() < NO_CLASS or y_pred.max() >= c):
            bad = y_pred[(y_pred < NO_CLASS) | (y_pred >= c)][0]
            raise ValueError(f"`y_pred` holds label {bad}; expected values in [0, {c}) or NO_CLASS ({NO_CLASS}).")
        y_pred = np.where(y_pred == NO_CLASS, c, y_pred)
        counts = np.bincount(y_true * (c + 1) + y_pred, minlength=c * (c + 1))
        self.confusion_matrix += counts.reshape(c, c + 1)

    def per_class_iou(self):
        """IoU per class, `[C]` float64; NaN for classes absent from both ground truth and predictions."""
        cm = self.confusion_matrix
        true_positives = np.diag(cm[:, : self.num_classes]).astype(np.float64)
        union = cm.sum(axis=1) + cm[:, : self.num_classes].sum(axis=0) - true_positives
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, true_positives / np.maximum(union, 1), np.nan)

    def per_class_iou_table(self):
        """`{class_name: IoU or None}` in class order (None where the class has no IoU)."""
        return {
            name: (None if np.isnan(iou) else float(iou)) for name, iou in zip(self.class_names, self.per_class_iou())
        }

    def result(self, classes=None):
        """Mean IoU over the classes that have one (NaN when none has), optionally over a subset of class ids."""
        iou = self.per_class_iou()
        if classes is not None:
            iou = iou[np.asarray(list(classes), np.int64)]
        iou = iou[~np.isnan(iou)]
        return float(iou.mean()) if iou.size else float("nan")

    def pixel_accuracy(self):
        """Fraction of non-ignored pixels labelled correctly."""
        total = self.confusion_matrix.sum()
        correct = np.trace(self.confusion_matrix[:, : self.num_classes])
        return float(correct / total) if total else float("nan")
