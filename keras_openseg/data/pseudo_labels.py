"""Teacher pseudo-labels as a training source (paper sec. 3.3: teacher -> pseudo-labels -> student)."""

import json

import keras
import numpy as np
import tensorflow as tf
from etils import epath

_DONE = "pseudo_labels.json"


def pseudo_label_dataset(
    teacher, dataset, path, image_size, batch_size=8, max_masks=32, chunk_size=512, **pseudo_label_kwargs
):
    """Runs a teacher over a dataset once, saves its masks under `path` and returns them as a dataset.

    OpenSeg trains its student on caption-only images (Localized Narratives) with masks predicted by a teacher
    that learned masks alone. This writes those masks: each image is resized so that its long side is
    `image_size`, padded to a square for the teacher, and stored at its resized size (without the padding)
    with the teacher's binary masks and, when present, its captions. A finished `path` is reused as is: the
    teacher runs once per dataset.

    Args:
        teacher: an `OpenSegTeacher` (or any object with `pseudo_label(images, max_masks=..., **kwargs)`
            returning a dict with "masks" [B, M, H, W] and "mask_valid" [B, M]).
        dataset: `tf.data.Dataset` of examples with "image" uint8 [H, W, 3] and optional "captions".
        path: path-like. Folder for the saved chunks (created).
        image_size: int. Long side of the stored images; a multiple of 32 suits the teacher's backbone.
        batch_size: int. Teacher batch. Defaults to `8`.
        max_masks: int. Masks per image asked from the teacher. Defaults to `32`.
        chunk_size: int. Examples per saved chunk (bounds the memory in use). Defaults to `512`.
        **pseudo_label_kwargs: passed to `teacher.pseudo_label` (e.g. `score_threshold`).

    Returns:
        `tf.data.Dataset` of {"image" uint8 [h, w, 3], "masks" uint8 [M, h, w], "mask_valid" bool [M]
        (, "captions")}: a `TrainingSource` dataset of the "masks" kind.
    """
    path = epath.Path(path)
    if (path / _DONE).exists():
        return load_pseudo_labels(path)
    spec = dataset.element_spec
    if not isinstance(spec, dict) or "image" not in spec:
        raise ValueError(f"`dataset` elements must be dicts with an 'image'. Received: {spec}")
    has_captions = "captions" in spec

    def fit_image(example):
        image = example["image"]
        shape = tf.cast(tf.shape(image)[:2], tf.float32)
        size = tf.maximum(tf.cast(tf.round(shape * image_size / tf.reduce_max(shape)), tf.int32), 1)
        resized = tf.cast(tf.round(tf.image.resize(image, size)), tf.uint8)
        output = {"padded": tf.image.pad_to_bounding_box(resized, 0, 0, image_size, image_size), "size": size}
        if has_captions:
            output["captions"] = example["captions"]
        return output

    path.mkdir(parents=True, exist_ok=True)
    chunk, batch, chunk_index = [], [], 0
    examples = dataset.map(fit_image, num_parallel_calls=tf.data.AUTOTUNE).as_numpy_iterator()
    while True:
        example = next(examples, None)
        if example is not None:
            batch.append(example)
        if batch and (len(batch) == batch_size or example is None):
            chunk.extend(_label_batch(teacher, batch, image_size, max_masks, pseudo_label_kwargs))
            batch = []
        if chunk and (len(chunk) >= chunk_size or example is None):
            _save_chunk(chunk, path / f"chunk-{chunk_index:05d}", has_captions)
            chunk, chunk_index = [], chunk_index + 1
        if example is None:
            break
    if chunk_index == 0:
        raise ValueError("`dataset` is empty: there is nothing to pseudo-label.")
    (path / _DONE).write_text(json.dumps({"chunks": chunk_index, "image_size": image_size, "max_masks": max_masks}))
    return load_pseudo_labels(path)


def load_pseudo_labels(path):
    """The dataset that `pseudo_label_dataset` saved under `path`.

    Args:
        path: path-like.

    Returns:
        `tf.data.Dataset` (see `pseudo_label_dataset`).
    """
    path = epath.Path(path)
    if not (path / _DONE).exists():
        raise ValueError(f"`path` holds no finished pseudo-labels ({path / _DONE} is missing): {path}")
    chunks = json.loads((path / _DONE).read_text())["chunks"]
    dataset = None
    for index in range(chunks):
        part = tf.data.Dataset.load(str(path / f"chunk-{index:05d}"), compression="GZIP")
        dataset = part if dataset is None else dataset.concatenate(part)
    return dataset


def _label_batch(teacher, batch, image_size, max_masks, pseudo_label_kwargs):
    images = np.stack([example["padded"] for example in batch]).astype(np.float32)
    labels = teacher.pseudo_label(images, max_masks=max_masks, **pseudo_label_kwargs)
    masks = keras.ops.convert_to_numpy(labels["masks"]).astype(np.float32)
    valid = keras.ops.convert_to_numpy(labels["mask_valid"]).astype(bool)
    if masks.shape[-2:] != (image_size, image_size):  # a teacher that answers at another resolution
        masks = np.moveaxis(tf.image.resize(np.moveaxis(masks, 1, -1), [image_size, image_size]).numpy(), -1, 1)
    labeled = []
    for i, example in enumerate(batch):
        height, width = example["size"]
        item = {
            "image": example["padded"][:height, :width],
            "masks": (masks[i, :, :height, :width] >= 0.5).astype(np.uint8),
            "mask_valid": valid[i],
        }
        if "captions" in example:
            item["captions"] = example["captions"]
        labeled.append(item)
    return labeled


def _save_chunk(examples, chunk_path, has_captions):
    signature = {
        "image": tf.TensorSpec([None, None, 3], tf.uint8),
        "masks": tf.TensorSpec([None, None, None], tf.uint8),
        "mask_valid": tf.TensorSpec([None], tf.bool),
    }
    if has_captions:
        signature["captions"] = tf.TensorSpec([None], tf.string)
    part = tf.data.Dataset.from_generator(lambda: iter(examples), output_signature=signature)
    part.save(str(chunk_path), compression="GZIP")
