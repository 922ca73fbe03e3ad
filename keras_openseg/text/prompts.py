"""Prompt templates for class names (paper App. I: prompt engineering).

A class name is embedded once per template ("a photo of a {}." -> "a photo of a cat."); the
L2-normalized template embeddings are averaged and the mean renormalized
(`TextEmbedder.embed(names, templates=...)`). Templates help a text encoder trained on sentences
(CLIP, sentence-transformers) read a bare class name as a visual concept.

`templates` convention used across the package:
- `None`: the name alone, no template.
- `"single"`: `SINGLE_TEMPLATE`, one sentence.
- `"default"`: `DEFAULT_TEMPLATES`, the ensemble below.
- a list or tuple of strings, each holding `{}` exactly once.
"""

import hashlib

SINGLE_TEMPLATE = ("a photo of a {}.",)

# Our own ensemble in the style of the paper's App. I: photo / picture / scene phrasings and a few that
# suit stuff classes ("sky", "grass") and segment-level crops, where the object fills only part of the view.
DEFAULT_TEMPLATES = (
    "a photo of a {}.",
    "a photo of the {}.",
    "a photo of a small {}.",
    "a photo of a large {}.",
    "a close-up photo of a {}.",
    "a cropped photo of a {}.",
    "a bright photo of a {}.",
    "a dark photo of a {}.",
    "a blurry photo of a {}.",
    "a picture of a {}.",
    "an image of a {}.",
    "there is a {} in the scene.",
    "there is the {} in the scene.",
    "this is a {} in the scene.",
    "a part of a {}.",
    "a segment of {} in an image.",
)

NAMED_TEMPLATES = {"single": SINGLE_TEMPLATE, "default": DEFAULT_TEMPLATES}


def get_templates(templates):
    """Resolves the `templates` convention to a tuple of template strings, or None for no template.

    Args:
        templates: None, `"single"`, `"default"`, or a list/tuple of str each holding `{}` once.

    Returns:
        tuple of str, or None.

    Example:

    >>> from keras_openseg.text import prompts
    >>> prompts.get_templates("single")
    ('a photo of a {}.',)
    >>> prompts.fill_templates("cat", prompts.get_templates("single"))
    ['a photo of a cat.']
    """
    if templates is None:
        return None
    if isinstance(templates, str):
        if templates not in NAMED_TEMPLATES:
            raise ValueError(
                f"`templates` must be None, one of {sorted(NAMED_TEMPLATES)} or a list of strings with `{{}}`. "
                f"Received: templates={templates!r}"
            )
        return NAMED_TEMPLATES[templates]
    templates = tuple(templates)
    if not templates:
        raise ValueError("`templates` must not be empty; pass None for no template.")
    for template in templates:
        if not isinstance(template, str) or template.count("{}") != 1:
            raise ValueError(f"Each template must be a str holding `{{}}` exactly once. Received: {template!r}")
    return templates


def fill_templates(name, templates):
    """Returns the sentences of one class name: `[template.format(name) for template in templates]`."""
    if templates is None:
        return [name]
    return [template.replace("{}", name) for template in templates]


def templates_key(templates):
    """A short stable string naming a template set (used to tag embedding tables)."""
    templates = get_templates(templates)
    if templates is None:
        return "none"
    for label, named in NAMED_TEMPLATES.items():
        if templates == named:
            return label
    return "custom-" + hashlib.sha1("\n".join(templates).encode()).hexdigest()[:10]
