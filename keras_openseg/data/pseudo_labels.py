"""Teacher pseudo labels as a training source (paper sec. 3.3: teacher -> pseudo labels -> student).

OpenSeg's student learns masks from human labels and from pseudo labels: a teacher trained on segmentation data
alone predicts confident, de-duplicated masks for images that only have captions (Localized Narratives).
`write_pseudo_labels` runs the teacher over such a dataset once into a folder of shards; `load_pseudo_labels`
reads the folder back as a "masks" `TrainingSource` dataset. `keras-openseg pseudo-label` is the command line
of the writer.

A folder holds shards `chunk-00000`, `chunk-00001`, ... (`tf.data.Dataset.save` folders, GZIP) and, once every
shard is written, the index `pseudo_labels.json` (`{"chunks", "examples", "image_size", "max_masks"}`).
"""

import itertools
import json
import sys

import keras
import numpy as np
import tensorflow as tf
from etils import epath

INDEX_FILE = "pseudo_labels.json"


def write_pseudo_labels(
    teacher,
    dataset,
    output,
    image_size=640,
    batch_size=8,
    max_masks=32,
    shard_size=512,
    num_examples=None,
    verbose="auto",
    **pseudo_label_kwargs,
):
    """Labels every image of `dataset` with `teacher` into resumable shards under `output`.

    Images are resized so that their long side is `image_size` and padded to a square for the teacher; the
    stored image is the resized one (without padding) with the teacher's binary masks and, when present, its
    captions. Shard `i` holds examples `[i * shard_size, (i + 1) * shard_size)` of `dataset` in its order, so
    the order must be deterministic (tfds with `shuffle_files=False`). Each shard is written under a temporary
    name and renamed when complete, the index last: a killed run started again skips the complete shards
    without running the teacher on their images, and a finished folder is returned at once.

    Args:
        teacher: `OpenSegTeacher` (or any object with `pseudo_label(images, max_masks=..., **kwargs)` returning
            a dict with "masks" `[B, M, H, W]` and "mask_valid" `[B, M]`).
        dataset: `tf.data.Dataset` of dicts with "image" uint8 `[H, W, 3]` and optional "captions".
        output: path-like. Output folder (created; a `gs://` path works).
        image_size: int. Long side of the stored images (a multiple of 32 suits the teacher). Defaults to
            `640`.
        batch_size: int. Images per teacher call. Defaults to `8`.
        max_masks: int. Mask slots per image. Defaults to `32`.
        shard_size: int. Examples per shard (bounds the memory in use). Defaults to `512`.
        num_examples: int or None. Size of `dataset`, for the progress bar. Defaults to `None`.
        verbose: "auto", int. 1 shows a live progress bar, 2 one line when done, 0 nothing; "auto" is 1 on a
            terminal and 2 otherwise (a log file gets no cursor or colour codes). Defaults to `"auto"`.
        **pseudo_label_kwargs: passed to `teacher.pseudo_label` (`score_threshold`, `nms_iou`, ...).

    Returns:
        The index (dict): `chunks`, `examples`, `image_size`, `max_masks`.

    Example:

    ```python
    teacher = keras_openseg.OpenSegTeacher.from_preset("runs/teacher/preset")
    images = tfds.load("localized_narratives/coco", split="train", shuffle_files=False)
    write_pseudo_labels(teacher, images, "runs/pl", image_size=640)
    dataset = load_pseudo_labels("runs/pl")  # {"image", "masks", "mask_valid", "captions"}
    ```
    """
    for name, value in (
        ("image_size", image_size),
        ("batch_size", batch_size),
        ("max_masks", max_masks),
        ("shard_size", shard_size),
    ):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")
    output = epath.Path(output)
    index_path = output / INDEX_FILE
    if index_path.exists():
        return json.loads(index_path.read_text())
    spec = dataset.element_spec
    if not isinstance(spec, dict) or "image" not in spec:
        raise ValueError(f"`dataset` elements must be dicts with an 'image'. Received: {spec}")
    has_captions = "captions" in spec
    output.mkdir(parents=True, exist_ok=True)
    for partial in output.glob("*.partial"):
        partial.rmtree()  # a shard that a killed run left half-written
    done = 0
    while (output / _shard_name(done)).is_dir():
        done += 1

    def fit_image(example):
        image = example["image"]
        shape = tf.cast(tf.shape(image)[:2], tf.float32)
        size = tf.maximum(tf.cast(tf.round(shape * image_size / tf.reduce_max(shape)), tf.int32), 1)
        resized = tf.cast(tf.round(tf.image.resize(image, size)), tf.uint8)
        fitted = {"padded": tf.image.pad_to_bounding_box(resized, 0, 0, image_size, image_size), "size": size}
        if has_captions:
            fitted["captions"] = example["captions"]
        return fitted

    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    progress = keras.utils.Progbar(num_examples, verbose=verbose, unit_name="image") if verbose else None
    if progress is not None and done:
        progress.update(done * shard_size)
    examples = dataset.skip(done * shard_size).map(fit_image, num_parallel_calls=tf.data.AUTOTUNE)
    examples = examples.as_numpy_iterator()
    shard_index, labeled_count = done, done * shard_size
    while shard := list(itertools.islice(examples, shard_size)):
        labeled = []
        for start in range(0, len(shard), batch_size):
            batch = shard[start : start + batch_size]
            labeled.extend(_label_batch(teacher, batch, image_size, max_masks, pseudo_label_kwargs))
            labeled_count += len(batch)
            if progress is not None:
                progress.update(labeled_count)
        partial = output / (_shard_name(shard_index) + ".partial")
        _save_shard(labeled, partial, has_captions)
        partial.rename(output / _shard_name(shard_index))
        shard_index += 1
    if shard_index == 0:
        raise ValueError("`dataset` is empty: there is nothing to pseudo-label.")
    index = {"chunks": shard_index, "examples": labeled_count, "image_size": image_size, "max_masks": max_masks}
    partial_index = output / (INDEX_FILE + ".partial")
    partial_index.write_text(json.dumps(index))
    partial_index.rename(index_path)
    return index


def load_pseudo_labels(path):
    """The pseudo labels that `write_pseudo_labels` wrote under `path`, as a dataset.

    Args:
        path: path-like. A folder with a complete index.

    Returns:
        `tf.data.Dataset` of {"image" uint8 `[h, w, 3]`, "masks" uint8 `[M, h, w]`, "mask_valid" bool `[M]`
        (, "captions" string `[C]`)}: a `TrainingSource` dataset of the "masks" kind, in the order written.
    """
    path = epath.Path(path)
    if not (path / INDEX_FILE).exists():
        raise ValueError(f"`path` holds no finished pseudo labels ({path / INDEX_FILE} is missing): {path}")
    chunks = json.loads((path / INDEX_FILE).read_text())["chunks"]
    dataset = None
    for index in range(chunks):
        part = tf.data.Dataset.load(str(path / _shard_name(index)), compression="GZIP")
        dataset = part if dataset is None else dataset.concatenate(part)
    return dataset


def _shard_name(index):
    return f"chunk-{index:05d}"


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


def _save_shard(examples, path, has_captions):
    signature = {
        "image": tf.TensorSpec([None, None, 3], tf.uint8),
        "masks": tf.TensorSpec([None, None, None], tf.uint8),
        "mask_valid": tf.TensorSpec([None], tf.bool),
    }
    if has_captions:
        signature["captions"] = tf.TensorSpec([None], tf.string)
    part = tf.data.Dataset.from_generator(lambda: iter(examples), output_signature=signature)
    part.save(str(path), compression="GZIP")
