"""Fixtures of the training tests: the tiny shapes data, a stand-in caption-word extractor, a random word table.

On JAX the session also keeps a persistent compilation cache in a temporary folder: the resume tests build
the same tiny model three times, and XLA then compiles its train step once.
"""

import keras
import numpy as np
import pytest
import tensorflow_datasets as tfds

import keras_openseg.datasets.openseg_shapes  # noqa: F401  (registers openseg_shapes)
from keras_openseg.text import WordEmbeddingTable

SHAPE_WORDS = (
    "red blue green yellow purple orange white black circle square triangle star ring striped dotted plain "
    "grass water sand sky wall floor"
).split()


class WhitespaceExtractor:
    """Stands in for `CaptionWordExtractor` (no spaCy): lower-cased words longer than 3 letters."""

    def extract(self, captions):
        return [
            list(dict.fromkeys(w.strip(".,").lower() for w in c.split() if len(w.strip(".,")) > 3)) for c in captions
        ]


def random_word_table(words=SHAPE_WORDS, embedding_dim=8, seed=0):
    """A `WordEmbeddingTable` of random unit vectors: training needs no text encoder to be tested."""
    embeddings = np.random.default_rng(seed).normal(size=(len(words), embedding_dim)).astype(np.float32)
    return WordEmbeddingTable(list(words), embeddings, encoder_id="random-test-vectors")


@pytest.fixture(scope="session")
def shapes_data_dir(tmp_path_factory):
    """A tfds data dir with `openseg_shapes/tiny` built (seconds)."""
    data_dir = tmp_path_factory.mktemp("tfds")
    tfds.builder("openseg_shapes/tiny", data_dir=data_dir).download_and_prepare()
    return str(data_dir)


@pytest.fixture(scope="session", autouse=True)
def jax_compilation_cache(tmp_path_factory):
    if keras.backend.backend() == "jax":
        import jax

        jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jax_cache")))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    yield
