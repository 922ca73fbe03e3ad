"""Pascal VOC background rule (paper sec. 4.1): background is whatever the PC-59 classes outside VOC cover.

VOC's "background" is not a thing one can name in a text query. Following the paper, the model is queried
with the Pascal Context 59 classes together with the 20 VOC classes (the VOC names are all among the PC-59 ones,
so the union is the 59 names), and every pixel won by a PC-59 class that is not a VOC class counts as
background. `voc_background_rule` applies the rule to a prediction over such an extended vocabulary;
`evaluate(..., background_class_names=..., background_label=...)` applies the same rule while streaming.

The package reports this as PAS-20b (`pascal_voc/20b`, whose metadata carries the rule:
`dataset_background_options`). PAS-20 (`pascal_voc/20`) is the field's VOC benchmark without the rule: the 20
VOC names are queried and background pixels are not scored.

Spelling: the VOC names are the devkit's (`aeroplane`, `diningtable`, `motorbike`, `pottedplant`, `tvmonitor`).
Names are compared after `normalize_class_name` (lower case, no spaces, underscores or hyphens), so
`"tv monitor"` and `"tvmonitor"` are the same class.
"""

import numpy as np

from keras_openseg.evaluation.mean_iou import NO_CLASS
from keras_openseg.evaluation.mean_iou import to_numpy

VOC_CLASS_NAMES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip

PASCAL_CONTEXT_59_CLASS_NAMES = (
    "aeroplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat", "book", "bottle", "building", "bus",
    "cabinet", "car", "cat", "ceiling", "chair", "cloth", "computer", "cow", "cup", "curtain", "dog", "door", "fence",
    "floor", "flower", "food", "grass", "ground", "horse", "keyboard", "light", "motorbike", "mountain", "mouse",
    "person", "plate", "platform", "pottedplant", "road", "rock", "sheep", "shelves", "sidewalk", "sign", "sky",
    "snow", "sofa", "diningtable", "track", "train", "tree", "truck", "tvmonitor", "wall", "water", "window", "wood",
)  # fmt: skip


# The PC-59 classes outside VOC: what PAS-20b's background is made of (39 names).
VOC_BACKGROUND_CLASS_NAMES = tuple(name for name in PASCAL_CONTEXT_59_CLASS_NAMES if name not in VOC_CLASS_NAMES)


def dataset_background_options(metadata):
    """The `evaluate()` background arguments a dataset's builder metadata asks for (PAS-20b), else `{}`.

    Args:
        metadata: dict. `builder.info.metadata`; `pascal_voc/20b` holds `background_label` (0) and
            `background_class_names` (the PC-59 classes outside VOC).

    Returns:
        dict: `{"background_label": int, "background_class_names": list}` or `{}`.

    Example:
    >>> dataset_background_options({"background_label": 0, "background_class_names": ["sky"]})
    {'background_label': 0, 'background_class_names': ['sky']}
    >>> dataset_background_options({"class_names": ["aeroplane"]})
    {}
    """
    names = (metadata or {}).get("background_class_names")
    if not names:
        return {}
    return {"background_label": int(metadata["background_label"]), "background_class_names": list(names)}


def normalize_class_name(name):
    """Lower case without spaces, underscores or hyphens: the key under which class names are compared."""
    return "".join(ch for ch in str(name).lower() if ch not in " _-")


def voc_extended_vocabulary(voc_class_names=VOC_CLASS_NAMES, context_class_names=PASCAL_CONTEXT_59_CLASS_NAMES):
    """The query vocabulary of the rule: PC-59 names, then any VOC name PC-59 lacks (none for the real lists)."""
    names = list(context_class_names)
    known = {normalize_class_name(n) for n in names}
    names += [n for n in voc_class_names if normalize_class_name(n) not in known]
    return names


def background_query_labels(query_names, class_names, background_label=None):
    """The class id each query stands for: the class of the same (normalized) name, else `background_label`.

    Args:
        query_names: list of str. The names queried.
        class_names: list of str. The evaluation classes (label order).
        background_label: int or None. Label of the background class; None maps unknown names to `NO_CLASS`.

    Returns:
        int64 array `[len(query_names)]`.
    """
    index = {}
    for label, name in enumerate(class_names):
        index.setdefault(normalize_class_name(name), label)
    fallback = NO_CLASS if background_label is None else int(background_label)
    return np.array([index.get(normalize_class_name(n), fallback) for n in query_names], np.int64)


def voc_background_rule(predictions, extended_class_names, voc_class_names=VOC_CLASS_NAMES):
    """Maps a prediction over an extended vocabulary to VOC-21 labels (0 = background, k + 1 = VOC class k).

    Args:
        predictions: int array or tensor of any shape. Indices into `extended_class_names` (e.g. the argmax of
            `segment` logits queried with `voc_extended_vocabulary()`).
        extended_class_names: list of str. The queried names: PC-59 plus VOC-20 in the paper.
        voc_class_names: list of str. The 20 VOC classes in label order. Defaults to `VOC_CLASS_NAMES`.

    Returns:
        int64 numpy array of the shape of `predictions`: the VOC class when the winning name is a VOC class,
        0 (background) when it is any other name.

    Example:
    >>> names = voc_extended_vocabulary()
    >>> voc_background_rule([names.index("cat"), names.index("sky")], names).tolist()
    [8, 0]
    """
    predictions = to_numpy(predictions).astype(np.int64)
    if predictions.size and (predictions.min() < 0 or predictions.max() >= len(extended_class_names)):
        raise ValueError(
            f"`predictions` must index `extended_class_names` ({len(extended_class_names)} names), got values in "
            f"[{predictions.min()}, {predictions.max()}]."
        )
    voc21 = ["background"] + list(voc_class_names)
    return background_query_labels(extended_class_names, voc21, background_label=0)[predictions]
