"""`keras-openseg pseudo-label`: a teacher's masks for caption-only images (paper sec. 3.3).

OpenSeg's student learns masks from human labels and from pseudo labels: a teacher trained on segmentation
data alone (`keras-openseg train --teacher`) predicts confident, de-duplicated masks for images that only
have captions (Localized Narratives), and the student trains on both kinds, sampled with equal probability
(`keras-openseg train --pseudo-labels DIR`).

    keras-openseg pseudo-label --teacher teacher/preset --dataset localized_narratives/coco --output pseudo

The output folder holds shards (`chunk-00000`, ... : `tf.data.Dataset.save` folders of image, masks,
mask_valid and captions) and, once every shard is written, the index `pseudo_labels.json`;
`keras_openseg.data.load_pseudo_labels(DIR)` reads it. A killed run started again skips the finished shards.
"""

import argparse
import glob
import itertools
import json
import os
import shutil
import sys

INDEX_FILE = "pseudo_labels.json"  # what keras_openseg.data.load_pseudo_labels looks for


def write_pseudo_labels(
    teacher,
    dataset,
    output,
    image_size=640,
    batch_size=8,
    max_masks=32,
    shard_size=512,
    num_examples=None,
    verbose=1,
    **pseudo_label_kwargs,
):
    """Labels every image of `dataset` with `teacher` into resumable shards under `output`.

    Images are resized so that their long side is `image_size` and padded to a square for the teacher; the
    stored image is the resized one (without padding) with the teacher's binary masks and the captions.
    Shard `i` holds examples `[i * shard_size, (i + 1) * shard_size)` of `dataset` in its order, so the order
    must be deterministic (tfds with `shuffle_files=False`). Each shard is written under a temporary name and
    renamed when complete; a new call skips the complete shards without reading their images through the
    teacher again, and returns at once when the index exists.

    Args:
        teacher: `OpenSegTeacher` (or any object with `pseudo_label(images, max_masks=..., **kwargs)`).
        dataset: `tf.data.Dataset` of dicts with "image" uint8 `[H, W, 3]` and optional "captions".
        output: str. Output folder (created).
        image_size: int. Long side of the stored images (a multiple of 32 suits the teacher). Defaults to
            `640`.
        batch_size: int. Images per teacher call. Defaults to `8`.
        max_masks: int. Mask slots per image. Defaults to `32`.
        shard_size: int. Examples per shard. Defaults to `512`.
        num_examples: int or None. Size of `dataset`, for the progress bar. Defaults to `None`.
        verbose: int. 1 shows a progress bar, 0 nothing. Defaults to `1`.
        **pseudo_label_kwargs: passed to `teacher.pseudo_label` (`score_threshold`, `nms_iou`, ...).

    Returns:
        The index (dict): `chunks`, `examples`, `image_size`, `max_masks`.

    Example:

    ```python
    teacher = keras_openseg.OpenSegTeacher.from_preset("teacher/preset")
    images = tfds.load("localized_narratives/coco", split="train", shuffle_files=False)
    write_pseudo_labels(teacher, images, "pseudo", image_size=640)
    student_source = keras_openseg.data.load_pseudo_labels("pseudo")
    ```
    """
    import keras
    import tensorflow as tf

    from keras_openseg.data.pseudo_labels import _label_batch
    from keras_openseg.data.pseudo_labels import _save_chunk

    for name, value in (
        ("image_size", image_size),
        ("batch_size", batch_size),
        ("max_masks", max_masks),
        ("shard_size", shard_size),
    ):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")
    index_path = os.path.join(output, INDEX_FILE)
    if os.path.exists(index_path):
        with open(index_path, encoding="utf-8") as file:
            return json.load(file)
    spec = dataset.element_spec
    if not isinstance(spec, dict) or "image" not in spec:
        raise ValueError(f"`dataset` elements must be dicts with an 'image'. Received: {spec}")
    has_captions = "captions" in spec
    os.makedirs(output, exist_ok=True)
    for partial in glob.glob(os.path.join(output, "*.partial")):
        shutil.rmtree(partial)  # a shard that a killed run left half-written
    done = _complete_shards(output)

    def fit_image(example):
        image = example["image"]
        shape = tf.cast(tf.shape(image)[:2], tf.float32)
        size = tf.maximum(tf.cast(tf.round(shape * image_size / tf.reduce_max(shape)), tf.int32), 1)
        resized = tf.cast(tf.round(tf.image.resize(image, size)), tf.uint8)
        fitted = {"padded": tf.image.pad_to_bounding_box(resized, 0, 0, image_size, image_size), "size": size}
        if has_captions:
            fitted["captions"] = example["captions"]
        return fitted

    progress = keras.utils.Progbar(num_examples, verbose=verbose, unit_name="image") if verbose else None
    if progress is not None and done:
        progress.update(done * shard_size)
    examples = dataset.skip(done * shard_size).map(fit_image, num_parallel_calls=tf.data.AUTOTUNE)
    examples = examples.as_numpy_iterator()
    shard_index, labeled_count = done, done * shard_size
    while True:
        shard = list(itertools.islice(examples, shard_size))
        if not shard:
            break
        labeled = []
        for start in range(0, len(shard), batch_size):
            batch = shard[start : start + batch_size]
            labeled.extend(_label_batch(teacher, batch, image_size, max_masks, pseudo_label_kwargs))
            labeled_count += len(batch)
            if progress is not None:
                progress.update(labeled_count)
        name = os.path.join(output, f"chunk-{shard_index:05d}")
        _save_chunk(labeled, name + ".partial", has_captions)
        os.replace(name + ".partial", name)
        shard_index += 1
    if shard_index == 0:
        raise ValueError("`dataset` is empty: there is nothing to pseudo-label.")
    index = {"chunks": shard_index, "examples": labeled_count, "image_size": image_size, "max_masks": max_masks}
    partial_index = index_path + ".partial"
    with open(partial_index, "w", encoding="utf-8") as file:
        json.dump(index, file)
    os.replace(partial_index, index_path)
    return index


def _complete_shards(output):
    """Number of consecutive complete shards `chunk-00000`, `chunk-00001`, ... in `output`."""
    count = 0
    while os.path.isdir(os.path.join(output, f"chunk-{count:05d}")):
        count += 1
    return count


def add_arguments(parser):
    """Adds the `pseudo-label` flags to an argparse parser."""
    parser.add_argument("--teacher", required=True, help="OpenSegTeacher preset (dir or handle)")
    parser.add_argument(
        "--dataset", required=True, help="tfds name of the caption-only images, e.g. localized_narratives/coco"
    )
    parser.add_argument("--output", required=True, help="folder for the shards and the index")
    parser.add_argument("--split", default="train", help="split to label (default train)")
    parser.add_argument("--data-dir", default=None, help="tfds data directory")
    parser.add_argument("--image-size", type=int, default=640, help="long side of the stored images (default 640)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per teacher call (default 8)")
    parser.add_argument("--max-masks", type=int, default=32, help="mask slots per image (default 32)")
    parser.add_argument(
        "--score-threshold", type=float, default=0.5, help="smallest score of a kept mask (default 0.5)"
    )
    parser.add_argument("--nms-iou", type=float, default=0.5, help="largest IoU with a better kept mask (default 0.5)")
    parser.add_argument("--shard-size", type=int, default=512, help="examples per shard (default 512)")
    parser.add_argument("--limit", type=int, default=None, help="label only the first N examples")
    return parser


def run(args):
    """Loads the teacher and the images, writes the pseudo labels; returns the exit status."""
    import tensorflow_datasets as tfds

    import keras_openseg.datasets  # noqa: F401  (registers the package's tfds builders)
    from keras_openseg.models import OpenSegTeacher

    try:
        teacher = OpenSegTeacher.from_preset(args.teacher)
        builder = tfds.builder(args.dataset, data_dir=args.data_dir)
        builder.download_and_prepare()
        # A fixed order: shard i must hold the same examples in every run.
        dataset = builder.as_dataset(split=args.split, shuffle_files=False)
        keep = [key for key in ("image", "captions") if key in builder.info.features]
        dataset = dataset.map(lambda example: {key: example[key] for key in keep})
        num_examples = builder.info.splits[args.split].num_examples
        if args.limit is not None:
            dataset, num_examples = dataset.take(args.limit), min(args.limit, num_examples)
        index = write_pseudo_labels(
            teacher,
            dataset,
            args.output,
            image_size=args.image_size,
            batch_size=args.batch_size,
            max_masks=args.max_masks,
            shard_size=args.shard_size,
            num_examples=num_examples,
            score_threshold=args.score_threshold,
            nms_iou=args.nms_iou,
        )
    except (OSError, ValueError) as error:
        print(f"keras-openseg pseudo-label: {error}", file=sys.stderr)
        return 2
    print(f"{index['examples']} pseudo-labeled images in {index['chunks']} shards under {args.output}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="keras-openseg pseudo-label", description=__doc__.splitlines()[0])
    sys.exit(run(add_arguments(parser).parse_args()))
