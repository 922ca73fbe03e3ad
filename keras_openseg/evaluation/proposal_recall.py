"""Recall of ground-truth segments by class-agnostic mask proposals (paper sec. 4.2, table 1)."""

import keras
import numpy as np

from keras_openseg.evaluation.mean_iou import to_numpy


def binarize_proposals(mask_logits, size=None):
    """Mask logits `[B, N, h, w]` -> boolean proposals `[B, N, H, W]`: sigmoid(logit) > 0.5, i.e. logit > 0.

    The logits are resized bilinearly to `size` = (H, W) on the backend device before thresholding (smoother
    boundaries than thresholding at stride 4 and upsampling the binary mask). They must cover the same image
    extent as the target size (crop any padding first). Returns a numpy bool array.
    """
    if not hasattr(mask_logits, "shape"):
        mask_logits = np.asarray(mask_logits, np.float32)
    if len(mask_logits.shape) != 4:
        raise ValueError(f"`mask_logits` must be [B, N, h, w], got shape {tuple(mask_logits.shape)}.")
    if size is not None and tuple(size) != tuple(mask_logits.shape[2:]):
        mask_logits = keras.ops.image.resize(
            keras.ops.cast(mask_logits, "float32"),
            tuple(int(s) for s in size),
            interpolation="bilinear",
            data_format="channels_first",
        )
    return to_numpy(mask_logits) > 0


class ProposalRecall:
    """Fraction of ground-truth segments that some proposal covers with IoU >= t, for each threshold t.

    Paper table 1: the ground-truth segments are the class-agnostic panoptic segments (crowd regions excluded),
    the proposals are all N predicted masks, binarized at sigmoid > 0.5 at label resolution. A segment counts
    as recalled at t when max over proposals of IoU(proposal, segment) >= t. Pixels of `ignore_mask` (void and
    crowd areas) are removed from every proposal before the IoU, as the COCO panoptic evaluation does.

    Host-side streaming metric; inputs may be backend tensors or numpy. Only the resize of the mask logits to
    label size runs on the backend device; the IoUs are a numpy matmul.

    Args:
        thresholds: tuple of float. IoU thresholds. Defaults to (0.5, 0.7, 0.9).

    Example:
    >>> import numpy as np
    >>> recall = ProposalRecall()
    >>> gt = np.zeros((1, 1, 4, 4), bool); gt[0, 0, :2] = True        # one segment: the top half
    >>> logits = np.full((1, 2, 4, 4), -5.0); logits[0, 0, :3] = 5.0   # proposal 0: the top 3 rows
    >>> recall.update_state(gt, logits)                                 # IoU 8 / 12
    >>> recall.result()
    {0.5: 1.0, 0.7: 0.0, 0.9: 0.0}
    """

    def __init__(self, thresholds=(0.5, 0.7, 0.9)):
        thresholds = tuple(float(t) for t in thresholds)
        if not thresholds or any(not 0.0 < t <= 1.0 for t in thresholds):
            raise ValueError(f"`thresholds` must be IoU values in (0, 1], got {thresholds!r}.")
        self.thresholds = thresholds
        self.reset_state()

    def reset_state(self):
        self.num_segments = 0
        self.num_recalled = np.zeros(len(self.thresholds), np.int64)

    def update_state(self, gt_masks, mask_logits, gt_valid=None, ignore_mask=None):
        """Adds images.

        Args:
            gt_masks: bool `[B, M, H, W]`. Ground-truth segment masks (crowd segments already left out or marked
                invalid).
            mask_logits: float `[B, N, h, w]`. Proposal logits over the same image extent; resized to (H, W).
            gt_valid: bool `[B, M]` or None. Which segments are real (padding is False). Defaults to all.
            ignore_mask: bool `[B, H, W]` or None. Pixels removed from the proposals. Defaults to none.
        """
        gt = to_numpy(gt_masks).astype(bool)
        if gt.ndim != 4:
            raise ValueError(f"`gt_masks` must be [B, M, H, W], got shape {gt.shape}.")
        batch, num_gt, height, width = gt.shape
        if not hasattr(mask_logits, "shape"):
            mask_logits = np.asarray(mask_logits, np.float32)
        if len(mask_logits.shape) != 4 or int(mask_logits.shape[0]) != batch:
            raise ValueError(f"`mask_logits` must be [B={batch}, N, h, w], got shape {tuple(mask_logits.shape)}.")
        proposals = binarize_proposals(mask_logits, (height, width))
        if ignore_mask is not None:
            ignore = to_numpy(ignore_mask).astype(bool)
            if ignore.shape != (batch, height, width):
                raise ValueError(f"`ignore_mask` must be [B, H, W] = {(batch, height, width)}, got {ignore.shape}.")
            proposals &= ~ignore[:, None]
        proposals = proposals.reshape(batch, -1, height * width).astype(np.float32)
        gt = gt.reshape(batch, num_gt, height * width).astype(np.float32)
        # Pixel counts below 2**24 are exact in float32.
        intersection = proposals @ gt.transpose(0, 2, 1)  # [B, N, M]
        union = proposals.sum(-1)[:, :, None] + gt.sum(-1)[:, None, :] - intersection
        iou = np.where(union > 0, intersection / np.maximum(union, 1.0), 0.0)
        valid = gt.sum(-1) > 0
        if gt_valid is not None:
            gt_valid = to_numpy(gt_valid).astype(bool)
            if gt_valid.shape != (batch, num_gt):
                raise ValueError(f"`gt_valid` must be [B, M] = {(batch, num_gt)}, got {gt_valid.shape}.")
            valid &= gt_valid
        best = iou.max(axis=1) if iou.shape[1] else np.zeros((batch, num_gt))
        best = best[valid]
        self.num_segments += int(best.size)
        self.num_recalled += np.array([(best >= t).sum() for t in self.thresholds], np.int64)

    def result(self):
        """`{threshold: recall}`; NaN recalls when no segment was seen."""
        if not self.num_segments:
            return {t: float("nan") for t in self.thresholds}
        return {t: float(n / self.num_segments) for t, n in zip(self.thresholds, self.num_recalled)}
