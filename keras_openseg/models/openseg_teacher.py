import keras
import numpy as np
from keras import ops

from keras_openseg.losses import best_match_dice_loss
from keras_openseg.losses import scale_loss_for_replicas
from keras_openseg.losses.dice_loss import MATCHINGS
from keras_openseg.models.mask_nms import mask_nms
from keras_openseg.models.openseg_task import OpenSegTask
from keras_openseg.models.openseg_task import check_labels
from keras_openseg.models.openseg_task import frozen_parts


def select_masks(mask_logits, max_masks, score_threshold=0.9, nms_iou=0.5, mask_threshold=0.5, pixel_valid=None):
    """Confident, de-duplicated masks out of the teacher's proposals, best first.

    A proposal's score says how decisively it separates its region from the rest of the image: the IoU of its
    binary mask B (the pixels with p = sigmoid(logit) > `mask_threshold`) with its own probabilities p,

        score = sum_{x in B} p(x) / (|B| + sum_{x not in B} p(x)) = E|S & B| / E|S | B|

    for a random mask S that holds each pixel x with probability p(x). Doubt inside the mask (p < 1 on B) and
    probability it leaves outside (p > 0 off B) both lower it: 1 for a mask certain everywhere, 0 for an
    empty one. It is Mask2Former's mask score (mean p over B; the teacher has no class score to multiply it
    with) times the share of the mask's probability that B holds, |B| / (|B| + sum_{x not in B} p(x)). A
    threshold t keeps the masks that the teacher's own probabilities put at IoU >= t with their binary form,
    on the scale of `nms_iou` and of proposal recall. On the demo's teacher (openseg_shapes/default, 300
    steps, 256 caption-only images) the default 0.9 removed 1.0 of 5.7 masks per image after NMS, 99 % of
    them matching no object at IoU 0.5: 67 % of the kept masks match an object (55 % with no threshold) and
    73.3 % of the objects are found (73.5 %).

    Proposals below `score_threshold` are dropped, the rest de-duplicated by greedy mask NMS, and the best
    `max_masks` kept, so raising `score_threshold` only removes masks. All in `keras.ops`, with fixed shapes.

    Args:
        mask_logits: `[B, N, h, w]` mask logits.
        max_masks: int. Number M of output slots.
        score_threshold: float. Smallest score of a kept mask. Defaults to `0.9`.
        nms_iou: float. Largest IoU with a better kept mask. Defaults to `0.5`.
        mask_threshold: float. Probability above which a pixel belongs to a mask. Defaults to `0.5`.
        pixel_valid: `[B, h, w]` bool or None. The pixels of each image (False on the padding of a canvas),
            which alone take part in the masks and their scores. Defaults to `None` (every pixel).

    Returns:
        A tuple `(probabilities [B, M, h, w] float32, scores [B, M] float32, valid [B, M] bool)`; invalid
        slots hold zeros.
    """
    probabilities = ops.sigmoid(ops.cast(mask_logits, "float32"))
    if pixel_valid is not None:
        probabilities = probabilities * ops.cast(pixel_valid, "float32")[:, None]
    binary = ops.cast(probabilities > mask_threshold, "float32")
    inside = ops.sum(probabilities * binary, axis=(2, 3))
    outside = ops.sum(probabilities * (1.0 - binary), axis=(2, 3))
    # A non-empty mask has |B| >= 1; an empty one scores 0 / max(outside, 1).
    scores = inside / ops.maximum(ops.sum(binary, axis=(2, 3)) + outside, 1.0)
    keep = mask_nms(binary, scores, iou_threshold=nms_iou, score_threshold=score_threshold)
    num_queries = mask_logits.shape[1]
    ranked = ops.where(keep, scores, -1.0)
    if max_masks > num_queries:
        ranked = ops.pad(ranked, [[0, 0], [0, max_masks - num_queries]], constant_values=-2.0)
        probabilities = ops.pad(probabilities, [[0, 0], [0, max_masks - num_queries], [0, 0], [0, 0]])
    top_scores, top = ops.top_k(ranked, k=max_masks)
    valid = top_scores >= 0.0
    selected = ops.take_along_axis(probabilities, top[:, :, None, None], axis=1)
    selected = selected * ops.cast(valid, "float32")[:, :, None, None]
    return selected, ops.where(valid, top_scores, 0.0), valid


@keras.saving.register_keras_serializable(package="keras_openseg")
class OpenSegTeacher(OpenSegTask):
    """The OpenSeg mask branch trained on class-agnostic masks alone, for pseudo labels (sec. 3.3).

    The teacher is an `OpenSegBackbone` trained with the best-match dice loss L_S only (eq. 1) on data with
    segmentation masks (e.g. COCO panoptic). `pseudo_label` then turns its proposals on caption-only images
    into confident, de-duplicated masks, which train the student `OpenSegModel` as if they were labels: its
    output is the student's `y = {"masks", "mask_valid"}`. The region head is carried along but frozen while
    the teacher trains (L_S gives it no gradient). Since the backbone class is the student's,
    `OpenSegModel(backbone=teacher.backbone)` or `OpenSegModel.from_preset(teacher_preset)` starts the
    student from the teacher's mask branch.

    Training batches: `x` = images `[B, H, W, 3]` (or a dict holding `images`), `y = {"masks" [B, M, H, W],
    "mask_valid" [B, M]}`; the loss is reported as the metric `dice_loss`.

    Args:
        backbone: `OpenSegBackbone`.
        preprocessor: `OpenSegPreprocessor` or None. Defaults to `None`.
        matching: `"max"` or `"one_to_one"`. Label-to-prediction matching of the dice loss. Defaults to
            `"max"`.
        dice_smooth: float. Smoothing of the dice coefficient. Defaults to `1.0`.
        **kwargs: `keras_hub.models.Task` arguments (`name`, `compile`).

    Example:

    ```python
    teacher = OpenSegTeacher.from_architecture("test_tiny")  # a random-init ResNet, 8-d embeddings
    images = np.random.randint(0, 256, (2, 64, 64, 3)).astype("uint8")
    masks = np.zeros((2, 1, 64, 64), "float32")
    masks[:, 0, 16:48, 16:48] = 1.0
    teacher.fit(images, {"masks": masks, "mask_valid": np.ones((2, 1), bool)}, epochs=1)
    y = teacher.pseudo_label(images, max_masks=4)  # masks [2, 4, 64, 64], mask_valid [2, 4], scores [2, 4]
    student = OpenSegModel(teacher.backbone, teacher.preprocessor)
    words = {"word_embeddings": np.random.normal(size=(2, 3, 8)), "word_valid": np.ones((2, 3), bool)}
    student.fit({"images": images, **words}, {"masks": y["masks"], "mask_valid": y["mask_valid"]}, epochs=1)
    ```
    """

    def __init__(self, backbone, preprocessor=None, matching="max", dice_smooth=1.0, **kwargs):
        if matching not in MATCHINGS:
            raise ValueError(f"`matching` must be one of {MATCHINGS}. Received: matching={matching!r}")
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)

        # === Layers ===
        self.dice_loss_tracker = keras.metrics.Mean(name="dice_loss")

        # === Config ===
        self.matching = matching
        self.dice_smooth = dice_smooth

    def fit(self, *args, **kwargs):
        """`keras.Model.fit` with the region-only parts frozen: L_S gives them no gradient (sec. 3.3).

        These are the region head and, with `region_shape_embedding`, the mask shape embedding. They are
        unfrozen again afterwards, so a student built on this backbone trains them.
        """
        with frozen_parts(self.backbone.region_head, getattr(self.backbone, "mask_shape_embedding", None)):
            return super().fit(*args, **kwargs)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        check_labels(y, type(self).__name__)
        masks = ops.sigmoid(ops.cast(y_pred["mask_logits"], "float32"))
        dice = best_match_dice_loss(
            masks, y["masks"], y.get("mask_valid"), smooth=self.dice_smooth, matching=self.matching
        )
        self.dice_loss_tracker.update_state(dice)
        # Keras sums the replicas' gradients under tf.distribute: each replica reports loss / R.
        return scale_loss_for_replicas(self._add_regularization(dice))

    def pseudo_label(self, images, max_masks=32, score_threshold=0.9, nms_iou=0.5, mask_threshold=0.5, batch_size=8):
        """Confident, de-duplicated masks for caption-only images, as student labels (sec. 3.3).

        Each proposal is scored by how decisively it separates its region (the IoU of its binary mask with
        its own probabilities, see `select_masks`); proposals under `score_threshold` are dropped,
        overlapping ones removed by greedy mask NMS (`nms_iou`), and the best `max_masks` are returned,
        binarized at `mask_threshold` at the image resolution.

        Args:
            images: `[B, H, W, 3]` array or tensor, one `[H, W, 3]` image or a list of images of different
                sizes; raw pixels.
            max_masks: int. Number M of mask slots per image. Defaults to `32`.
            score_threshold: float. Smallest score of a kept mask. Defaults to `0.9`.
            nms_iou: float. Largest IoU a kept mask may have with a better one. Defaults to `0.5`.
            mask_threshold: float. Probability above which a pixel is in a mask. Defaults to `0.5`.
            batch_size: int. Images per forward pass. Defaults to `8`.

        Returns:
            A dict of numpy arrays, ready as the student's `y`: `masks` `[B, M, H, W]` float32 0/1 at the
            image resolution, `mask_valid` `[B, M]` bool and `scores` `[B, M]` float32 (best first; invalid
            slots are empty with score 0). For a list of images, `masks` is a list of `[M, H, W]` arrays.
        """
        if not isinstance(max_masks, int) or max_masks < 1:
            raise ValueError(f"`max_masks` must be a positive int. Received: max_masks={max_masks!r}")
        masks, valid, scores = [], [], []
        stacked, chunks = self._run_backbone(images, batch_size)
        for canvas, outputs in chunks:
            pixel_valid = canvas.pixel_valid(outputs["mask_logits"].shape[2:])  # the padding takes no part
            probabilities, chunk_scores, chunk_valid = select_masks(
                outputs["mask_logits"], max_masks, score_threshold, nms_iou, mask_threshold, pixel_valid=pixel_valid
            )
            for image_masks in canvas.restore(probabilities):
                masks.append((image_masks > mask_threshold).astype("float32"))
            valid.extend(np.asarray(ops.convert_to_numpy(chunk_valid)))
            scores.extend(np.asarray(ops.convert_to_numpy(chunk_scores)))
        return {
            "masks": np.stack(masks) if stacked else masks,
            "mask_valid": np.stack(valid),
            "scores": np.stack(scores).astype("float32"),
        }

    def get_config(self):
        config = super().get_config()
        config.update({"matching": self.matching, "dice_smooth": self.dice_smooth})
        return config
