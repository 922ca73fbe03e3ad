"""The training pipeline: batch contract, word dropping, padding flags, source kinds, mixing, determinism."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_openseg.data import TrainingSource
from keras_openseg.data import caption_vocabulary
from keras_openseg.data import make_training_dataset

WORDS = [f"word{i}" for i in range(40)]


def _source(examples, caption_words=None, name="test"):
    """A source from a list of example dicts (numpy), with the signature inferred from the first."""
    first = examples[0]

    def spec(value):
        value = np.asarray(value)
        dtype = tf.string if value.dtype.kind in "OUS" else tf.as_dtype(value.dtype)
        return tf.TensorSpec([None] * value.ndim, dtype)

    signature = {
        key: ({k: spec(v) for k, v in value.items()} if isinstance(value, dict) else spec(value))
        for key, value in first.items()
    }
    dataset = tf.data.Dataset.from_generator(lambda: iter(examples), output_signature=signature)
    return TrainingSource(dataset, caption_words=caption_words, name=name)


def _caption_examples(count, captions, size=16):
    image = np.full((size, size, 3), 100, np.uint8)
    return [{"image": image, "captions": np.array(captions, object)} for _ in range(count)]


def _panoptic_examples(count, size=16, with_segments=True):
    panoptic = np.zeros((size, size, 3), np.uint8)
    ids = np.array([7, 300], np.int64)
    if with_segments:
        panoptic[: size // 2, :, 0] = 7
        panoptic[size // 2 :, :, 0] = 300 % 256
        panoptic[size // 2 :, :, 1] = 300 // 256
    else:
        ids = np.zeros([0], np.int64)
    return [
        {
            "image": np.full((size, size, 3), 50, np.uint8),
            "panoptic_image": panoptic,
            "segments": {"id": ids, "is_crowd": np.zeros(ids.shape, bool)},
        }
        for _ in range(count)
    ]


def _first(dataset, count=1):
    return [tf.nest.map_structure(lambda t: t.numpy(), batch) for batch in dataset.take(count)]


def _all_words_caption():
    return " ".join(WORDS)


@pytest.mark.slow
def test_batch_of_the_shapes_dataset_has_the_model_contract(shapes_data_dir, extractor, make_table):
    source = TrainingSource.from_tfds("openseg_shapes/tiny", "train", extractor, data_dir=shapes_data_dir, seed=0)
    table = make_table(caption_vocabulary(source.caption_words), embedding_dim=6)
    dataset = make_training_dataset(
        source, table, image_size=32, batch_size=3, max_masks=5, max_words=4, seed=0, shuffle_buffer=8
    )
    x, y = next(iter(dataset))
    expected = {
        "images": ((3, 32, 32, 3), "float32"),
        "padding_mask": ((3, 32, 32), "float32"),
        "word_embeddings": ((3, 4, 6), "float32"),
        "word_valid": ((3, 4), "bool"),
        "masks": ((3, 5, 32, 32), "float32"),
        "mask_valid": ((3, 5), "bool"),
    }
    assert set(x) == {"images", "padding_mask", "word_embeddings", "word_valid"}
    assert set(y) == {"masks", "mask_valid"}
    for key, value in {**x, **y}.items():
        tensor = keras.ops.convert_to_tensor(value)
        assert tuple(keras.ops.shape(tensor)) == expected[key][0], key
        assert keras.backend.standardize_dtype(tensor.dtype) == expected[key][1], key
    assert dataset.element_spec[0]["images"].shape == (3, 32, 32, 3)  # static shapes (TPU)
    images = keras.ops.convert_to_numpy(x["images"])
    assert images.min() >= 0 and images.max() <= 255 and images.max() > 1
    masks, valid = y["masks"].numpy(), y["mask_valid"].numpy()
    assert set(np.unique(masks)) <= {0.0, 1.0}
    assert valid.any(axis=1).all()
    assert np.all(masks[~valid] == 0)
    # Masks of one image never overlap (they come from a panoptic partition).
    assert masks.sum(axis=1).max() <= 1
    assert x["word_valid"].numpy().any(axis=1).all()


@pytest.mark.backend_independent
@pytest.mark.parametrize("keep_prob", [0.3, 0.5])
def test_words_are_kept_with_probability_keep_prob(make_table, keep_prob):
    caption = _all_words_caption()
    source = _source(_caption_examples(400, [caption]), {caption: WORDS})
    dataset = make_training_dataset(
        source,
        make_table(WORDS),
        image_size=16,
        batch_size=100,
        max_masks=2,
        max_words=40,
        keep_prob=keep_prob,
        seed=1,
        repeat=False,
    )
    kept = np.concatenate([x["word_valid"].sum(axis=1) for x, _ in _first(dataset, 4)])
    assert abs(kept.mean() / len(WORDS) - keep_prob) < 0.03


@pytest.mark.backend_independent
def test_word_embeddings_are_rows_of_the_table_and_padding_is_zero(make_table):
    table = make_table(WORDS)
    source = _source(_caption_examples(8, ["a b c"]), {"a b c": ["word3", "word5", "word9"]})
    ((x, _),) = _first(
        make_training_dataset(
            source, table, image_size=16, batch_size=8, max_masks=2, max_words=5, keep_prob=1.0, seed=0
        )
    )
    np.testing.assert_array_equal(x["word_valid"], np.tile([True, True, True, False, False], (8, 1)))
    for row in x["word_embeddings"]:
        distances = np.linalg.norm(row[:3, None] - table.embeddings[None], axis=-1)
        assert set(distances.argmin(axis=1)) == {3, 5, 9}
        np.testing.assert_allclose(distances.min(axis=1), 0.0, atol=1e-6)
        assert np.all(row[3:] == 0)


@pytest.mark.backend_independent
def test_word_dropping_keeps_one_word_and_truncates_to_max_words(make_table):
    caption = _all_words_caption()
    few = _source(_caption_examples(200, ["two words"]), {"two words": ["word1", "word2"]})
    ((x, _),) = _first(
        make_training_dataset(
            few, make_table(WORDS), image_size=16, batch_size=200, max_masks=1, max_words=3, keep_prob=0.01, seed=2
        )
    )
    assert np.all(x["word_valid"].sum(axis=1) == 1)
    many = _source(_caption_examples(50, [caption]), {caption: WORDS})
    ((x, _),) = _first(
        make_training_dataset(
            many, make_table(WORDS), image_size=16, batch_size=50, max_masks=1, max_words=3, keep_prob=1.0, seed=2
        )
    )
    assert np.all(x["word_valid"].sum(axis=1) == 3)
    # Truncation keeps a random subset, not always the first words.
    assert len({tuple(np.round(e[:, 0], 5)) for e in x["word_embeddings"]}) > 1


@pytest.mark.backend_independent
def test_captions_with_no_word_and_unknown_captions_give_no_valid_word(make_table):
    examples = _caption_examples(4, ["It is."]) + _caption_examples(4, ["never extracted"])
    source = _source(examples, {"It is.": []})
    ((x, y),) = _first(
        make_training_dataset(
            source, make_table(WORDS), image_size=16, batch_size=8, max_masks=2, max_words=3, seed=0, shuffle_buffer=0
        )
    )
    assert not x["word_valid"].any()
    assert np.all(x["word_embeddings"] == 0)
    assert not y["mask_valid"].any() and np.all(y["masks"] == 0)  # caption-only: no mask target


@pytest.mark.backend_independent
def test_words_missing_from_the_table_are_dropped_with_a_warning(make_table, caplog):
    source = _source(_caption_examples(2, ["x"]), {"x": ["word1", "unknownword"]})
    with caplog.at_level("WARNING"):
        dataset = make_training_dataset(source, make_table(WORDS), image_size=16, batch_size=2, keep_prob=1.0, seed=0)
    assert "1 of the 2 distinct caption words" in caplog.text
    ((x, _),) = _first(dataset)
    assert np.all(x["word_valid"].sum(axis=1) == 1)


@pytest.mark.backend_independent
def test_panoptic_masks_and_images_with_no_segment(make_table):
    source = _source(_panoptic_examples(4) + _panoptic_examples(4, with_segments=False))
    ((x, y),) = _first(
        make_training_dataset(
            source,
            make_table(WORDS),
            image_size=16,
            batch_size=8,
            max_masks=3,
            scale_range=(1.0, 1.0),
            flip=False,
            seed=0,
            shuffle_buffer=0,
        )
    )
    np.testing.assert_array_equal(y["mask_valid"][:4], np.tile([True, True, False], (4, 1)))
    assert np.all(y["masks"][:4, :2].sum(axis=(1, 2, 3)) == 16 * 16)  # the two halves cover the image
    assert not y["mask_valid"][4:].any() and np.all(y["masks"][4:] == 0)
    assert not x["word_valid"].any()  # no captions: no valid word


@pytest.mark.backend_independent
def test_mask_source_like_teacher_pseudo_labels(make_table):
    masks = np.zeros((3, 16, 16), np.uint8)
    masks[0, :4] = 1
    masks[1, 4:] = 1
    example = {"image": np.zeros((16, 16, 3), np.uint8), "masks": masks, "mask_valid": np.array([True, True, False])}
    examples = [example] * 2
    ((x, y),) = _first(
        make_training_dataset(
            _source(examples),
            make_table(WORDS),
            image_size=16,
            batch_size=2,
            max_masks=4,
            scale_range=(1.0, 1.0),
            flip=False,
            seed=0,
        )
    )
    np.testing.assert_array_equal(y["mask_valid"], np.tile([True, True, False, False], (2, 1)))
    np.testing.assert_array_equal(y["masks"][0, 0], masks[1])  # largest first
    np.testing.assert_array_equal(y["masks"][0, 1], masks[0])
    assert not x["word_valid"].any()


@pytest.mark.backend_independent
def test_small_label_masks_and_empty_mask_stacks(make_table):
    empty = {"image": np.zeros((16, 16, 3), np.uint8), "masks": np.zeros((0, 16, 16), np.uint8)}
    ((_, y),) = _first(
        make_training_dataset(_source([empty] * 2), make_table(WORDS), image_size=16, batch_size=2, max_masks=3, seed=0)
    )
    assert y["masks"].shape == (2, 3, 16, 16) and not y["mask_valid"].any()
    ((_, y),) = _first(
        make_training_dataset(
            _source(_panoptic_examples(2)),
            make_table(WORDS),
            image_size=16,
            batch_size=2,
            max_masks=3,
            mask_size=4,
            scale_range=(1.0, 1.0),
            seed=0,
        )
    )
    assert y["masks"].shape == (2, 3, 4, 4)
    np.testing.assert_allclose(y["masks"][:, :2].sum(axis=(1, 2, 3)), 16.0)  # fractions still cover the image


@pytest.mark.backend_independent
def test_sources_are_mixed_by_weight(make_table):
    captioned = _source(_caption_examples(10, ["a"]), {"a": ["word1"]}, name="captions")
    masked = _source(_panoptic_examples(10), name="masks")
    captioned.weight = 3.0
    dataset = make_training_dataset(
        [captioned, masked], make_table(WORDS), image_size=16, batch_size=200, max_masks=2, max_words=2, seed=3
    )
    ((x, y),) = _first(dataset)
    from_captions = x["word_valid"].any(axis=1)
    np.testing.assert_array_equal(from_captions, ~y["mask_valid"].any(axis=1))
    assert abs(from_captions.mean() - 0.75) < 0.1


@pytest.mark.backend_independent
def test_a_seed_reproduces_every_epoch_and_epochs_differ(make_table):
    caption = _all_words_caption()

    def epochs(seed):
        source = _source(_panoptic_examples(6, size=20), name="p")
        source.dataset = source.dataset.map(lambda e: {**e, "captions": tf.constant([caption, "a"])})
        source.caption_words = {caption: WORDS, "a": ["word1"]}
        dataset = make_training_dataset(
            source, make_table(WORDS), image_size=16, batch_size=6, max_masks=2, max_words=8, seed=seed, repeat=False
        )
        return [_first(dataset)[0] for _ in range(2)]

    first, again = epochs(5), epochs(5)
    for a, b in zip(first, again):
        tf.nest.map_structure(np.testing.assert_array_equal, a, b)
    # New crops, captions and word drops every epoch.
    assert not np.array_equal(first[0][0]["word_embeddings"], first[1][0]["word_embeddings"])
    assert not np.array_equal(first[0][0]["images"], first[1][0]["images"])


@pytest.mark.backend_independent
def test_bad_arguments_are_rejected(make_table):
    source = _source(_caption_examples(2, ["a"]), {"a": ["word1"]})
    table = make_table(WORDS)
    with pytest.raises(ValueError, match="keep_prob"):
        make_training_dataset(source, table, keep_prob=0.0)
    with pytest.raises(ValueError, match="image_size"):
        make_training_dataset(source, table, image_size=0)
    with pytest.raises(ValueError, match="sources"):
        make_training_dataset([], table)
    with pytest.raises(ValueError, match="caption_words"):
        TrainingSource(source.dataset)


def _classed_panoptic_examples(count, size=16, category_ids=(3, 11)):
    """Two segments of unequal size (id 7: the top quarter, id 300: the rest) with their category ids."""
    panoptic = np.zeros((size, size, 3), np.uint8)
    panoptic[: size // 4, :, 0] = 7
    panoptic[size // 4 :, :, 0] = 300 % 256
    panoptic[size // 4 :, :, 1] = 300 // 256
    segments = {
        "id": np.array([7, 300], np.int64),
        "category_id": np.array(category_ids, np.int64),
        "is_crowd": np.zeros([2], bool),
    }
    return [
        {"image": np.full((size, size, 3), 50, np.uint8), "panoptic_image": panoptic, "segments": segments}
        for _ in range(count)
    ]


@pytest.mark.backend_independent
def test_mask_classes_follow_the_slots_and_other_sources_have_none(make_table):
    panoptic = _source(_classed_panoptic_examples(4), name="panoptic")
    masks = np.zeros((2, 16, 16), np.uint8)
    masks[0, :4] = 1
    pseudo = _source([{"image": np.zeros((16, 16, 3), np.uint8), "masks": masks}] * 4, name="pseudo")
    captions = _source(_caption_examples(4, ["a"]), {"a": ["word1"]}, name="captions")
    common = dict(image_size=16, batch_size=4, max_masks=3, scale_range=(1.0, 1.0), flip=False, seed=0, repeat=False)
    ((x, y),) = _first(make_training_dataset(panoptic, make_table(WORDS), mask_classes=True, **common))
    assert set(y) == {"masks", "mask_valid", "mask_classes"} and y["mask_classes"].dtype == np.int32
    np.testing.assert_array_equal(y["mask_classes"], np.tile([11, 3, -1], (4, 1)))  # largest segment first
    np.testing.assert_array_equal(y["mask_valid"], y["mask_classes"] >= 0)
    np.testing.assert_array_equal(y["masks"][:, 0].sum(axis=(1, 2)), 16 * 12)
    for source in (pseudo, captions):
        ((_, y),) = _first(make_training_dataset(source, make_table(WORDS), mask_classes=True, **common))
        assert y["mask_classes"].shape == (4, 3) and np.all(y["mask_classes"] == -1)
    # Mixed sources keep one structure; without the option y is as before.
    mixed = make_training_dataset([panoptic, pseudo, captions], make_table(WORDS), mask_classes=True, **common)
    assert set(mixed.element_spec[1]) == {"masks", "mask_valid", "mask_classes"}
    ((_, y),) = _first(make_training_dataset(panoptic, make_table(WORDS), **common))
    assert set(y) == {"masks", "mask_valid"}


@pytest.mark.backend_independent
def test_mask_classes_need_the_category_ids_of_a_panoptic_source(make_table):
    source = _source(_panoptic_examples(2), name="no-categories")
    with pytest.raises(ValueError, match="no-categories.*category_id"):
        make_training_dataset(source, make_table(WORDS), image_size=16, batch_size=2, mask_classes=True)
    make_training_dataset(source, make_table(WORDS), image_size=16, batch_size=2)  # fine without classes


@pytest.mark.slow
@pytest.mark.backend_independent
def test_mask_classes_of_the_shapes_dataset(shapes_data_dir, extractor, make_table):
    import tensorflow_datasets as tfds

    source = TrainingSource.from_tfds("openseg_shapes/tiny", "train", extractor, data_dir=shapes_data_dir, seed=0)
    num_classes = len(tfds.builder("openseg_shapes/tiny", data_dir=shapes_data_dir).info.metadata["class_names"])
    table = make_table(caption_vocabulary(source.caption_words), embedding_dim=6)
    dataset = make_training_dataset(
        source, table, image_size=32, batch_size=4, max_masks=5, max_words=4, seed=0, mask_classes=True
    )
    _, y = next(iter(dataset))
    classes, valid = y["mask_classes"].numpy(), y["mask_valid"].numpy()
    assert classes.shape == (4, 5) and valid.any()
    assert np.all((classes[valid] >= 1) & (classes[valid] <= num_classes))  # 1-based indices into class_names
    assert np.all(classes[~valid] == -1)


@pytest.mark.backend_independent
def test_hue_rotation_drops_colour_words_of_rotated_examples_only(make_table):
    words = ["red", "blue", "circle", "square", "grass"]
    caption = "a red circle and a blue square on grass"
    image = np.zeros((16, 16, 3), np.uint8)
    image[..., 0] = 200  # a red image: a rotation changes it
    examples = [{"image": image, "captions": np.array([caption], object)} for _ in range(64)]
    table = make_table(words)

    def batch(hue_rotation):
        source = _source(examples, {caption: words})
        dataset = make_training_dataset(
            source,
            table,
            image_size=16,
            batch_size=64,
            max_masks=2,
            max_words=5,
            keep_prob=1.0,
            seed=3,
            hue_rotation=hue_rotation,
            scale_range=(1.0, 1.0),
            flip=False,
        )
        return _first(dataset)[0][0]

    plain, half, always = batch(0.0), batch(0.5), batch(1.0)
    colour_rows = table.embeddings[table.ids(["red", "blue"])]

    def colour_word_counts(x):
        found = np.abs(x["word_embeddings"][:, :, None] - colour_rows[None, None]).sum(-1) < 1e-6
        return found.any(-1).sum(-1)

    # A rotated example differs (a small angle only a little); an unrotated one is bit-identical.
    rotated = np.abs(half["images"] - plain["images"]).max(axis=(1, 2, 3)) > 0.0
    assert 10 < rotated.sum() < 54  # about half of the 64 examples
    np.testing.assert_array_equal(half["images"][~rotated], plain["images"][~rotated])
    # A rotated example keeps its other words (circle, square, grass) and loses both colour words.
    np.testing.assert_array_equal(colour_word_counts(half), np.where(rotated, 0, 2))
    np.testing.assert_array_equal(half["word_valid"].sum(-1), np.where(rotated, 3, 5))
    np.testing.assert_array_equal(half["word_embeddings"][~rotated], plain["word_embeddings"][~rotated])
    assert (colour_word_counts(always) == 0).all() and (always["word_valid"].sum(-1) == 3).all()
    assert (colour_word_counts(plain) == 2).all()
    # Hue and value: the rotated red image keeps its value (its largest channel).
    np.testing.assert_array_equal(always["images"].max(-1), plain["images"].max(-1))
    for bad in (1.5, -0.1, "0.5", True):
        with pytest.raises(ValueError, match="hue_rotation"):
            make_training_dataset(_source(examples, {caption: words}), table, hue_rotation=bad)
