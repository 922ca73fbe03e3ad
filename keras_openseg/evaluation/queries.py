"""Text queries for an evaluation vocabulary: names per class (synonym ensembles) and their embeddings.

A class may be named by several names; `OpenSegModel.segment` scores it by the max over its names (paper sec. 3.4
and App. I). A class written as several comma-separated names (A-847's WordNet lists such as "person,
individual, someone, somebody, mortal, soul") is queried by each of them, as the paper does; `split_names=False`
keeps it as one string. Without synonyms every other class is queried by its name exactly as the dataset writes
it (stripped of spaces at the ends). With synonyms:

* a class listed in the package's synonym file of its benchmark (`synonyms_<vocabulary>.json` beside this
  module: `ade150`, `ade847`, `pc59`, `pc459`, `voc20`) is queried by exactly the names listed there. The lists
  are short and hand-written, for a handful of ambiguous or oddly spelled names (PC-459's joined words such as
  "airconditioner", VOC's "tvmonitor", ADE's "plaything" or "ashcan", and the ADE-847 WordNet lists whose rare
  senses mislead, e.g. "soul" for person);
* any other class whose name holds commas (ADE-847) is queried by each comma-separated name;
* every other class keeps its single name.

Names are looked up after `normalize_class_name`, so either spelling of a PC-459 name finds its entry.
"""

import importlib.resources
import json

import numpy as np

from keras_openseg.evaluation.background_rule import normalize_class_name

SYNONYM_VOCABULARIES = ("ade150", "ade847", "pc59", "pc459", "voc20")


def load_synonyms(vocabulary):
    """The package's synonym lists of a benchmark vocabulary: `{class name: [names]}`.

    Args:
        vocabulary: str. One of `SYNONYM_VOCABULARIES`.
    """
    if vocabulary not in SYNONYM_VOCABULARIES:
        raise ValueError(f"`vocabulary` must be one of {SYNONYM_VOCABULARIES}, got {vocabulary!r}.")
    path = importlib.resources.files("keras_openseg.evaluation") / f"synonyms_{vocabulary}.json"
    return json.loads(path.read_text(encoding="utf-8"))


def _synonym_table(synonyms):
    if synonyms is True:
        table = {}
        for vocabulary in SYNONYM_VOCABULARIES:  # first vocabulary wins where two list the same name
            for name, names in load_synonyms(vocabulary).items():
                table.setdefault(normalize_class_name(name), names)
        return table
    if isinstance(synonyms, str):
        synonyms = load_synonyms(synonyms)
    if not isinstance(synonyms, dict):
        raise ValueError(
            "`synonyms` must be None, False, True, a vocabulary name from "
            f"{SYNONYM_VOCABULARIES} or a dict {{class name: [names]}}, got {synonyms!r}."
        )
    return {normalize_class_name(name): list(names) for name, names in synonyms.items()}


def class_queries(class_names, synonyms=None, split_names=True):
    """Names to query for each class.

    Args:
        class_names: list of str. The evaluation classes in label order.
        synonyms: None, bool, str or dict. None / False: each class by its own name(s). True: the package's
            synonym lists of all benchmarks. A vocabulary name (e.g. "ade150"): that benchmark's lists only. A
            dict `{class name: [names]}`: your own lists. Defaults to None.
        split_names: bool. A class without a synonym list whose name holds commas ("building, edifice") is
            queried by each comma-separated name (paper sec. 3.4: a max ensemble over the names); False keeps
            it as one string. Defaults to True.

    Returns:
        list of lists of str: the names of each class, de-duplicated, in order.

    Example:
    >>> class_queries(["tvmonitor", "building, edifice", "cat"], synonyms="voc20")
    [['tv monitor', 'television', 'monitor'], ['building', 'edifice'], ['cat']]
    >>> class_queries(["building, edifice"], split_names=False)
    [['building, edifice']]
    """
    table = _synonym_table(synonyms) if synonyms else {}
    queries = []
    for name in class_names:
        names = table.get(normalize_class_name(name))
        if names is None:
            names = str(name).split(",") if split_names else [str(name)]
        names = [n.strip() for n in names if n.strip()]
        queries.append(list(dict.fromkeys(names)) or [str(name).strip()])
    return queries


def resolve_prompt_templates(prompts):
    """`prompts` -> tuple of templates holding "{}" for the name, or None (bare names).

    The templates of `keras_openseg.text.prompts.resolve_prompts`, the one resolver of the option.

    Args:
        prompts: None / "none" (bare names), "default" or "single" (the sets of `keras_openseg.text.prompts`),
            the path of a text file of templates, or a list of templates.
    """
    from keras_openseg.text.prompts import resolve_prompts

    try:
        return resolve_prompts(prompts)[0]
    except ValueError as error:
        raise ValueError(f"`prompts`: {error}") from None


def embed_class_queries(text_embedder, queries, templates=None):
    """Embeds every name of every class once: `(text_embeddings [C, S, E] float32, name_valid [C, S] bool)`.

    S is the largest number of names of a class; unused slots hold zeros and `name_valid` False, the layout
    `OpenSegModel.segment(text_embeddings=..., name_valid=...)` takes.

    Args:
        text_embedder: object with `embed(texts, templates=None) -> [K, E]` (`keras_openseg.models.TextEmbedder`).
        queries: list of lists of str, from `class_queries`.
        templates: list of str or None. Prompt templates the embedder ensembles per name. Defaults to None.
    """
    if not queries or any(not names for names in queries):
        raise ValueError("`queries` must be a non-empty list of non-empty name lists.")
    unique = list(dict.fromkeys(name for names in queries for name in names))
    embeddings = np.asarray(text_embedder.embed(unique, templates=templates), np.float32)
    if embeddings.ndim != 2 or embeddings.shape[0] != len(unique):
        raise ValueError(
            f"`text_embedder.embed` must return [{len(unique)}, E] for {len(unique)} names, got {embeddings.shape}."
        )
    row = {name: i for i, name in enumerate(unique)}
    max_names = max(len(names) for names in queries)
    text_embeddings = np.zeros((len(queries), max_names, embeddings.shape[1]), np.float32)
    name_valid = np.zeros((len(queries), max_names), bool)
    for c, names in enumerate(queries):
        text_embeddings[c, : len(names)] = embeddings[[row[n] for n in names]]
        name_valid[c, : len(names)] = True
    return text_embeddings, name_valid
