"""The numpy reference of the mIoU metrics, one for every test that checks them (evaluator, ground-truth-mask oracle,
batch invariance): a confusion matrix over `(y_true, y_pred)` label-map pairs."""

import numpy as np


def numpy_confusion(pairs, num_classes, ignore=255):
    """Confusion matrix `[true, predicted]` (int64) over the pairs; pixels whose true label is `ignore` are left out."""
    confusion = np.zeros((num_classes, num_classes), np.int64)
    for y_true, y_pred in pairs:
        keep = y_true != ignore
        np.add.at(confusion, (y_true[keep], y_pred[keep]), 1)
    return confusion


def numpy_per_class_iou(confusion):
    """Per-class IoU `[C]` of a confusion matrix: true positives over the union (NaN where the union is empty)."""
    tp = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - tp
    return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


def numpy_miou(pairs, num_classes, ignore=255):
    """Mean IoU over the classes with a non-empty union."""
    return float(np.nanmean(numpy_per_class_iou(numpy_confusion(pairs, num_classes, ignore))))
