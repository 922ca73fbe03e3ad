"""Overlays of open-vocabulary segmentations (`keras-openseg segment`, in `segment_cli.py`, writes them).

`visualize(image, result, queries)` turns one image and its `OpenSegModel.segment` result into an RGB
array: the label map blended over the image in a fixed palette, with a legend of the queries that won any
pixel. It needs only numpy and Pillow (matplotlib is not required).

Example:

```python
result = model.segment(images, queries=["cat", ["person", "man"], "grass"])
overlay = keras_openseg.visualize(images[0], {"labels": result["labels"][0]}, ["cat", "person", "grass"])
PIL.Image.fromarray(overlay).save("overlay.png")
```
"""

import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

# 20 distinct colors (a categorical palette in the spirit of "tab20", written out as plain RGB triples), then
# deterministic pseudo-random colors for vocabularies larger than 20.
_BASE_PALETTE = np.array(
    [
        [31, 119, 180],
        [255, 127, 14],
        [44, 160, 44],
        [214, 39, 40],
        [148, 103, 189],
        [140, 86, 75],
        [227, 119, 194],
        [127, 127, 127],
        [188, 189, 34],
        [23, 190, 207],
        [174, 199, 232],
        [255, 187, 120],
        [152, 223, 138],
        [255, 152, 150],
        [197, 176, 213],
        [196, 156, 148],
        [247, 182, 210],
        [199, 199, 199],
        [219, 219, 141],
        [158, 218, 229],
    ],
    dtype=np.uint8,
)


def palette(num_colors):
    """`[num_colors, 3]` uint8 RGB colors: 20 distinct ones, then seeded random ones."""
    if num_colors <= len(_BASE_PALETTE):
        return _BASE_PALETTE[:num_colors]
    extra = np.random.default_rng(0).integers(0, 256, size=(num_colors - len(_BASE_PALETTE), 3))
    return np.concatenate([_BASE_PALETTE, extra.astype(np.uint8)])


def _query_name(query):
    return query if isinstance(query, str) else ", ".join(query)


def _to_numpy(x):
    # Backend tensors (tf, jax, torch) all convert through keras.ops; numpy passes through.
    if isinstance(x, np.ndarray):
        return x
    import keras

    return keras.ops.convert_to_numpy(x)


def visualize(image, result, queries, alpha=0.55, legend=True, proposals=None):
    """Draws a segmentation over its image.

    Args:
        image: array `[H, W, 3]`, uint8 or float in [0, 255]. The input image.
        result: dict with `"labels"` `[H, W]` int (index into `queries`), as returned by
            `OpenSegModel.segment` for one image. Pixels labelled -1 are left uncolored.
        queries: list. The queries in label order; an entry may be a string or a list of synonyms.
        alpha: float. Opacity of the label colors. Defaults to `0.55`.
        legend: bool. Whether to append a legend of the labels present. Defaults to `True`.
        proposals: optional array `[K, H, W]` of binary masks; their outlines are drawn in white
            (the `--top-proposals` view). Defaults to `None`.

    Returns:
        uint8 array `[H, W', 3]`: the overlay, widened on the right by the legend when `legend=True`.

    Example:

    >>> image = np.zeros((8, 8, 3), np.uint8)
    >>> labels = np.zeros((8, 8), np.int32); labels[:, 4:] = 1
    >>> visualize(image, {"labels": labels}, ["sky", "grass"], legend=False).shape
    (8, 8, 3)
    """
    image = _to_numpy(image)
    labels = _to_numpy(result["labels"]).astype(np.int64)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"`image` must be [H, W, 3]; got shape {image.shape}.")
    if labels.shape != image.shape[:2]:
        raise ValueError(f"`result['labels']` must match the image's [H, W] = {image.shape[:2]}; got {labels.shape}.")
    if labels.max(initial=-1) >= len(queries):
        raise ValueError(f"`result['labels']` holds label {labels.max()} but only {len(queries)} queries were given.")
    colors = palette(max(len(queries), 1))
    base = np.clip(image.astype(np.float32), 0, 255)
    overlay = base.copy()
    labelled = labels >= 0
    overlay[labelled] = (1 - alpha) * base[labelled] + alpha * colors[labels[labelled]]
    if proposals is not None:
        for mask in _to_numpy(proposals).astype(bool):
            overlay[_outline(mask)] = 255.0
    overlay = overlay.round().astype(np.uint8)
    if not legend:
        return overlay
    present = [int(i) for i in np.unique(labels[labelled])]
    return _append_legend(overlay, [(_query_name(queries[i]), colors[i]) for i in present])


def _outline(mask):
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return mask & ~inner


def _append_legend(overlay, entries):
    font = ImageFont.load_default()
    row, swatch, pad = 14, 10, 4
    width = 8 + swatch + pad + max([int(font.getlength(name)) for name, _ in entries] + [40])
    height = max(overlay.shape[0], pad + row * len(entries))
    panel = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(panel)
    for k, (name, color) in enumerate(entries):
        y = pad + k * row
        draw.rectangle([4, y, 4 + swatch, y + swatch], fill=tuple(int(c) for c in color))
        draw.text((4 + swatch + pad, y - 1), name, fill=(0, 0, 0), font=font)
    canvas = np.full((height, overlay.shape[1] + width, 3), 255, np.uint8)
    canvas[: overlay.shape[0], : overlay.shape[1]] = overlay
    canvas[:, overlay.shape[1] :] = np.asarray(panel)
    return canvas
