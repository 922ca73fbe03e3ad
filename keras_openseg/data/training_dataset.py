"""The training input pipeline of OpenSeg (tf.data; feeds `model.fit` on every Keras backend)."""

import logging

import numpy as np
import tensorflow as tf

from keras_openseg.data import augmentation
from keras_openseg.data import masks as masks_lib
from keras_openseg.data.training_source import TrainingSource

logger = logging.getLogger(__name__)


def make_training_dataset(
    sources,
    table,
    image_size=640,
    batch_size=8,
    max_masks=32,
    max_words=16,
    keep_prob=0.5,
    mask_size=None,
    scale_range=(0.8, 1.2),
    flip=True,
    seed=None,
    shuffle_buffer=1000,
    repeat=True,
    drop_remainder=True,
    mask_classes=False,
    hue_rotation=0.0,
):
    """Builds the `(x, y)` batches that `OpenSegModel.fit` trains on, mixing one or more sources.

    Per example (paper sec. 3-4): scale jitter in `scale_range` and a random `image_size` crop (or pad), a
    random horizontal flip, class-agnostic masks of the largest `max_masks` segments (crowd segments are not
    targets), one caption drawn at random, its words (precomputed, see `caption_words_for`) kept each with
    probability `keep_prob` (at least one is kept when the caption has any; fresh every epoch), at most
    `max_words` of them in random order, and their embeddings gathered from `table`. Sources are sampled
    with probability proportional to their weights (equal by default, as in the paper). Every shape is static
    and the last partial batch is dropped, as TPUs need.

    Randomness comes from `seed` through stateless ops and `Dataset.random`, so a seed gives the same
    batches on every run, while each pass over the data comes in another order and draws new crops, captions
    and word drops. With `repeat` (what `train` uses) every iterator of the dataset gives the same batches;
    without it each iterator is one epoch with its own draws.

    Args:
        sources: list of `TrainingSource`, or one. A bare `tf.data.Dataset` without captions is accepted too.
        table: `keras_openseg.text.WordEmbeddingTable` (`.ids(words)`, `.embeddings` [V, E]). Caption words
            that are not in the table are dropped (a warning counts them).
        image_size: int. Side S of the square training images. Defaults to `640` (the paper's).
        batch_size: int. B. Defaults to `8`.
        max_masks: int. M mask slots per image. Defaults to `32`.
        max_words: int. K word slots per image. Defaults to `16`.
        keep_prob: float in (0, 1]. kp, the probability of keeping each caption word. Defaults to `0.5`.
        mask_size: int or None. Side of the label masks. The mask loss area-resizes label masks to the
            prediction size (stride 4), so `image_size // 4` gives it the same targets (area fractions in
            [0, 1] instead of 0/1) for 16x less memory and time; at 640 px with many mask slots the
            full-size masks are the pipeline's main cost. None: `image_size`. Defaults to `None`.
        scale_range: (float, float). Scale jitter of the long side relative to `image_size`.
            Defaults to `(0.8, 1.2)`.
        flip: bool. Random horizontal flips. Defaults to `True`.
        seed: int or None. Makes the pipeline deterministic. Defaults to `None`.
        shuffle_buffer: int. Examples in each source's shuffle buffer; 0 disables shuffling.
            Defaults to `1000`.
        repeat: bool. Repeat every source forever (then pass `steps_per_epoch` to `fit`); otherwise the
            dataset ends with its first exhausted source. Defaults to `True`.
        drop_remainder: bool. Drop the last partial batch. Defaults to `True`.
        mask_classes: bool. Also give each mask slot its class, for closed-vocabulary supervision
            (`SupervisedRegionModel`, `TrainingConfig(supervision="labels")`): y then holds "mask_classes"
            int32 [B, M], the `category_id` of each slot's segment as the panoptic source stores it
            (openseg_shapes: 1-based indices into its metadata `class_names`; COCO: COCO's category ids),
            -1 for invalid slots and for every slot of "masks" (pseudo labels) and caption-only sources.
            A panoptic source must then have `segments["category_id"]`. Defaults to `False`.
        hue_rotation: float in [0, 1]. Beyond the paper, off by default: the probability that an example's
            hue is rotated by a random angle (`augmentation.random_hue_rotation`); a rotated example's
            caption then loses its words naming a chromatic colour (`augmentation.CHROMATIC_COLOUR_WORDS`,
            made false by the rotation). Meant to stop colour being a shortcut for the other words of a
            caption (a "circle" seen only in red, blue and yellow is also a circle in purple); on
            openseg_shapes it lowered the mIoU instead (benchmarks/README.md). `0.0` leaves the pipeline's
            draws exactly as without it. Defaults to `0.0`.

    Returns:
        `tf.data.Dataset` of `(x, y)`: x = {"images" float32 [B, S, S, 3] in 0..255, "padding_mask" float32
        [B, S, S] (1 on the image's pixels, 0 on the bottom / right padding of a small image; the model ignores
        the padding, as at inference), "word_embeddings" float32 [B, K, E], "word_valid" bool [B, K]},
        y = {"masks" float32 [B, M, S, S] of 0/1, "mask_valid" bool [B, M]} (and "mask_classes" int32 [B, M]
        with `mask_classes=True`).

    Example:
    ```python
    source = TrainingSource.from_tfds("openseg_shapes/default", "train", CaptionWordExtractor())
    table = WordEmbeddingTable.build(caption_vocabulary(source.caption_words), text_embedder)
    dataset = make_training_dataset([source], table, image_size=128, batch_size=16, seed=0)
    model.fit(dataset, epochs=10, steps_per_epoch=200)
    ```
    """
    if isinstance(sources, (TrainingSource, tf.data.Dataset)):
        sources = [sources]
    sources = [
        s if isinstance(s, TrainingSource) else TrainingSource(s, name=f"source {i}") for i, s in enumerate(sources)
    ]
    if not sources:
        raise ValueError("`sources` must hold at least one TrainingSource. Received an empty list.")
    if not 0.0 < keep_prob <= 1.0:
        raise ValueError(f"`keep_prob` must be in (0, 1]. Received: keep_prob={keep_prob}")
    for name, value in (
        ("image_size", image_size),
        ("batch_size", batch_size),
        ("max_masks", max_masks),
        ("max_words", max_words),
    ):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")
    if mask_size is not None and (not isinstance(mask_size, (int, np.integer)) or mask_size < 1):
        raise ValueError(f"`mask_size` must be a positive int or None. Received: mask_size={mask_size!r}")
    if not 0 < scale_range[0] <= scale_range[1]:
        raise ValueError(f"`scale_range` must be (low, high) with 0 < low <= high. Received: {scale_range}")
    if (
        not isinstance(hue_rotation, (int, float, np.number))
        or isinstance(hue_rotation, bool)
        or not 0 <= hue_rotation <= 1
    ):
        raise ValueError(f"`hue_rotation` must be a probability in [0, 1]. Received: hue_rotation={hue_rotation!r}")

    embeddings = tf.constant(np.asarray(table.embeddings, np.float32))
    datasets = []
    for index, source in enumerate(sources):
        source_seed = None if seed is None else seed + 7919 * index
        prepare = _example_fn(
            source,
            table,
            embeddings,
            int(image_size),
            int(max_masks),
            int(max_words),
            float(keep_prob),
            tuple(scale_range),
            flip,
            None if mask_size is None else int(mask_size),
            bool(mask_classes),
            float(hue_rotation),
        )
        dataset = _shuffled_passes(source.dataset, shuffle_buffer, source_seed, repeat)
        redraw = _redraws_per_iterator(source_seed, repeat)
        # A stream of stateless seeds over the whole run (every pass draws new ones): per-example randomness that
        # a seed reproduces, whatever order the parallel map finishes in. With a seed and `repeat`, every iterator
        # of the dataset gives the same stream (see `_shuffled_passes`).
        randoms = tf.data.Dataset.random(
            seed=None if source_seed is None else source_seed + 1,
            rerandomize_each_iteration=redraw,
        ).batch(2)
        dataset = tf.data.Dataset.zip((dataset, randoms))
        datasets.append(dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True))

    if len(datasets) == 1:
        dataset = datasets[0]
    else:
        weights = np.array([s.weight for s in sources], np.float64)
        dataset = tf.data.Dataset.sample_from_datasets(
            datasets,
            weights=list(weights / weights.sum()),
            seed=seed,
            stop_on_empty_dataset=True,
            rerandomize_each_iteration=_redraws_per_iterator(seed, repeat),
        )
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    dataset = dataset.map(_split_inputs_and_targets)
    dataset = dataset.prefetch(tf.data.AUTOTUNE)
    if seed is not None:
        # Every stage in order, whatever tfds or a source chose for its own reads (a parallel interleave without
        # a seed reads files in completion order): a seeded pipeline gives the same batches on every run.
        options = tf.data.Options()
        options.deterministic = True
        dataset = dataset.with_options(options)
    return dataset


def _redraws_per_iterator(seed, repeat):
    """Whether each iterator (or pass) draws its own random order: without a seed, or one pass per iterator.

    With a seed and `repeat`, nothing is drawn per iterator (see `_shuffled_passes`).
    """
    return seed is None or not repeat


def _shuffled_passes(dataset, shuffle_buffer, seed, repeat):
    """The source's passes (one per iterator, or forever with `repeat`), shuffled.

    With a seed and `repeat`, one shuffle runs over the repeated stream with the seed fixed
    (`reshuffle_each_iteration=False`): consecutive passes come out in different orders (the buffer keeps drawing),
    nothing is re-drawn per iterator or per pass, and every iterator of the dataset gives the same examples.
    tf.data's `reshuffle_each_iteration` and `rerandomize_each_iteration` instead draw each iterator's (and each
    repeated pass's) seeds from one generator that all iterators of the dataset share, so the batches depended on
    how many iterators were made before: Keras' `fit` makes one to build the model and another to train.
    """
    # Without a seed, or one pass per iterator (Keras' epochs without `steps_per_epoch`), each iterator draws its
    # own order once, when it is made; with a seed and `repeat`, the shuffle runs over the repeated stream.
    redraw = _redraws_per_iterator(seed, repeat)
    if repeat and not redraw:
        dataset = dataset.repeat()
    if shuffle_buffer:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=redraw)
    return dataset.repeat() if repeat and redraw else dataset


def _split_inputs_and_targets(batch):
    x = {key: batch[key] for key in ("images", "padding_mask", "word_embeddings", "word_valid")}
    y = {key: batch[key] for key in ("masks", "mask_valid", "mask_classes") if key in batch}
    return x, y


def _example_fn(
    source,
    table,
    embeddings,
    image_size,
    max_masks,
    max_words,
    keep_prob,
    scale_range,
    flip,
    mask_size,
    mask_classes=False,
    hue_rotation=0.0,
):
    """The per-example map function of one source."""
    kind = source.kind
    if mask_classes and kind == "panoptic":
        segments_spec = source.dataset.element_spec.get("segments")
        if not isinstance(segments_spec, dict) or "category_id" not in segments_spec:
            raise ValueError(
                f"`mask_classes=True` needs the class of every segment, but the panoptic source {source.name!r} "
                "has no `segments['category_id']`: give its segments their category ids, or train without "
                "classes (mask_classes=False, TrainingConfig(supervision='captions'))."
            )
    has_captions = source.caption_words and "captions" in source.dataset.element_spec
    words = _CaptionWordLookup(source.caption_words, table, source.name) if has_captions else None
    embedding_dim = int(embeddings.shape[-1])
    if hue_rotation > 0.0:
        colour_ids = np.asarray(table.ids(list(augmentation.CHROMATIC_COLOUR_WORDS)), np.int32).reshape(-1)
        colour_ids = tf.constant(colour_ids[colour_ids >= 0], tf.int32)

    def prepare(example, seed):
        geometry_seed, caption_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
        image = example["image"]
        geometry = augmentation.random_geometry(geometry_seed, tf.shape(image), image_size, scale_range, flip)
        output = {
            "images": augmentation.apply_geometry(tf.cast(image, tf.float32), geometry, image_size),
            "padding_mask": augmentation.padding_mask(geometry, image_size),
        }
        dropped_words = None
        if hue_rotation > 0.0:
            # Its own stream, folded from the example's seed: the other draws stay those of hue_rotation=0.
            hue_seed = tf.random.experimental.stateless_fold_in(seed, 1)
            output["images"], rotated = augmentation.random_hue_rotation(hue_seed, output["images"], hue_rotation)
            dropped_words = tf.where(rotated, colour_ids, tf.fill(tf.shape(colour_ids), -1))

        if kind == "panoptic":
            ids = masks_lib.panoptic_ids(example["panoptic_image"])
            ids = augmentation.apply_geometry(ids[..., None], geometry, image_size, method="nearest")[..., 0]
            segments = example["segments"]
            packed = masks_lib.pack_segment_masks(
                ids,
                segments["id"],
                tf.logical_not(tf.cast(segments["is_crowd"], tf.bool)),
                max_masks,
                mask_size,
                segment_classes=segments["category_id"] if mask_classes else None,
            )
            output["masks"], output["mask_valid"] = packed[:2]
            if mask_classes:
                output["mask_classes"] = packed[2]
        elif kind == "masks":
            stack = tf.cast(example["masks"], tf.float32)
            valid = example.get("mask_valid", tf.ones(tf.shape(stack)[:1], tf.bool))
            # One empty slot more, so that a stack of zero masks still has a channel to resize.
            stack = tf.concat([stack, tf.zeros(tf.concat([[1], tf.shape(stack)[1:]], 0))], axis=0)
            valid = tf.concat([tf.cast(valid, tf.bool), [False]], axis=0)
            stack = augmentation.apply_geometry(tf.transpose(stack, [1, 2, 0]), geometry, image_size)
            stack = tf.transpose(stack, [2, 0, 1]) >= 0.5
            output["masks"], output["mask_valid"] = masks_lib.pack_masks(stack, valid, max_masks, mask_size)
        else:
            output["masks"] = tf.zeros([max_masks, mask_size or image_size, mask_size or image_size], tf.float32)
            output["mask_valid"] = tf.zeros([max_masks], tf.bool)
        if mask_classes and kind != "panoptic":
            # Pseudo labels and caption-only examples have no class: no mask of theirs takes part in the CE.
            output["mask_classes"] = tf.fill([max_masks], -1)

        if words is not None:
            word_ids = words.sample(example["captions"], caption_seed, keep_prob, max_words, dropped_words)
        else:
            word_ids = tf.zeros([0], tf.int32)
        count = tf.shape(word_ids)[0]
        word_valid = tf.range(max_words) < count
        padded = tf.pad(word_ids, [[0, max_words - count]])
        word_embeddings = tf.gather(embeddings, padded) * tf.cast(word_valid, tf.float32)[:, None]
        output["word_embeddings"] = tf.ensure_shape(word_embeddings, [max_words, embedding_dim])
        output["word_valid"] = tf.ensure_shape(word_valid, [max_words])
        return output

    return prepare


class _CaptionWordLookup:
    """Caption string -> its word ids in the table, as TF lookups (built once per source)."""

    def __init__(self, caption_words, table, source_name):
        captions = list(caption_words)
        rows, missing, total = [], set(), set()
        for caption in captions:
            caption_words_list = list(caption_words[caption])
            total.update(caption_words_list)
            ids = np.asarray(table.ids(caption_words_list), np.int32).reshape(-1) if caption_words_list else []
            missing.update(w for w, i in zip(caption_words_list, ids) if i < 0)
            rows.append([int(i) for i in dict.fromkeys(ids) if i >= 0])
        if missing:
            logger.warning(
                "%d of the %d distinct caption words of %s are not in the word table and are dropped, e.g. %s.",
                len(missing),
                len(total),
                source_name,
                sorted(missing)[:5],
            )
        splits = np.cumsum([0] + [len(r) for r in rows]).astype(np.int64)
        self.flat_ids = tf.constant(np.array([i for r in rows for i in r], np.int32).reshape(-1))
        self.row_splits = tf.constant(splits)
        self.rows = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(captions, tf.string), tf.range(len(captions), dtype=tf.int64)
            ),
            default_value=-1,
        )

    def sample(self, captions, seed, keep_prob, max_words, dropped=None):
        """Word ids of one random caption, each kept with probability `keep_prob`, at most `max_words`.

        `dropped`: optional int32 ids removed from the caption before the draws (-1 entries match nothing).
        """
        seeds = tf.random.experimental.stateless_split(seed, num=4)
        num_captions = tf.shape(captions)[0]
        choice = tf.random.stateless_uniform([], seeds[0], 0, tf.maximum(num_captions, 1), dtype=tf.int32)
        caption = tf.concat([captions, [""]], axis=0)[tf.where(num_captions > 0, choice, num_captions)]
        row = self.rows.lookup(caption)  # -1: not a known caption (or no caption), no words
        safe_row = tf.maximum(row, 0)
        start = tf.where(row >= 0, self.row_splits[safe_row], 0)
        end = tf.where(row >= 0, self.row_splits[safe_row + 1], 0)
        ids = self.flat_ids[start:end]
        if dropped is not None:
            ids = tf.boolean_mask(ids, tf.logical_not(tf.reduce_any(ids[:, None] == dropped[None, :], axis=1)))
        count = tf.size(ids)
        keep = tf.random.stateless_uniform([count], seeds[1]) < keep_prob
        # Word dropping must not empty a caption that has words: then keep one of them at random.
        rescue = tf.random.stateless_uniform([], seeds[2], 0, tf.maximum(count, 1), dtype=tf.int32)
        keep = keep | ((tf.range(count) == rescue) & tf.logical_not(tf.reduce_any(keep)))
        kept = tf.boolean_mask(ids, keep)
        order = tf.argsort(tf.random.stateless_uniform(tf.shape(kept), seeds[3]))
        return tf.gather(kept, order)[:max_words]
