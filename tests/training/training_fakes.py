"""Stand-ins shared by the training tests: a caption-word extractor without spaCy, a random word table."""

import numpy as np

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
