"""Fixtures of the input-pipeline tests: a word table, a stand-in extractor and the built tiny shapes data."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

import keras_openseg.datasets.openseg_shapes  # noqa: F401  (registers openseg_shapes)


class WhitespaceExtractor:
    """Stands in for `CaptionWordExtractor` (no spaCy): lower-cased words longer than 3 letters."""

    def __init__(self):
        self.calls = 0

    def extract(self, captions):
        self.calls += 1
        return [list(dict.fromkeys(w.strip(".,").lower() for w in c.split() if len(w.strip(".,")) > 3)) for c in captions]


class ArrayWordTable:
    """The `WordEmbeddingTable` interface the pipeline uses: `.ids(words)`, `.embeddings`, `.embedding_dim`."""

    def __init__(self, words, embedding_dim=8, seed=0):
        self.words = list(words)
        embeddings = np.random.default_rng(seed).normal(size=(len(self.words), embedding_dim)).astype(np.float32)
        self.embeddings = embeddings / np.linalg.norm(embeddings, axis=-1, keepdims=True)
        self.embedding_dim = embedding_dim
        self._rows = {word: row for row, word in enumerate(self.words)}

    def __len__(self):
        return len(self.words)

    def ids(self, words):
        return np.array([self._rows.get(word, -1) for word in words], np.int32)


@pytest.fixture
def extractor():
    return WhitespaceExtractor()


@pytest.fixture
def make_table():
    return ArrayWordTable


@pytest.fixture(scope="session")
def shapes_data_dir(tmp_path_factory):
    """A tfds data dir with `openseg_shapes/tiny` built (seconds)."""
    data_dir = tmp_path_factory.mktemp("tfds")
    tfds.builder("openseg_shapes/tiny", data_dir=data_dir).download_and_prepare()
    return data_dir
