"""Words -> text embeddings, computed once per dataset so training needs no text encoder (paper sec. 3.2)."""

import os

import numpy as np

from keras_openseg.text import prompts


class WordEmbeddingTable:
    """A vocabulary of words and their L2-normalized text embeddings, saved beside a dataset.

    OpenSeg's grounding loss (paper sec. 3.2, eqs. 2-4) compares region embeddings with the embeddings
    of each caption's words from a frozen text encoder. The words of a dataset's captions (plus, for
    convenience, a benchmark's class names) form a fixed vocabulary, so they are embedded once and
    the input pipeline looks words up by id instead of running the encoder every step.

    The table remembers which encoder made it (`encoder_id`, from `TextEmbedder.identity`, tagged with the
    prompt templates when any were used): `extend` and `check_encoder` refuse another encoder, since
    vectors of two encoders live in unrelated spaces.

    Args:
        words: list of str. Distinct words, one per row.
        embeddings: np.ndarray [V, E]. Their embeddings; rows are L2-normalized here.
        encoder_id: str. Names the encoder (and templates) that made the embeddings.

    Example:

    >>> import os, tempfile
    >>> import numpy as np
    >>> from keras_openseg.text import WordEmbeddingTable
    >>> table = WordEmbeddingTable(["cat", "grass"], np.eye(2, 4, dtype="float32"), encoder_id="toy")
    >>> table.ids(["grass", "dog", "cat"])
    array([ 1, -1,  0], dtype=int32)
    >>> path = os.path.join(tempfile.mkdtemp(), "words.npz")
    >>> table.save(path)
    >>> WordEmbeddingTable.load(path).embedding_dim
    4

    With a text encoder: `WordEmbeddingTable.build(words, TextEmbedder.from_preset(...), path="words.npz")`.
    """

    def __init__(self, words, embeddings, encoder_id):
        words = [str(word) for word in words]
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or embeddings.shape[0] != len(words):
            raise ValueError(
                f"`embeddings` must be [V, E] with V = len(words) = {len(words)}. Received shape {embeddings.shape}."
            )
        if len(set(words)) != len(words):
            duplicates = sorted({word for word in words if words.count(word) > 1})[:5]
            raise ValueError(f"`words` must be distinct. Repeated: {duplicates}")
        if not isinstance(encoder_id, str) or not encoder_id:
            raise ValueError(f"`encoder_id` must be a non-empty str. Received: {encoder_id!r}")
        norms = np.linalg.norm(embeddings, axis=-1, keepdims=True)
        self.words = words
        self.embeddings = embeddings / np.maximum(norms, 1e-12)
        self.encoder_id = encoder_id
        self._index = {word: i for i, word in enumerate(words)}

    @property
    def embedding_dim(self):
        """Size E of the embeddings."""
        return int(self.embeddings.shape[1])

    def __len__(self):
        return len(self.words)

    def __contains__(self, word):
        return word in self._index

    def __repr__(self):
        return f"WordEmbeddingTable({len(self)} words, {self.embedding_dim}-d, encoder_id={self.encoder_id!r})"

    def ids(self, words):
        """Row ids of `words` as int32 numpy, -1 for words not in the table."""
        if isinstance(words, str):
            raise ValueError("`words` must be a list of str, not a single str.")
        return np.array([self._index.get(word, -1) for word in words], dtype=np.int32).reshape(-1)

    def lookup(self, words):
        """Embeddings [K, E] of `words`; raises `KeyError` naming the unknown ones."""
        ids = self.ids(words)
        if (ids < 0).any():
            unknown = [word for word, i in zip(words, ids) if i < 0]
            raise KeyError(f"Not in the table: {unknown[:10]}")
        return self.embeddings[ids]

    def static_hash_table(self, default_value=-1):
        """A `tf.lookup.StaticHashTable` word -> row id (int32) for a tf.data pipeline.

        The pipeline looks up each caption word's id in the graph, then gathers
        `tf.constant(table.embeddings)` rows, with `word_valid = id >= 0`.
        """
        import tensorflow as tf  # The tf.data input pipeline is TensorFlow whatever the Keras backend.

        initializer = tf.lookup.KeyValueTensorInitializer(
            tf.constant(self.words, dtype=tf.string),
            tf.range(len(self.words), dtype=tf.int32),
            key_dtype=tf.string,
            value_dtype=tf.int32,
        )
        return tf.lookup.StaticHashTable(initializer, default_value=default_value)

    # Encoder identity.

    @staticmethod
    def encoder_id_of(text_embedder, templates=None):
        """The `encoder_id` a table built with `text_embedder` and `templates` carries."""
        key = prompts.templates_key(templates)
        return text_embedder.identity if key == "none" else f"{text_embedder.identity}+templates:{key}"

    def check_encoder(self, text_embedder_or_id, templates=None):
        """Raises `ValueError` unless the table was made by this encoder (and these templates)."""
        expected = text_embedder_or_id
        if not isinstance(expected, str):
            expected = self.encoder_id_of(text_embedder_or_id, templates)
        if expected != self.encoder_id:
            raise ValueError(
                f"This word embedding table was made by encoder {self.encoder_id!r}, not {expected!r}. "
                "Vectors of two text encoders are not comparable: rebuild the table with "
                "`WordEmbeddingTable.build(words, text_embedder)` for this encoder, or use the encoder "
                "that built it."
            )

    # Building, extending, saving.

    @classmethod
    def build(cls, words, text_embedder, path=None, templates=None, batch_size=64, overwrite=False):
        """Embeds distinct `words` with `text_embedder` (`embed(texts, templates)`), optionally saving.

        When `path` already holds a table of the same encoder, only the words it lacks are embedded
        and the file is updated; a table of another encoder there is refused unless `overwrite`.

        Args:
            words: iterable of str. Caption words and/or class names; duplicates and empty strings are
                dropped, first occurrence order kept.
            text_embedder: `keras_openseg.models.TextEmbedder` (anything with `embed` and `identity`).
            path: str or None. Where to save the table (.npz). Defaults to `None`.
            templates: prompt templates for `embed` (see `keras_openseg.text.prompts`). Defaults to
                `None`: each word embedded alone.
            batch_size: int. Words per encoder call. Defaults to `64`.
            overwrite: bool. Replace a table of another encoder at `path`. Defaults to `False`.

        Returns:
            A `WordEmbeddingTable`.
        """
        if isinstance(words, str):
            raise ValueError("`words` must be a list of str, not a single str.")
        words = list(dict.fromkeys(word for word in words if isinstance(word, str) and word))
        if path is not None and os.path.exists(path) and not overwrite:
            existing = cls.load(path)
            try:
                existing.check_encoder(text_embedder, templates)
            except ValueError as error:
                raise ValueError(f"{path}: {error} Pass overwrite=True to replace it.") from None
            table = existing.extend(words, text_embedder, templates=templates, batch_size=batch_size)
        else:
            embeddings = text_embedder.embed(words, templates=templates, batch_size=batch_size)
            table = cls(words, embeddings, cls.encoder_id_of(text_embedder, templates))
        if path is not None:
            table.save(path)
        return table

    def extend(self, words, text_embedder, templates=None, batch_size=64):
        """Returns a table with the new `words` added, embedded by the same encoder (refused otherwise)."""
        if isinstance(words, str):
            raise ValueError("`words` must be a list of str, not a single str.")
        self.check_encoder(text_embedder, templates)
        new_words = [word for word in dict.fromkeys(words) if isinstance(word, str) and word and word not in self]
        if not new_words:
            return self
        new = text_embedder.embed(new_words, templates=templates, batch_size=batch_size)
        return WordEmbeddingTable(self.words + new_words, np.concatenate([self.embeddings, new]), self.encoder_id)

    def save(self, path):
        """Writes the table as .npz (`words`, `embeddings`, `encoder_id`)."""
        path = os.fspath(path)
        if not path.endswith(".npz"):
            raise ValueError(f"`path` must end in .npz. Received: {path!r}")
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        np.savez(
            path,
            words=np.array(self.words, dtype=np.str_),
            embeddings=self.embeddings,
            encoder_id=np.array(self.encoder_id),
        )

    @classmethod
    def load(cls, path, text_embedder=None, templates=None):
        """Reads a table saved by `save`; with `text_embedder`, also checks it made the table."""
        with np.load(os.fspath(path), allow_pickle=False) as data:
            table = cls(data["words"].tolist(), data["embeddings"], str(data["encoder_id"]))
        if text_embedder is not None:
            table.check_encoder(text_embedder, templates)
        return table
