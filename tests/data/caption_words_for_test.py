"""Caption words extracted once per dataset split and cached beside the data."""

import json
import threading

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_openseg.data import caption_vocabulary
from keras_openseg.data import caption_words_for

pytestmark = pytest.mark.backend_independent


def test_words_of_a_tfds_split_are_cached_beside_the_data(shapes_data_dir, extractor):
    builder = tfds.builder("openseg_shapes/tiny", data_dir=shapes_data_dir)
    words = caption_words_for(builder, extractor, split="validation")
    captions = [c.decode() for e in tfds.as_numpy(builder.as_dataset(split="validation")) for c in e["captions"]]
    assert set(words) == set(captions)
    assert words[captions[0]] == extractor.extract([captions[0]])[0]
    cache_files = list((shapes_data_dir / "openseg_shapes" / "tiny").glob("*/caption_words/validation-*.json"))
    assert len(cache_files) == 1
    fresh = type(extractor)()
    assert caption_words_for(builder, fresh, split="validation") == words
    assert fresh.calls == 0  # read from the cache, also by a new extractor of the same kind


def test_datasets_and_lists_of_captions(extractor, tmp_path):
    dataset = tf.data.Dataset.from_tensor_slices({"captions": [["A red star.", "Grass."], ["A red star.", "sky"]]})
    words = caption_words_for(dataset, extractor)
    assert words == {"A red star.": ["star"], "Grass.": ["grass"], "sky": []}
    cache = tmp_path / "words.json"
    assert caption_words_for(["two discs"], extractor, cache_path=cache) == {"two discs": ["discs"]}
    assert cache.exists()
    assert caption_vocabulary(words, {"x": ["discs", "star"]}) == ["discs", "grass", "star"]


def test_one_cache_format_and_the_old_one_still_reads(extractor, tmp_path):
    cache = tmp_path / "words.json"
    caption_words_for(["A red star.", "sky"], extractor, cache_path=cache)
    # The layout CaptionWordExtractor(cache=<folder>) appends to: one JSON object per caption.
    lines = [json.loads(line) for line in cache.read_text().splitlines()]
    assert lines == [{"caption": "A red star.", "words": ["star"]}, {"caption": "sky", "words": []}]
    # A pseudo-label folder's `caption_words.json` written before held one {caption: words} object.
    old = tmp_path / "caption_words.json"
    old.write_text(json.dumps({"Two discs.": ["discs"], "": []}))
    calls = extractor.calls
    assert caption_words_for(["not read"], extractor, cache_path=old) == {"Two discs.": ["discs"], "": []}
    assert extractor.calls == calls


def test_bad_sources_are_rejected(extractor, shapes_data_dir):
    with pytest.raises(ValueError, match="split"):
        caption_words_for(tfds.builder("openseg_shapes/tiny", data_dir=shapes_data_dir), extractor)
    with pytest.raises(ValueError, match="captions"):
        caption_words_for(tf.data.Dataset.from_tensor_slices({"image": np.zeros((1, 2, 2, 3))}), extractor)


@pytest.mark.slow
def test_spacy_finds_shape_color_and_stuff_words_in_shapes_captions(shapes_data_dir):
    from keras_openseg.text.caption_words import CaptionWordExtractor

    builder = tfds.builder("openseg_shapes/tiny", data_dir=shapes_data_dir)
    words = caption_words_for(builder, CaptionWordExtractor(cache=False), split="train")
    vocabulary = set(caption_vocabulary(words))
    # The shapes world is only useful when the extractor keeps its shape, color and stuff words.
    assert vocabulary & {"circle", "disc", "disk", "square", "box", "triangle", "star", "ring", "donut", "cross"}
    assert vocabulary & {"red", "blue", "yellow", "purple"}
    assert vocabulary & {"sky", "grass", "water", "sand", "wall", "lawn", "lake", "sea", "beach"}
    assert "hexagon" not in vocabulary


def test_a_damaged_cache_is_extracted_again_not_read_in_part(extractor, tmp_path):
    # A line cut in the middle (a writer that died, or two writers interleaved) must not silently drop the
    # captions it held: the run would train on other words than a run that extracted them (it did, in CI).
    cache = tmp_path / "words.json"
    captions = ["A red star.", "Two discs.", "Grass."]
    words = caption_words_for(captions, extractor, cache_path=cache)
    text = cache.read_text()
    cache.write_text(text[: len(text) // 2] + "\n" + text.splitlines()[-1] + "\n")
    calls = extractor.calls
    assert caption_words_for(captions, extractor, cache_path=cache) == words
    assert extractor.calls > calls  # extracted again, and the cache rewritten whole
    assert caption_words_for(captions, extractor, cache_path=cache) == words


def test_writers_starting_at_once_leave_one_whole_cache(extractor, tmp_path):
    # Seeded runs started together on a fresh data dir all write the cache; each writes a file of its own and
    # renames it, so the file is always one writer's whole output.
    cache = tmp_path / "words.json"
    captions = [f"A red star number {i}." for i in range(2000)]
    barrier = threading.Barrier(4)

    def write(results, index):
        barrier.wait()
        results[index] = caption_words_for(captions, type(extractor)(), cache_path=cache)

    results = [None] * 4
    threads = [threading.Thread(target=write, args=(results, i)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    expected = caption_words_for(captions, type(extractor)())
    assert all(result == expected for result in results)
    assert [json.loads(line)["caption"] for line in cache.read_text().splitlines()] == captions
    assert not list(tmp_path.glob("*.incomplete"))
