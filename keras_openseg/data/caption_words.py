"""Caption words of a whole dataset, extracted once and cached beside the data.

Parsing captions with spaCy is far slower than training reads them, so the words of every distinct caption
of a split are extracted once (`CaptionWordExtractor`, paper sec. 3.2) and kept in a JSON file in the tfds
dataset folder; the training pipeline then only looks captions up. The per-epoch part, choosing a caption and
dropping words with keep probability kp, happens in `make_training_dataset`.
"""

import hashlib
import json
import logging

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from etils import epath

logger = logging.getLogger(__name__)


def caption_words_for(source, extractor, split=None, cache_path=None):
    """Extracts the words of every distinct caption of a dataset, reading and writing a cache file.

    Args:
        source: a tfds builder (then `split` is required), a `tf.data.Dataset` whose elements hold
            "captions" (string tensor [C]) or are string tensors, or an iterable of str.
        extractor: `keras_openseg.text.CaptionWordExtractor` (or any object with
            `extract(list[str]) -> list[list[str]]`).
        split: str or None. The tfds split, for a builder source.
        cache_path: path-like or None. The JSON cache file. Defaults to
            `<builder.data_dir>/caption_words/<split>-<extractor settings>.json` for a builder source (the
            settings are `extractor.settings_key`, else its class name) and no cache for other sources.
            Unwritable locations only log a warning.

    Returns:
        dict str -> list of str: caption -> its words.

    Example:
    ```python
    builder = tfds.builder("openseg_shapes/tiny")
    builder.download_and_prepare()
    words = caption_words_for(builder, keras_openseg.text.CaptionWordExtractor(), split="train")
    ```
    """
    if cache_path is None and isinstance(source, tfds.core.DatasetBuilder):
        if split is None:
            raise ValueError("`split` is required when `source` is a tfds builder. Received: split=None")
        cache_path = epath.Path(source.data_dir) / "caption_words" / f"{split}-{_extractor_key(extractor)}.json"
    if cache_path is not None:
        cache_path = epath.Path(cache_path)
        if cache_path.exists():
            return json.loads(cache_path.read_text())

    captions = list(dict.fromkeys(_read_captions(source, split)))
    words = dict(zip(captions, (list(w) for w in extractor.extract(captions)))) if captions else {}
    if cache_path is not None:
        try:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            partial = cache_path.parent / (cache_path.name + ".incomplete")
            partial.write_text(json.dumps(words, ensure_ascii=False))
            partial.rename(cache_path)  # readers never see a half-written file
        except OSError as error:
            logger.warning("Could not cache caption words in %s: %s", cache_path, error)
    return words


def caption_vocabulary(*caption_words):
    """Sorted distinct words of one or more `caption_words_for` results: the rows a `WordEmbeddingTable` needs.

    Args:
        *caption_words: dicts caption -> list of words.

    Returns:
        list of str.
    """
    return sorted({word for mapping in caption_words for words in mapping.values() for word in words})


def _extractor_key(extractor):
    # CaptionWordExtractor names its pipeline and settings; another extractor class is taken to extract words
    # one way only (its repr may hold a memory address, which would defeat the cache).
    key = getattr(extractor, "settings_key", None)
    if key is None:
        cls = type(extractor)
        key = f"{cls.__name__}-{hashlib.sha1(f'{cls.__module__}.{cls.__qualname__}'.encode()).hexdigest()[:10]}"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(key))


def _read_captions(source, split):
    if isinstance(source, tfds.core.DatasetBuilder):
        features = source.info.features
        if "captions" not in features:
            raise ValueError(f"The dataset {source.name} has no 'captions' feature.")
        # Only the captions are needed: leave images and everything else undecoded.
        decoders = {name: tfds.decode.SkipDecoding() for name in features if name != "captions"}
        decoders = {name: d for name, d in decoders.items() if _is_decodable(features[name])}
        source = source.as_dataset(split=split, decoders=decoders, shuffle_files=False)
    if isinstance(source, tf.data.Dataset):
        spec = source.element_spec
        if isinstance(spec, dict):
            if "captions" not in spec:
                raise ValueError("`source` elements must hold 'captions'. Found keys: " + ", ".join(sorted(spec)))
            source = source.map(lambda example: example["captions"])
        for batch in source.as_numpy_iterator():
            for caption in np.asarray(batch).reshape(-1):
                yield caption.decode("utf-8")
        return
    for caption in source:
        if not isinstance(caption, str):
            raise ValueError(f"`source` must yield str captions. Received an item of type {type(caption).__name__}")
        yield caption


def _is_decodable(feature):
    # SkipDecoding applies to features with an encoded form (images, ...); plain tensors have none.
    return isinstance(feature, (tfds.features.Image, tfds.features.Video))
