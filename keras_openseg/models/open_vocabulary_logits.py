"""OpenSeg inference scores (sec. 3.4, eq. 6) as plain functions of the backbone outputs."""

import numpy as np
from keras import ops

from keras_openseg.losses.grounding_loss import l2_normalize

ENSEMBLES = ("max", "mean")


def _concrete(x):
    """`x` as a numpy array when it has values (eager), else None (a traced graph tensor)."""
    try:
        return np.asarray(ops.convert_to_numpy(x))
    except Exception:  # symbolic tensors and tracers have no values yet
        return None


def as_float32(x):
    """`x` as a float32 tensor, from a tensor or array of any float dtype.

    A numpy bfloat16 array (what `predict_on_batch` returns under `mixed_bfloat16`) is widened in numpy:
    Keras 3.15's torch backend keeps such an array bfloat16 in `ops.cast(x, "float32")`.
    """
    if isinstance(x, (np.ndarray, np.generic, list, tuple)):
        return ops.convert_to_tensor(np.asarray(x).astype("float32"))
    return ops.cast(x, "float32")


def _standardize_text_embeddings(text_embeddings, name_valid):
    """Text embeddings as `[C, S, E]` float32 and `name_valid` as `[C, S]` bool."""
    text_embeddings = as_float32(text_embeddings)
    if len(text_embeddings.shape) == 2:
        text_embeddings = text_embeddings[:, None, :]
        if name_valid is not None:
            raise ValueError("`name_valid` applies to `[C, S, E]` text embeddings; received `[C, E]` embeddings.")
    if len(text_embeddings.shape) != 3:
        raise ValueError(
            f"`text_embeddings` must be [C, E] or [C, S, E]. Received shape {tuple(text_embeddings.shape)}."
        )
    if name_valid is None:
        name_valid = ops.ones(ops.shape(text_embeddings)[:2], dtype="bool")
    else:
        name_valid = ops.cast(ops.convert_to_tensor(name_valid), "bool")
        if tuple(name_valid.shape) != tuple(text_embeddings.shape[:2]):
            raise ValueError(
                f"`name_valid` must be [C, S] = {tuple(text_embeddings.shape[:2])} like `text_embeddings`. "
                f"Received shape {tuple(name_valid.shape)}."
            )
    values = _concrete(name_valid)
    if values is not None and values.size and not values.any(axis=1).all():
        empty = np.flatnonzero(~values.any(axis=1)).tolist()
        raise ValueError(f"Every category needs at least one valid name; categories {empty} have none in `name_valid`.")
    return text_embeddings, name_valid


def category_embeddings(text_embeddings, name_valid=None):
    """One L2-normalized embedding per category: the mean of its normalized name embeddings, renormalized.

    This is the `ensemble="mean"` way to merge the names (synonyms) of a category.

    Args:
        text_embeddings: `[C, S, E]` (or `[C, E]`) text embeddings.
        name_valid: `[C, S]` bool or None. Which names are real (the rest is padding). Defaults to `None`.

    Returns:
        `[C, E]` float32, unit norm.
    """
    text_embeddings, name_valid = _standardize_text_embeddings(text_embeddings, name_valid)
    weights = ops.cast(name_valid, "float32")[:, :, None]
    mean = ops.sum(l2_normalize(text_embeddings) * weights, axis=1) / ops.maximum(ops.sum(weights, axis=1), 1.0)
    return l2_normalize(mean)


def segmentation_logits(masks, region_embeddings, text_embeddings, name_valid=None, ensemble="max"):
    """Per-pixel category logits from mask proposals and region embeddings (OpenSeg eq. 6).

    logit_c(p) = sum_n s_n(p) <w_c, z^_n>, with z^_n the L2-normalized region embedding of mask n and w_c the
    L2-normalized text embedding of category c. A category given by several names (synonyms, `[C, S, E]`)
    scores either the max over its valid names of their logits (`"max"`) or the logit of the renormalized
    mean of its normalized name embeddings (`"mean"`). Computed in float32 at the masks' resolution; never
    materializes `[B, N, H, W, E]`.

    Args:
        masks: `[B, N, H, W]` mask probabilities s (the sigmoid of the mask logits).
        region_embeddings: `[B, N, E]` region embeddings z (any norm).
        text_embeddings: `[C, E]` or `[C, S, E]` text embeddings w (any norm).
        name_valid: `[C, S]` bool or None. Which of the S names of each category are real (the rest is
            padding); every category needs one. Defaults to `None` (all valid).
        ensemble: `"max"` or `"mean"`. How the names of a category are merged. Defaults to `"max"`.

    Returns:
        `[B, C, H, W]` float32 logits.

    Example:

    >>> masks = np.random.uniform(size=(2, 4, 16, 16)).astype("float32")
    >>> regions = np.random.normal(size=(2, 4, 8)).astype("float32")
    >>> words = np.random.normal(size=(3, 2, 8)).astype("float32")
    >>> tuple(segmentation_logits(masks, regions, words, np.array([[1, 1], [1, 0], [1, 0]], bool)).shape)
    (2, 3, 16, 16)
    """
    if ensemble not in ENSEMBLES:
        raise ValueError(f"`ensemble` must be one of {ENSEMBLES}. Received: ensemble={ensemble!r}")
    masks = as_float32(masks)
    if len(masks.shape) != 4:
        raise ValueError(f"`masks` must be [B, N, H, W]. Received shape {tuple(masks.shape)}.")
    region_embeddings = as_float32(region_embeddings)
    if len(region_embeddings.shape) != 3:
        raise ValueError(f"`region_embeddings` must be [B, N, E]. Received shape {tuple(region_embeddings.shape)}.")
    text_embeddings, name_valid = _standardize_text_embeddings(text_embeddings, name_valid)
    if text_embeddings.shape[-1] != region_embeddings.shape[-1]:
        raise ValueError(
            f"`text_embeddings` have size {text_embeddings.shape[-1]} but `region_embeddings` have "
            f"{region_embeddings.shape[-1]}: the text encoder and the backbone's `embedding_dim` must agree."
        )
    regions = l2_normalize(region_embeddings)

    def logits_of(categories):  # [C, E] unit vectors -> [B, C, H, W]
        return ops.einsum("bnc,bnhw->bchw", ops.einsum("bne,ce->bnc", regions, categories), masks)

    return _merge_names(logits_of, text_embeddings, name_valid, ensemble)


def _merge_names(logits_of, text_embeddings, name_valid, ensemble):
    """The logits of categories given as several names: `logits_of` of their mean embedding (`"mean"`), or
    the max over each category's valid names of `logits_of` their embeddings (`"max"`).

    `logits_of` maps `[C, E]` unit embeddings to `[B, C, H, W]` logits. "max" computes one map per name slot
    and keeps the running max over the valid ones, so memory stays at one name's worth of logits whatever S is.
    """
    if ensemble == "mean":
        return logits_of(category_embeddings(text_embeddings, name_valid))
    names = l2_normalize(text_embeddings)
    logits = None
    for slot in range(text_embeddings.shape[1]):
        slot_logits = ops.where(name_valid[None, :, slot, None, None], logits_of(names[:, slot]), -np.inf)
        logits = slot_logits if logits is None else ops.maximum(logits, slot_logits)
    return logits


def region_pooled_pixel_features(masks, region_embeddings, epsilon=1e-6):
    """Per-pixel embeddings sum_n s_n(p) z^_n / sum_n s_n(p) (what the official OpenSeg release exports).

    Each pixel gets the mask-weighted average of the L2-normalized region embeddings covering it, so its dot
    product with a normalized text embedding is the eq. (6) logit divided by the total mask weight at p.

    Args:
        masks: `[B, N, H, W]` mask probabilities.
        region_embeddings: `[B, N, E]` region embeddings.
        epsilon: float. Floor of the total mask weight. Defaults to `1e-6`.

    Returns:
        `[B, H, W, E]` float32.
    """
    masks = as_float32(masks)
    regions = l2_normalize(as_float32(region_embeddings))
    pooled = ops.einsum("bnhw,bne->bhwe", masks, regions)
    return pooled / ops.maximum(ops.sum(masks, axis=1), epsilon)[..., None]


def pixel_logits(pixel_embeddings, text_embeddings, name_valid=None, ensemble="max"):
    """Per-pixel ablation of eq. (6): cosine similarity of each pixel embedding with each category.

    Without the mask proposals every pixel is classified from its own F_z embedding (the paper's "pixel"
    baseline): logit_c(p) = <F_z(p) / |F_z(p)|, w_c>, with the names of a category merged as in
    `segmentation_logits`.

    Args:
        pixel_embeddings: `[B, H, W, E]` pixel embeddings F_z.
        text_embeddings: `[C, E]` or `[C, S, E]` text embeddings.
        name_valid: `[C, S]` bool or None. Defaults to `None` (all valid).
        ensemble: `"max"` or `"mean"`. Defaults to `"max"`.

    Returns:
        `[B, C, H, W]` float32 logits.
    """
    if ensemble not in ENSEMBLES:
        raise ValueError(f"`ensemble` must be one of {ENSEMBLES}. Received: ensemble={ensemble!r}")
    pixels = as_float32(pixel_embeddings)
    if len(pixels.shape) != 4:
        raise ValueError(f"`pixel_embeddings` must be [B, H, W, E]. Received shape {tuple(pixels.shape)}.")
    text_embeddings, name_valid = _standardize_text_embeddings(text_embeddings, name_valid)
    pixels = l2_normalize(pixels)
    return _merge_names(
        lambda categories: ops.einsum("bhwe,ce->bchw", pixels, categories), text_embeddings, name_valid, ensemble
    )
