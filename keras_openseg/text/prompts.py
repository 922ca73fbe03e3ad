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

The command line (`keras-openseg segment` and `keras-openseg evaluate --prompts`) and `evaluate()` resolve
their `prompts` option with `resolve_prompts`: `none` (the default: bare names, the way `WordEmbeddingTable`
embeds the training caption words), `single`, `default`, or the path of a text file of templates.
"""

import hashlib
import os

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

# Bare names: the training word table (`WordEmbeddingTable.build(..., templates=None)`) embeds bare caption
# words, so queries embedded the same way are compared with what the model was trained against.
DEFAULT_PROMPTS = "none"
PROMPTS_HELP = (
    "prompt templates for the class names: none (bare names, as the training words were embedded), single, "
    "default (the package's ensemble) or FILE (a text file, one template holding {} per line) (default: none)"
)


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


def read_template_file(path):
    """Templates from a text file: one per line, each holding `{}` once; blank lines and `#` comments skipped."""
    with open(path, encoding="utf-8") as f:
        lines = [line.strip() for line in f]
    templates = [line for line in lines if line and not line.startswith("#")]
    if not templates:
        raise ValueError(f"the prompt file {path} holds no template (one per line, each with {{}}).")
    try:
        return get_templates(templates)
    except ValueError as error:
        raise ValueError(f"the prompt file {path}: {error}") from None


def prompts_argument(value):
    """argparse `type=` of `--prompts`: a named set or an existing file, else argparse's usage error."""
    import argparse

    if value == "none" or value in NAMED_TEMPLATES or os.path.isfile(value):
        return value
    raise argparse.ArgumentTypeError(
        f"{value!r} is neither none, {', '.join(sorted(NAMED_TEMPLATES))} nor a file of templates"
    )


def resolve_prompts(prompts):
    """The one resolver of the `prompts` option: `(templates, record)`.

    `templates` is a tuple of templates or None (bare names), for `TextEmbedder.embed(..., templates=)`;
    `record` says what was used, for results files: `{"prompts": label, "prompt_templates": list or None}`,
    the label being "none", "single", "default", the file's path, or "custom" for a list.

    Args:
        prompts: None or "none" (bare names), "single", "default", the path of a text file of templates (one
            per line, each holding `{}`), or a list of templates.

    Example:

    >>> resolve_prompts("none")
    (None, {'prompts': 'none', 'prompt_templates': None})
    >>> resolve_prompts(["a {} here."])[1]
    {'prompts': 'custom', 'prompt_templates': ['a {} here.']}
    """
    if prompts is None or prompts == "none":
        return None, {"prompts": "none", "prompt_templates": None}
    if isinstance(prompts, (str, os.PathLike)):
        if str(prompts) in NAMED_TEMPLATES:
            templates, label = NAMED_TEMPLATES[str(prompts)], str(prompts)
        elif os.path.isfile(prompts):
            templates, label = read_template_file(prompts), str(prompts)
        else:
            raise ValueError(
                f"`prompts` must be none, one of {sorted(NAMED_TEMPLATES)}, a text file of templates or a list of "
                f"templates. Received: {str(prompts)!r} (no such file)"
            )
    else:
        templates, label = get_templates(prompts), "custom"
    return templates, {"prompts": label, "prompt_templates": list(templates)}
