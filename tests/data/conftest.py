"""Fixtures of the input-pipeline tests: a random word table, a stand-in extractor, the built tiny shapes data."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

import keras_openseg.datasets.openseg_shapes  # noqa: F401  (registers openseg_shapes)
from keras_openseg.text import WordEmbeddingTable


class WhitespaceExtractor:
    """Stands in for `CaptionWordExtractor` (no spaCy): lower-cased words longer than 3 letters."""

    def __init__(self):
        self.calls = 0

    def extract(self, captions):
        self.calls += 1
        words = [[w.strip(".,").lower() for w in caption.split()] for caption in captions]
        return [list(dict.fromkeys(w for w in caption if len(w) > 3)) for caption in words]


def random_word_table(words, embedding_dim=8, seed=0):
    """A `WordEmbeddingTable` of random unit vectors: the pipeline needs no text encoder to be tested."""
    embeddings = np.random.default_rng(seed).normal(size=(len(words), embedding_dim)).astype(np.float32)
    return WordEmbeddingTable(list(words), embeddings, encoder_id="random-test-vectors")


@pytest.fixture
def extractor():
    return WhitespaceExtractor()


@pytest.fixture
def make_table():
    return random_word_table


@pytest.fixture(scope="session")
def shapes_data_dir(tmp_path_factory):
    """A tfds data dir with `openseg_shapes/tiny` built (seconds)."""
    data_dir = tmp_path_factory.mktemp("tfds")
    tfds.builder("openseg_shapes/tiny", data_dir=data_dir).download_and_prepare()
    return data_dir
