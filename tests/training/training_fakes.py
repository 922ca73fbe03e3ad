"""Stand-ins shared by the training tests: a caption-word extractor without spaCy, a random word table."""

import numpy as np

from keras_openseg.text import WordEmbeddingTable
from keras_openseg.training import TrainingConfig

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


def tiny_config(data_dir, output, **changes):
    """The `TrainingConfig` of the training tests: openseg_shapes/tiny at 32 px, 4 steps, a checkpoint every 2."""
    settings = dict(
        datasets=("openseg_shapes/tiny",),
        data_dir=data_dir,
        image_size=32,
        steps=4,
        batch_size=2,
        checkpoint_every=2,
        max_masks=3,
        max_words=3,
        output=str(output),
    )
    return TrainingConfig(**{**settings, **changes})
