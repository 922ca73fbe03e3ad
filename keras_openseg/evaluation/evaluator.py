"""The evaluation loop: stream a tfds split through `OpenSegModel.segment` and accumulate the paper's metrics."""

import inspect

import keras
import numpy as np
import tensorflow as tf  # the tf.data input pipeline (decode, resize, pad, batch) only

from keras_openseg.evaluation.background_rule import normalize_class_name
from keras_openseg.evaluation.grounding_mean_iou import GroundingMeanIoU
from keras_openseg.evaluation.mean_iou import NO_CLASS
from keras_openseg.evaluation.mean_iou import MeanIoU
from keras_openseg.evaluation.mean_iou import to_numpy
from keras_openseg.evaluation.proposal_recall import ProposalRecall
from keras_openseg.evaluation.queries import class_queries
from keras_openseg.evaluation.queries import embed_class_queries
from keras_openseg.text.prompts import resolve_prompts

RECALL_THRESHOLDS = (0.5, 0.7, 0.9)


def evaluate(
    model,
    dataset,
    class_names,
    *,
    prompts=None,
    synonyms=None,
    use_proposals=True,
    ignore_label=255,
    batch_size=4,
    image_size=None,
    max_examples=None,
    background_label=None,
    background_class_names=None,
    held_out_class_names=None,
    proposal_recall=True,
    gt_masks=False,
    confusion=False,
    progress=True,
):
    """Evaluates an OpenSeg model on a semantic / panoptic split: mIoU, Grounding mIoU and proposal recall.

    The class names are embedded once (names x prompt templates x synonyms) with `model.text_embedder`; each
    batch, a list of images, goes through `model.segment(images, text_embeddings=..., name_valid=...,
    use_proposals=...)`, which resizes and pads them as the model's image converter says and returns logits at
    each image's size. Logits at another size than the labels are resized bilinearly before the argmax, so
    labels are always scored at their original resolution.

    * `miou` (paper sec. 4.1): argmax over all queried classes, `MeanIoU` over the dataset.
    * `grounding_miou` (paper sec. 4.3): argmax over only the classes present in each image's ground truth.
    * `gt_mask_miou` (paper table 4, the ground-truth-mask oracle), with `gt_masks=True`: each ground-truth
      segment of the image is a mask s; its region embedding is the mask pooling of the model's pixel
      embeddings F_z with it (`keras_openseg.layers.MaskPooling`), and eq. (6) (`segmentation_logits`) with
      the ground-truth masks as s labels every pixel. The segments are the connected label values of
      `semantic`, split by `panoptic_image` where the examples have it (one mask per instance).
    * `recall@t` (paper table 1), when the examples have panoptic segments (`panoptic_image` + `segments`):
      fraction of non-crowd segments matched by a proposal with IoU >= t. The proposal logits come from
      `segment(..., return_mask_logits=True)` when the model's `segment` takes that argument, otherwise from
      a second backbone pass over the same canvas.

    Args:
        model: an `OpenSegModel`, or any object with `text_embedder.embed(texts, templates=None)` and
            `segment(images: list, text_embeddings=, name_valid=, use_proposals=)` returning a dict whose
            `logits` is a list of per-image `[Q, H, W]` arrays (optionally `labels` `[H, W]` and `mask_logits`
            `[N, H, W]`, also per image).
        dataset: `tf.data.Dataset` of unbatched tfds examples with `image` and `semantic` `[H, W, 1]` (semantic
            datasets) and/or `panoptic_image` + `segments` (openseg_shapes, coco_panoptic_captions).
        class_names: list of str. Names of the label values of `semantic`, in order.
        prompts: None, str or list of str. Prompt templates (`keras_openseg.text.prompts.resolve_prompts`, the
            resolver `keras-openseg evaluate` and `segment --prompts` use too): None or "none" queries the bare
            names, as the training caption words were embedded; "default" / "single" name the package's
            template sets; any other str is a text file of templates. The results record what was used
            (`prompts`, `prompt_templates`). Defaults to None.
        synonyms: None, bool, str or dict. Synonym ensembles (`class_queries`); a class scores the max over its
            names. Defaults to None (one name per class).
        use_proposals: bool. False evaluates the per-pixel ablation of `segment`. Defaults to True.
        ignore_label: int or None. Label value of `semantic` that is not scored. Defaults to 255.
        batch_size: int. Images per `segment` call. `segment` returns C x H x W float32 logits per image on the
            host; lower it for large vocabularies (A-847). Defaults to 4.
        image_size: int or None. Scales each image so its longer side is `image_size` before `segment` (which
            may resize again to its converter's size). None hands the images over at their own size.
            Defaults to None.
        max_examples: int or None. Evaluates only the first examples. Defaults to None (the whole split).
        background_label: int or None. A class of `class_names` that is not queried by name (VOC's
            "background"); pixels won by `background_class_names` count as this class, and the means exclude it
            (`miou_with_background` includes it). Defaults to None.
        background_class_names: list of str or None. Extra names queried whose pixels count as background (paper
            sec. 4.1: the PC-59 names outside VOC, see `background_rule`); names equal to a class are skipped.
            Without `background_label` their pixels count as no class (a miss). Defaults to None.
        held_out_class_names: list of str or None. Classes unseen in training (openseg_shapes metadata); adds
            `seen_miou` / `held_out_miou` and their grounding versions. Defaults to None.
        proposal_recall: bool. Computes proposal recall when the data and the model allow. Defaults to True.
        gt_masks: bool. Also scores the ground-truth-mask oracle (`gt_mask_miou`, paper table 4); needs
            `semantic` labels and a model with a `backbone` whose outputs hold `pixel_embeddings` (one more
            backbone pass per batch). Defaults to False.
        confusion: bool. Also returns the pixel confusion matrices (`confusion_matrix`, and with `gt_masks`
            `gt_mask_confusion_matrix`): `[C, C + 1]` int64 counts of (true class, predicted class) pixels, the
            last column pixels predicted as no class. Defaults to False.
        progress: bool. Shows a `keras.utils.Progbar`. Defaults to True.

    Returns:
        dict: `miou`, `grounding_miou`, `pixel_accuracy`, `per_class_iou` and `per_class_grounding_iou`
        (`{name: IoU or None}`) when the data has `semantic`; `recall@0.5`, `recall@0.7`, `recall@0.9`,
        `num_segments`, `num_proposals` when recall was computed; `num_examples`, `num_classes`, `num_names`,
        `prompts` and `prompt_templates` (the templates used, or None for bare names).
        With `gt_masks`: `gt_mask_miou`, `gt_mask_pixel_accuracy`, `per_class_gt_mask_iou`, `num_gt_masks`
        (and `seen_gt_mask_miou` / `held_out_gt_mask_miou`). Means are NaN when no class has an IoU.

    Example:
    ```python
    import tensorflow_datasets as tfds
    import keras_openseg

    model = keras_openseg.OpenSegModel.from_preset("path/to/preset")
    builder = tfds.builder("openseg_shapes")
    results = keras_openseg.evaluation.evaluate(
        model, builder.as_dataset(split="validation"), builder.info.metadata["class_names"], prompts="default"
    )
    print(keras_openseg.evaluation.format_miou_table({"OpenSeg": {"openseg_shapes": results}}))
    ```
    """
    class_names = [str(name) for name in class_names]
    num_classes = len(class_names)
    if not num_classes:
        raise ValueError("`class_names` must name at least one class.")
    if background_label is not None and not 0 <= int(background_label) < num_classes:
        raise ValueError(f"`background_label` must index `class_names` (0..{num_classes - 1}), got {background_label}.")
    if int(batch_size) < 1:
        raise ValueError(f"`batch_size` must be a positive int, got {batch_size!r}.")
    if image_size is not None and int(image_size) < 1:
        raise ValueError(f"`image_size` must be a positive int or None, got {image_size!r}.")
    if getattr(model, "text_embedder", None) is None:
        raise ValueError("`model` has no `text_embedder`: load a preset that includes one to evaluate.")
    spec = dataset.element_spec
    if not isinstance(spec, dict) or "image" not in spec:
        raise ValueError(f"`dataset` must yield tfds example dicts with an 'image' feature, got {spec!r}.")
    if len(spec["image"].shape) != 3:
        raise ValueError(f"`dataset` must be unbatched ('image' of rank 3), got 'image' shape {spec['image'].shape}.")
    try:
        templates, prompt_record = resolve_prompts(prompts)
    except ValueError as error:
        raise ValueError(f"`prompts`: {error}") from None
    has_semantic = "semantic" in spec
    has_panoptic = proposal_recall and "panoptic_image" in spec and "segments" in spec
    if not has_semantic and not has_panoptic:
        raise ValueError("`dataset` has neither 'semantic' labels nor 'panoptic_image' + 'segments': nothing to score.")
    if gt_masks and not has_semantic:
        raise ValueError(
            "`gt_masks=True` scores the ground-truth segments by class: `dataset` needs 'semantic' labels."
        )
    if gt_masks and getattr(model, "backbone", None) is None:
        raise ValueError("`gt_masks=True` pools the model's pixel embeddings: `model` needs a `backbone`.")
    with_instances = gt_masks and "panoptic_image" in spec and "segments" in spec

    # One text query per class (except an unnamed background) and per background name; `query_labels` maps
    # each query to the label value it predicts.
    class_labels = [c for c in range(num_classes) if c != background_label]
    query_names = [class_names[c] for c in class_labels]
    known = {normalize_class_name(name) for name in class_names}
    extra_names = [n for n in (background_class_names or ()) if normalize_class_name(n) not in known]
    background = NO_CLASS if background_label is None else int(background_label)
    query_labels = np.array(class_labels + [background] * len(extra_names), np.int64)
    queries = class_queries(query_names + list(extra_names), synonyms)
    text_embeddings, name_valid = embed_class_queries(model.text_embedder, queries, templates=templates)

    # The means leave out an unnamed background class (PAS-20 is the mean over the 20 VOC classes).
    mean_classes = [c for c in range(num_classes) if c != background_label]
    miou = MeanIoU(num_classes, ignore_label, class_names)
    grounding_miou = GroundingMeanIoU(num_classes, ignore_label, class_names)
    recall = ProposalRecall(RECALL_THRESHOLDS)
    gt_mask_miou = MeanIoU(num_classes, ignore_label, class_names)
    num_gt_masks = 0
    num_proposals = None

    if max_examples is not None:
        dataset = dataset.take(int(max_examples))
    cardinality = int(dataset.cardinality())
    target = cardinality if cardinality >= 0 else None
    batches = _input_pipeline(
        dataset, int(batch_size), image_size, ignore_label, has_semantic, has_panoptic or with_instances
    )
    progbar = keras.utils.Progbar(target, unit_name="image", stateful_metrics=["mIoU"]) if progress else None
    num_examples = 0
    for batch in batches.as_numpy_iterator():
        # The model pads, resizes and restores each image itself: it gets the unpadded images as a list.
        images = [image[:h, :w] for image, (h, w) in zip(batch["images"], batch["image_shape"])]
        outputs = _segment(model, images, text_embeddings, name_valid, use_proposals, has_panoptic, has_semantic)
        if has_panoptic:
            mask_logits = outputs.get("mask_logits")
            if mask_logits is None:
                mask_logits = _proposal_logits(model, images)
        if gt_masks:
            segments = [_gt_segments(batch, i, ignore_label, with_instances) for i in range(len(images))]
            oracle_logits = gt_mask_logits(model, images, [m for m, _ in segments], text_embeddings, name_valid)
        for i, image in enumerate(images):
            label_size = tuple(int(s) for s in batch["label_shape"][i])
            if has_semantic:
                y_true = batch["semantic"][i, : label_size[0], : label_size[1]]
                image_logits = _resize(outputs["logits"][i], label_size)
                if image.shape[:2] == label_size and "labels" in outputs:
                    winners = to_numpy(outputs["labels"][i])
                else:
                    winners = np.argmax(image_logits, axis=0)
                miou.update_state(y_true, query_labels[winners])
                # Grounding: the argmax over the logits of the classes present in the image only.
                present = np.unique(y_true)
                allowed = np.flatnonzero(np.isin(query_labels, present[present != ignore_label]))
                if allowed.size:  # an image with only ignored pixels scores nothing
                    grounding_miou.update_state(
                        y_true[None], image_logits[allowed][None], query_labels=query_labels[allowed]
                    )
            if gt_masks:
                masks, covered = segments[i]
                num_gt_masks += len(masks)
                if len(masks):
                    oracle = np.where(covered, query_labels[np.argmax(oracle_logits[i], axis=0)], NO_CLASS)
                    gt_mask_miou.update_state(y_true, oracle)
            if has_panoptic:
                segment_masks, ignore_mask = _panoptic_masks(batch, i, label_size)
                image_masks = _resize(mask_logits[i], label_size)
                num_proposals = image_masks.shape[0]
                recall.update_state(segment_masks[None], image_masks[None], ignore_mask=ignore_mask[None])
            num_examples += 1
        if progbar is not None:
            progbar.update(num_examples, values=[("mIoU", miou.result(mean_classes))] if has_semantic else None)
    if progbar is not None and target is None:
        progbar.update(num_examples, finalize=True)

    results = {"num_examples": num_examples, "num_classes": num_classes, "num_names": int(name_valid.sum())}
    results.update(prompt_record)
    if has_semantic:
        results.update(
            miou=miou.result(mean_classes),
            grounding_miou=grounding_miou.result(mean_classes),
            pixel_accuracy=miou.pixel_accuracy(),
            per_class_iou=miou.per_class_iou_table(),
            per_class_grounding_iou=grounding_miou.per_class_iou_table(),
        )
        if background_label is not None:
            results["miou_with_background"] = miou.result()
        if confusion:
            results["confusion_matrix"] = miou.confusion_matrix.copy()
            if gt_masks:
                results["gt_mask_confusion_matrix"] = gt_mask_miou.confusion_matrix.copy()
        if gt_masks:
            results.update(
                gt_mask_miou=gt_mask_miou.result(mean_classes),
                gt_mask_pixel_accuracy=gt_mask_miou.pixel_accuracy(),
                per_class_gt_mask_iou=gt_mask_miou.per_class_iou_table(),
                num_gt_masks=num_gt_masks,
            )
        if held_out_class_names:
            held_out = {normalize_class_name(n) for n in held_out_class_names}
            unseen = [c for c in mean_classes if normalize_class_name(class_names[c]) in held_out]
            seen = [c for c in mean_classes if c not in unseen]
            results.update(
                seen_miou=miou.result(seen),
                held_out_miou=miou.result(unseen),
                seen_grounding_miou=grounding_miou.result(seen),
                held_out_grounding_miou=grounding_miou.result(unseen),
            )
            if gt_masks:
                results.update(
                    seen_gt_mask_miou=gt_mask_miou.result(seen), held_out_gt_mask_miou=gt_mask_miou.result(unseen)
                )
    if has_panoptic:
        results.update({f"recall@{t}": r for t, r in recall.result().items()})
        results.update(num_segments=recall.num_segments, num_proposals=num_proposals)
    return results


def _segment(model, images, text_embeddings, name_valid, use_proposals, want_mask_logits, want_logits=True):
    parameters = inspect.signature(model.segment).parameters
    kwargs = {}
    if want_mask_logits and "return_mask_logits" in parameters:
        kwargs["return_mask_logits"] = True
    if not want_logits and "return_logits" in parameters:
        kwargs["return_logits"] = False  # recall only: no C x H x W logits to carry
    return model.segment(
        images, text_embeddings=text_embeddings, name_valid=name_valid, use_proposals=use_proposals, **kwargs
    )


def _proposal_logits(model, images):
    """Per-image mask logits `[N, H, W]` at image size, from a second backbone pass.

    Only for models whose `segment` cannot return its `mask_logits`; it runs the backbone on the same canvas
    `segment` builds (`keras_openseg.models.image_batching.ImageCanvas`).
    """
    backbone = getattr(model, "backbone", None)
    if backbone is None:
        raise ValueError(
            "Proposal recall needs the mask logits: `model.segment` returned no 'mask_logits' and `model` has no "
            "`backbone`. Pass `proposal_recall=False`."
        )
    from keras_openseg.models.image_batching import ImageCanvas

    canvas = ImageCanvas(images, getattr(getattr(model, "preprocessor", None), "image_converter", None))
    return canvas.restore(backbone.predict_on_batch(canvas.inputs)["mask_logits"])


def _gt_segments(batch, i, ignore_label, with_instances):
    """The ground-truth segments of example i: masks `[M, H, W]` bool (one per label value present, split by
    panoptic instance when `with_instances`) and the pixels they cover `[H, W]` (all but ignored ones)."""
    label_size = tuple(int(s) for s in batch["label_shape"][i])
    semantic = batch["semantic"][i, : label_size[0], : label_size[1]]
    covered = semantic >= 0 if ignore_label is None else (semantic != ignore_label) & (semantic >= 0)
    keys = semantic.astype(np.int64)
    if with_instances:
        keys = keys * (1 << 24) + batch["panoptic_ids"][i, : label_size[0], : label_size[1]]
    values = np.unique(keys[covered])
    return (keys[None] == values[:, None, None]) & covered[None], covered


def gt_mask_logits(model, images, masks, text_embeddings, name_valid=None):
    """Eq. (6) with ground-truth masks as the proposals s (paper table 4's oracle readout).

    The region embedding of mask n is the mask pooling of the model's pixel embeddings F_z with it,
    z_n = sum_p s_n(p) F_z(p) (the mask resized to F_z's grid with the exact box filter, zero over the padding
    of the canvas; the backbone runs with the canvas's padding mask, so F_z is that of the image whatever it
    is batched with), computed by the backbone's own `pool_regions` where it has one (its pooling part, its
    `region_pooling` and its mask shape embedding: the masks replace the proposals and nothing else changes),
    else by `MaskPooling`; and logit_c(p) = sum_n s_n(p) <w_c, z^_n> (`segmentation_logits`).

    Args:
        model: an `OpenSegModel` (a `backbone` whose outputs hold `pixel_embeddings`, a `preprocessor`).
        images: list of `[H, W, 3]` raw images.
        masks: list of `[M_i, h_i, w_i]` masks (bool or weights), one per image, at any size of the same aspect
            (e.g. the label map's); the logits come at that size.
        text_embeddings: `[C, E]` or `[C, S, E]` text embeddings.
        name_valid: `[C, S]` bool or None. Defaults to None.

    Returns:
        list of `[C, h_i, w_i]` float32 numpy logits (all zero where no mask covers a pixel).
    """
    from keras import ops

    from keras_openseg.layers import MaskPooling
    from keras_openseg.layers.resizing import resize
    from keras_openseg.models import segmentation_logits
    from keras_openseg.models.image_batching import ImageCanvas

    converter = getattr(getattr(model, "preprocessor", None), "image_converter", None)
    canvas = ImageCanvas(images, converter)
    pixel_embeddings = ops.cast(model.backbone.predict_on_batch(canvas.inputs)["pixel_embeddings"], "float32")
    feature_size = tuple(int(s) for s in pixel_embeddings.shape[1:3])
    pooling = getattr(model.backbone, "pool_regions", None) or MaskPooling()
    logits = []
    for index, (image_masks, fitted) in enumerate(zip(masks, canvas.fitted_sizes)):
        image_masks = np.asarray(image_masks, "float32")
        if not len(image_masks):
            logits.append(np.zeros((len(text_embeddings),) + image_masks.shape[1:], "float32"))
            continue
        on_canvas = np.zeros((1, len(image_masks)) + tuple(canvas.canvas.shape[1:3]), "float32")
        fitted_masks = image_masks[None]
        if image_masks.shape[1:] != tuple(fitted):
            fitted_masks = ops.convert_to_numpy(resize(fitted_masks, fitted, axes=(2, 3), interpolation="area"))
        on_canvas[:, :, : fitted[0], : fitted[1]] = fitted_masks
        on_grid = resize(ops.convert_to_tensor(on_canvas), feature_size, axes=(2, 3), interpolation="area")
        region_embeddings = pooling(on_grid, pixel_embeddings[index : index + 1])
        image_logits = segmentation_logits(image_masks[None], region_embeddings, text_embeddings, name_valid)
        logits.append(np.asarray(ops.convert_to_numpy(image_logits))[0])
    return logits


def _resize(maps, size):
    """`[K, h, w]` maps as a numpy array, resized bilinearly to `size` when they are not that size."""
    if tuple(int(s) for s in maps.shape[-2:]) == tuple(size):
        return to_numpy(maps)
    resized = keras.ops.image.resize(
        keras.ops.cast(maps, "float32"), size, interpolation="bilinear", data_format="channels_first"
    )
    return to_numpy(resized)


def _panoptic_masks(batch, i, label_size):
    """Class-agnostic ground-truth segments `[M, H, W]` and the void + crowd pixels `[H, W]` of example i."""
    ids = batch["panoptic_ids"][i, : label_size[0], : label_size[1]]
    segment_ids = batch["segment_ids"][i]
    is_crowd = batch["segment_is_crowd"][i]
    listed = segment_ids[segment_ids > 0]  # id 0 is void and pads the segment lists
    kept = segment_ids[(segment_ids > 0) & ~is_crowd]
    gt_masks = ids[None] == kept[:, None, None]
    ignore_mask = ~np.isin(ids, listed) | np.isin(ids, segment_ids[(segment_ids > 0) & is_crowd])
    return gt_masks, ignore_mask


def _input_pipeline(dataset, batch_size, image_size, ignore_label, has_semantic, has_panoptic):
    """tf.data: tfds examples -> optionally resized, padded batches with the sizes needed to undo the padding."""
    pad_label = -1 if ignore_label is None else int(ignore_label)

    def prepare(example):
        image = tf.cast(example["image"], tf.float32)
        image_shape = tf.shape(image)[:2]
        if image_size is not None:
            scale = float(image_size) / tf.cast(tf.reduce_max(image_shape), tf.float32)
            image_shape = tf.maximum(tf.cast(tf.round(tf.cast(image_shape, tf.float32) * scale), tf.int32), 1)
            image = tf.image.resize(image, image_shape, method="bilinear", antialias=True)
        features = {"images": image, "image_shape": image_shape}
        if has_semantic:
            features["semantic"] = tf.cast(example["semantic"][..., 0], tf.int32)
            features["label_shape"] = tf.shape(features["semantic"])
        if has_panoptic:
            rgb = tf.cast(example["panoptic_image"], tf.int32)
            features["panoptic_ids"] = rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]
            features["segment_ids"] = tf.cast(example["segments"]["id"], tf.int32)
            features["segment_is_crowd"] = tf.cast(example["segments"]["is_crowd"], tf.bool)
            features.setdefault("label_shape", tf.shape(features["panoptic_ids"]))
        return features

    padding_values = {
        "images": 0.0,
        "image_shape": 0,
        "label_shape": 0,
        "semantic": pad_label,
        "panoptic_ids": 0,
        "segment_ids": 0,
        "segment_is_crowd": False,
    }
    batches = dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    spec = batches.element_spec
    padding_values = {key: tf.constant(padding_values[key], spec[key].dtype) for key in spec}
    return batches.padded_batch(batch_size, padding_values=padding_values).prefetch(1)
