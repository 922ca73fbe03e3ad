"""Tiny OpenSeg models and data shared by the tests of keras_openseg.models (not a test module itself)."""

import string
import zlib

import keras_hub
import numpy as np

from keras_openseg.models import OPENSEG_ARCHITECTURES
from keras_openseg.models import OpenSegBackbone
from keras_openseg.models import OpenSegImageConverter
from keras_openseg.models import OpenSegModel
from keras_openseg.models import OpenSegPreprocessor
from keras_openseg.models import OpenSegTeacher
from keras_openseg.models import TextEmbedder
from keras_openseg.models.text_embedder_preprocessor import TextEmbedderPreprocessor

# The registry's "test_tiny": a ResNet with P2..P5 (strides 4..32) and ~50k weights, a 6-query head.
TINY = OPENSEG_ARCHITECTURES["test_tiny"]
TINY_ENCODER = {**TINY["image_encoder"]["config"], "image_shape": (None, None, 3)}
TINY_HEAD = TINY["backbone"]
EMBEDDING_DIM = TINY_HEAD["embedding_dim"]
NUM_QUERIES = TINY_HEAD["num_queries"]
# Maps 0..255 to -1..1, as a pretrained encoder's converter would normalize.
SCALE, OFFSET = TINY["image_normalization"]["scale"], TINY["image_normalization"]["offset"]


def tiny_encoder():
    return keras_hub.models.ResNetBackbone(**TINY_ENCODER)


def tiny_backbone(**kwargs):
    return OpenSegBackbone.from_architecture("test_tiny", **kwargs)


def tiny_preprocessor():
    return OpenSegPreprocessor(OpenSegImageConverter.from_architecture("test_tiny"))


def compile_for_tests(task):
    # OpenSegTask.compile's "auto" jit_compile: on a CPU TensorFlow runs without XLA (default_jit_compile), whose
    # compilation would cost far more than these tiny steps.
    task.compile()
    return task


def bert_text_embedder(vocabulary, embedding_dim=EMBEDDING_DIM, sequence_length=64, lowercase=True):
    """A real `TextEmbedder` offline: a random 1-layer BERT over `vocabulary` (the special tokens come first)."""
    tokenizer = keras_hub.tokenizers.BertTokenizer(
        vocabulary=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(vocabulary), lowercase=lowercase
    )
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=tokenizer.vocabulary_size(),
        num_layers=1,
        num_heads=2,
        hidden_dim=embedding_dim,
        intermediate_dim=16,
        max_sequence_length=sequence_length,
    )
    return TextEmbedder(backbone, TextEmbedderPreprocessor(tokenizer, sequence_length=sequence_length))


def character_text_embedder(embedding_dim=EMBEDDING_DIM):
    """A `bert_text_embedder` over characters: any lowercase text tokenizes."""
    letters = list(string.ascii_lowercase)
    return bert_text_embedder([".", "-"] + letters + ["##" + c for c in letters], embedding_dim)


def tiny_model(**kwargs):
    kwargs.setdefault("preprocessor", tiny_preprocessor())
    return compile_for_tests(OpenSegModel(kwargs.pop("backbone", None) or tiny_backbone(), **kwargs))


def tiny_teacher(**kwargs):
    kwargs.setdefault("preprocessor", tiny_preprocessor())
    return compile_for_tests(OpenSegTeacher(kwargs.pop("backbone", None) or tiny_backbone(), **kwargs))


class FakeTextEmbedder:
    """Deterministic stand-in for `TextEmbedder`: every string maps to a fixed pseudo-random unit vector."""

    def __init__(self, embedding_dim=EMBEDDING_DIM, zero_for=()):
        self.embedding_dim = embedding_dim
        self.zero_for = set(zero_for)
        self.calls = []

    def embed(self, texts, templates=None):
        self.calls.append((list(texts), templates))
        rows = []
        for text in texts:
            rng = np.random.default_rng(zlib.crc32(text.encode()))
            vector = rng.normal(size=self.embedding_dim)
            rows.append(np.zeros(self.embedding_dim) if text in self.zero_for else vector / np.linalg.norm(vector))
        return np.asarray(rows, "float32").reshape(len(texts), self.embedding_dim)


def images(batch, height=64, width=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (batch, height, width, 3)).astype("uint8")


def training_batch(batch=2, num_words=3, num_masks=3, size=64, seed=0):
    """An `(x, y)` training batch of OpenSegModel with random content and some padded entries."""
    rng = np.random.default_rng(seed)
    word_valid = np.ones((batch, num_words), bool)
    word_valid[0, -1] = False
    mask_valid = np.ones((batch, num_masks), bool)
    mask_valid[-1, 1:] = False
    x = {
        "images": images(batch, size, size, seed),
        "word_embeddings": rng.normal(size=(batch, num_words, EMBEDDING_DIM)).astype("float32"),
        "word_valid": word_valid,
    }
    y = {"masks": (rng.uniform(size=(batch, num_masks, size, size)) > 0.5).astype("float32"), "mask_valid": mask_valid}
    return x, y


class FixedTextEmbedder:
    """A text embedder for tests: the i-th text of a call is row i of `vectors` (the texts themselves are ignored)."""

    embedding_dim = 8

    def __init__(self, vectors):
        self.vectors = np.asarray(vectors, np.float32)

    def embed(self, texts, templates=None):
        return self.vectors[: len(texts)]
