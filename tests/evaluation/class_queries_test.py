"""Class queries: synonym lists, comma-separated names, prompt templates and the [C, S, E] embedding layout."""

import json

import numpy as np
import pytest

from keras_openseg.evaluation import SYNONYM_VOCABULARIES
from keras_openseg.evaluation import class_queries
from keras_openseg.evaluation import embed_class_queries
from keras_openseg.evaluation import load_synonyms
from keras_openseg.evaluation import normalize_class_name
from keras_openseg.evaluation import resolve_prompt_templates

pytestmark = pytest.mark.backend_independent


class RecordingEmbedder:
    """Embeds text i as a unit vector along axis i mod 4 and records each call."""

    def __init__(self):
        self.calls = []

    def embed(self, texts, templates=None):
        self.calls.append((list(texts), templates))
        return np.eye(4, dtype=np.float32)[[i % 4 for i in range(len(texts))]]


def test_without_synonyms_each_class_keeps_its_own_name():
    assert class_queries(["bed ", "building, edifice"], split_names=False) == [["bed"], ["building, edifice"]]


def test_multi_name_classes_are_split_into_names_by_default(shared_data_dir):
    # Paper sec. 3.4: a class given by several names scores the max over them; A-847 writes 217 classes so.
    assert class_queries(["bed ", "building, edifice"]) == [["bed"], ["building", "edifice"]]
    ade847 = json.loads((shared_data_dir / "vocabularies" / "ade847.json").read_text())
    queries = class_queries(ade847)
    person = ade847.index("person, individual, someone, somebody, mortal, soul")
    assert queries[person] == ["person", "individual", "someone", "somebody", "mortal", "soul"]
    assert sum(len(names) > 1 for names in queries) == sum("," in name for name in ade847) == 217
    assert all(
        len(names) == 1
        for names in class_queries(json.loads((shared_data_dir / "vocabularies/pc459.json").read_text()))
    )


def test_synonym_lists_and_comma_names():
    queries = class_queries(["airconditioner", "building, edifice", "cat"], synonyms="pc459")
    assert queries == [["air conditioner"], ["building", "edifice"], ["cat"]]
    # True merges the package lists of every benchmark; any spelling of a name finds its entry.
    assert class_queries(["tv monitor"], synonyms=True) == [["tv monitor", "television", "monitor"]]
    assert class_queries(["cat"], synonyms={"cat": ["cat", "kitty", "cat"]}) == [["cat", "kitty"]]
    with pytest.raises(ValueError, match="synonyms"):
        class_queries(["cat"], synonyms=3)


def test_package_synonym_files_name_real_benchmark_classes(shared_data_dir):
    for vocabulary in SYNONYM_VOCABULARIES:
        names = json.loads((shared_data_dir / "vocabularies" / f"{vocabulary}.json").read_text())
        known = {normalize_class_name(n) for n in names}
        synonyms = load_synonyms(vocabulary)
        assert synonyms and all(normalize_class_name(n) in known for n in synonyms), vocabulary
        assert all(isinstance(v, list) and v and all(isinstance(s, str) for s in v) for v in synonyms.values())


def test_embedding_layout_and_single_call():
    embedder = RecordingEmbedder()
    queries = [["cat", "kitty"], ["dog"], ["cat"]]
    text_embeddings, name_valid = embed_class_queries(embedder, queries, templates=["a photo of a {}."])
    assert embedder.calls == [(["cat", "kitty", "dog"], ["a photo of a {}."])]  # each name embedded once
    assert text_embeddings.shape == (3, 2, 4) and text_embeddings.dtype == np.float32
    np.testing.assert_array_equal(name_valid, [[True, True], [True, False], [True, False]])
    np.testing.assert_array_equal(text_embeddings[0], np.eye(4)[:2])
    np.testing.assert_array_equal(text_embeddings[1], [np.eye(4)[2], np.zeros(4)])
    np.testing.assert_array_equal(text_embeddings[2, 0], np.eye(4)[0])


def test_prompt_templates():
    assert resolve_prompt_templates(None) is None
    assert resolve_prompt_templates(["a {}.", "the {}."]) == ("a {}.", "the {}.")
    assert resolve_prompt_templates("single") == ("a photo of a {}.",)
    with pytest.raises(ValueError, match="prompts"):
        resolve_prompt_templates(["no placeholder"])
