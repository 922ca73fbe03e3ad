"""Prompt templates: the `templates=None|"single"|"default"|list` convention (paper App. I)."""

import pytest

from keras_openseg.text import prompts

pytestmark = pytest.mark.backend_independent


def test_named_sets():
    assert prompts.get_templates(None) is None
    assert prompts.get_templates("single") == ("a photo of a {}.",)
    default = prompts.get_templates("default")
    assert len(default) > 1 and len(set(default)) == len(default)
    assert all(template.count("{}") == 1 for template in default)


def test_custom_list_and_fill():
    templates = prompts.get_templates(["a {} here.", "the {}"])
    assert templates == ("a {} here.", "the {}")
    assert prompts.fill_templates("traffic light", templates) == ["a traffic light here.", "the traffic light"]
    assert prompts.fill_templates("cat", None) == ["cat"]


def test_templates_key():
    assert prompts.templates_key(None) == "none"
    assert prompts.templates_key("default") == "default"
    assert prompts.templates_key(list(prompts.SINGLE_TEMPLATE)) == "single"
    assert prompts.templates_key(["a {}."]) == prompts.templates_key(("a {}.",))
    assert prompts.templates_key(["a {}."]).startswith("custom-")
    assert prompts.templates_key(["a {}."]) != prompts.templates_key(["the {}."])


@pytest.mark.parametrize("bad", ["photo", [], ["no placeholder"], ["{} and {}"], [3]])
def test_bad_templates(bad):
    with pytest.raises(ValueError, match="template"):
        prompts.get_templates(bad)
