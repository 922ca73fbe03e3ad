"""Text side of OpenSeg: caption words (paper sec. 3.2), prompt templates (App. I), word embedding tables."""

from keras_openseg.text import prompts
from keras_openseg.text.caption_words import POS_VARIANTS
from keras_openseg.text.caption_words import CaptionWordExtractor
from keras_openseg.text.caption_words import caption_vocabulary
from keras_openseg.text.caption_words import caption_words_for
from keras_openseg.text.word_embedding_table import WordEmbeddingTable

__all__ = [
    "CaptionWordExtractor",
    "POS_VARIANTS",
    "WordEmbeddingTable",
    "caption_vocabulary",
    "caption_words_for",
    "prompts",
]
