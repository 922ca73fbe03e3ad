"""Overlays of open-vocabulary segmentations (`keras-openseg segment`, in `segment_cli.py`, writes them).

`visualize(image, result, queries)` turns one image and its `OpenSegModel.segment` result into an RGB
array: the label map blended over the image in a fixed palette, with a legend of the queries that won any
pixel. `panel_row(image, {"OpenSeg": labels, "ground truth": semantic}, queries)` lays out titled panels side
by side at a readable size (`panel_size`, default 256 px; label maps enlarged by nearest neighbour) with one
shared legend of the queries as given; `summary_sheet(rows, queries)` stacks such rows, one per image, with the
titles and the legend once (the demo's `overlays/summary.png`). Colors come from `palette` (distinct for
dozens of queries); ignored / unlabelled pixels are the neutral grey `IGNORE_COLOR`. It needs only numpy and
Pillow (matplotlib is not required); text uses PIL's own font, so nothing is downloaded.

Example:

```python
result = model.segment(images, queries=["cat", ["person", "man"], "grass"])
overlay = keras_openseg.visualize(images[0], {"labels": result["labels"][0]}, ["cat", "person", "grass"])
PIL.Image.fromarray(overlay).save("overlay.png")
```
"""

import colorsys

import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

# Well-separated qualitative colors first (after Sasha Trubetskoy's "20 simple, distinct colors", without its
# black, white and grey: grey is the ignore color), ordered so the first 12 are at least 100 apart in RGB; then
# hues spaced by the golden ratio, alternately dark and light, so `palette(n)[:m] == palette(m)` for any n.
_BASE_PALETTE = np.array(
    [
        [230, 25, 75],  # red
        [60, 180, 75],  # green
        [255, 225, 25],  # yellow
        [0, 130, 200],  # blue
        [145, 30, 180],  # purple
        [70, 240, 240],  # cyan
        [240, 50, 230],  # magenta
        [250, 190, 212],  # pink
        [170, 110, 40],  # brown
        [128, 0, 0],  # maroon
        [170, 255, 195],  # mint
        [0, 0, 128],  # navy
        [245, 130, 48],  # orange
        [210, 245, 60],  # lime
        [0, 128, 128],  # teal
        [220, 190, 255],  # lavender
        [255, 250, 200],  # beige
        [128, 128, 0],  # olive
        [255, 215, 180],  # apricot
    ],
    dtype=np.uint8,
)
_GOLDEN = 0.6180339887498949

IGNORE_COLOR = (128, 128, 128)
"""Neutral grey of ignored / unlabelled pixels (the ground truth's `ignore_label`, a prediction's -1)."""


def palette(num_colors):
    """Distinct RGB colors, one per query.

    The first 19 are a fixed qualitative list (the first 12 pairwise at least 100 apart in RGB, none near the
    grey `IGNORE_COLOR`); further ones are hues spaced by the golden ratio, alternately dark and light. A
    longer palette starts with the shorter one, so a query keeps its color when queries are added.

    Args:
        num_colors: int >= 0. How many colors.

    Returns:
        uint8 array `[num_colors, 3]`.

    Example:

    >>> palette(3).tolist()
    [[230, 25, 75], [60, 180, 75], [255, 225, 25]]
    >>> palette(40).shape
    (40, 3)
    """
    if int(num_colors) != num_colors or num_colors < 0:
        raise ValueError(f"`num_colors` must be an integer >= 0. Received: num_colors={num_colors!r}")
    num_colors = int(num_colors)
    if num_colors <= len(_BASE_PALETTE):
        return _BASE_PALETTE[:num_colors].copy()
    extra = []
    for k in range(num_colors - len(_BASE_PALETTE)):
        saturation, value = (0.75, 0.5) if k % 2 == 0 else (0.45, 0.85)
        rgb = colorsys.hsv_to_rgb((k * _GOLDEN) % 1.0, saturation, value)
        extra.append([round(255 * c) for c in rgb])
    return np.concatenate([_BASE_PALETTE, np.array(extra, np.uint8)])


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


# --- Panels: image | label maps side by side, one shared legend -------------------------------------------------


def _font(size):
    # PIL's own font: nothing is downloaded. Pillow >= 10.1 with FreeType scales it; older ones have one size.
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def _layout(panel_size):
    """Pixel sizes that scale with the panel: padding, font size, title band height, legend row height."""
    pad = max(4, panel_size // 32)
    font_size = max(10, panel_size // 14)
    return {"pad": pad, "font_size": font_size, "title": font_size + 2 * pad, "row": font_size + pad}


def legend_entries(queries, ignored=False):
    """The legend of a panel row or sheet: each query's text and color.

    The text is the query itself, as given (`"plus sign"` stays `"plus sign"`); a list of synonyms is joined
    with ", ". The color is the query's `palette` color, the one its pixels get in every panel.

    Args:
        queries: list. The queries in label order; an entry may be a string or a list of synonyms.
        ignored: bool. Whether to end with an `"ignored"` entry in `IGNORE_COLOR`. Defaults to `False`.

    Returns:
        list of `(text, (r, g, b))`.

    Example:

    >>> [text for text, _ in legend_entries(["plus sign", ["person", "man"]])]
    ['plus sign', 'person, man']
    """
    if isinstance(queries, str) or not len(queries):
        raise ValueError(f"`queries` must be a non-empty list of strings or synonym lists. Received: {queries!r}")
    colors = palette(len(queries))
    entries = [(_query_name(query), tuple(int(c) for c in color)) for query, color in zip(queries, colors)]
    if ignored:
        entries.append(("ignored", IGNORE_COLOR))
    return entries


def colorize(labels, num_classes, ignore_label=None):
    """A label map in the query colors: class `i` gets `palette(num_classes)[i]`, ignored pixels grey.

    Args:
        labels: int array `[H, W]` (or `[H, W, 1]`). Class indices in `[0, num_classes)`; negative values
            (a prediction's "no label") and `ignore_label` are shown in `IGNORE_COLOR`.
        num_classes: int. The number of queries.
        ignore_label: int or None. The ground truth's ignore value (e.g. 255). Defaults to `None`.

    Returns:
        uint8 array `[H, W, 3]`.

    Example:

    >>> colorize(np.array([[0, 1], [255, -1]]), 2, ignore_label=255).tolist()
    [[[230, 25, 75], [60, 180, 75]], [[128, 128, 128], [128, 128, 128]]]
    """
    labels = _label_map(labels, "labels")
    ignored = _ignored(labels, ignore_label)
    if (labels[~ignored] >= num_classes).any():
        raise ValueError(
            f"`labels` holds label {int(labels[~ignored].max())} but only {num_classes} classes (queries) were "
            f"given; ignore_label={ignore_label!r}."
        )
    colors = np.concatenate([palette(num_classes), np.array([IGNORE_COLOR], np.uint8)])
    return colors[np.where(ignored, num_classes, labels)]


def _label_map(labels, name):
    labels = _to_numpy(labels)
    if labels.ndim == 3 and labels.shape[-1] == 1:
        labels = labels[..., 0]
    if labels.ndim != 2:
        raise ValueError(f"`{name}` must be a [H, W] label map; got shape {labels.shape}.")
    return labels.astype(np.int64)


def _ignored(labels, ignore_label):
    ignored = labels < 0
    if ignore_label is not None:
        ignored |= labels == ignore_label
    return ignored


def _image_panel(image, panel_size):
    image = _to_numpy(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"`image` must be [H, W, 3]; got shape {image.shape}.")
    height, width = image.shape[:2]
    size = (max(1, round(width * panel_size / height)), panel_size)
    pixels = Image.fromarray(np.clip(image.astype(np.float32), 0, 255).round().astype(np.uint8))
    return pixels.resize(size, Image.BILINEAR), pixels


def _label_panels(image, label_maps, num_classes, panel_size, alpha, ignore_label):
    """The image panel and one panel per label map, each `panel_size` high, and whether any pixel is ignored."""
    if not isinstance(label_maps, dict):
        raise ValueError(f"`label_maps` must be a dict {{title: [H, W] labels}}. Received: {type(label_maps)}")
    image_panel, original = _image_panel(image, panel_size)
    panels, any_ignored = [image_panel], False
    for title, labels in label_maps.items():
        labels = _label_map(labels, f"label_maps[{title!r}]")
        ignored = _ignored(labels, ignore_label)
        any_ignored |= bool(ignored.any())
        try:
            colors = colorize(labels, num_classes, ignore_label)
        except ValueError as error:
            raise ValueError(f"`label_maps[{title!r}]`: {error}") from None
        if alpha < 1.0:
            base = np.asarray(original.resize(labels.shape[::-1], Image.BILINEAR), np.float32)
            blend = (1 - alpha) * base + alpha * colors.astype(np.float32)
            colors = np.where(ignored[..., None], colors, blend.round()).astype(np.uint8)
        # Nearest neighbour: label maps stay crisp, one label per enlarged pixel.
        panels.append(Image.fromarray(colors).resize(image_panel.size, Image.NEAREST))
    return panels, any_ignored


def _check_options(queries, panel_size, alpha):
    if isinstance(queries, str) or not len(queries):
        raise ValueError(f"`queries` must be a non-empty list of strings or synonym lists. Received: {queries!r}")
    if int(panel_size) != panel_size or panel_size < 16:
        raise ValueError(f"`panel_size` must be an integer >= 16 (pixels). Received: panel_size={panel_size!r}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"`alpha` must be in [0, 1]. Received: alpha={alpha!r}")


def _draw_legend(canvas, entries, left, top, layout):
    draw = ImageDraw.Draw(canvas)
    font = _font(layout["font_size"])
    swatch = layout["font_size"]
    for k, (text, color) in enumerate(entries):
        y = top + k * layout["row"]
        draw.rectangle([left, y, left + swatch - 1, y + swatch - 1], fill=color, outline=(0, 0, 0))
        draw.text((left + swatch + layout["pad"], y), text, fill=(0, 0, 0), font=font)


def _legend_size(entries, layout):
    font = _font(layout["font_size"])
    text = max(int(np.ceil(font.getlength(name))) for name, _ in entries)
    width = layout["font_size"] + 3 * layout["pad"] + text
    height = len(entries) * layout["row"] + layout["pad"]
    return width, height


def summary_sheet(rows, queries, panel_size=256, alpha=1.0, ignore_label=None, image_title="image"):
    """Rows of panels, one row per image, titled once at the top, with one shared legend on the right.

    Each row is the image, then one panel per label map (a prediction, a baseline's, the ground truth), all
    `panel_size` pixels high (label maps enlarged with nearest neighbour, the image bilinearly). Every panel
    uses the same colors (`palette`), so one legend of the queries, as given, reads all of them.

    Args:
        rows: list of `(image, label_maps)`: `image` `[H, W, 3]` (uint8 or float in [0, 255]) and `label_maps`
            a dict `{title: [H, W] int labels}` (index into `queries`) in panel order; every row has the same
            titles. Label maps of another size than the image are resized to the image's panel.
        queries: list. The queries in label order; an entry may be a string or a list of synonyms.
        panel_size: int >= 16. Each panel's height in pixels. Defaults to `256`.
        alpha: float in [0, 1]. Opacity of the label colors over the image; 1.0 draws plain label maps.
            Defaults to `1.0`.
        ignore_label: int or None. The label value shown in `IGNORE_COLOR` (with every negative value), e.g. the
            ground truth's 255. Defaults to `None`.
        image_title: str. The title above the image column. Defaults to `"image"`.

    Returns:
        uint8 array `[height, width, 3]`.

    Example:

    >>> image = np.zeros((8, 8, 3), np.uint8)
    >>> labels = np.zeros((8, 8), np.int32)
    >>> rows = [(image, {"OpenSeg": labels, "ground truth": labels})] * 3
    >>> sheet = summary_sheet(rows, ["sky", "plus sign"], panel_size=64)
    >>> sheet.shape[0] >= 3 * 64, sheet.shape[1] > 3 * 64
    (True, True)
    """
    _check_options(queries, panel_size, alpha)
    if not len(rows):
        raise ValueError("`rows` must hold at least one (image, label_maps) pair.")
    titles = None
    strips, any_ignored = [], False
    for index, row in enumerate(rows):
        if len(row) != 2:
            raise ValueError(f"`rows[{index}]` must be an (image, label_maps) pair.")
        image, label_maps = row
        panels, ignored = _label_panels(image, label_maps, len(queries), panel_size, alpha, ignore_label)
        row_titles = [image_title, *label_maps]
        if titles is not None and row_titles != titles:
            raise ValueError(f"`rows[{index}]` has panels {row_titles[1:]}, the first row {titles[1:]}.")
        titles = row_titles
        strips.append(panels)
        any_ignored |= ignored
    layout = _layout(panel_size)
    pad = layout["pad"]
    entries = legend_entries(queries, ignored=any_ignored)
    legend_width, legend_height = _legend_size(entries, layout)
    widths = [[panel.size[0] for panel in panels] for panels in strips]
    columns = [max(row[k] for row in widths) for k in range(len(titles))]
    panels_width = pad + sum(width + pad for width in columns)
    panels_height = layout["title"] + len(strips) * (panel_size + pad)
    width = panels_width + legend_width
    height = max(panels_height, layout["title"] + legend_height)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = _font(layout["font_size"])
    x = pad
    for title, column in zip(titles, columns):
        draw.text((x + column / 2, layout["title"] - pad), str(title), fill=(0, 0, 0), font=font, anchor="ms")
        x += column + pad
    for k, panels in enumerate(strips):
        y = layout["title"] + k * (panel_size + pad)
        x = pad
        for panel, column in zip(panels, columns):
            canvas.paste(panel, (x + (column - panel.size[0]) // 2, y))
            x += column + pad
    _draw_legend(canvas, entries, panels_width + pad, layout["title"], layout)
    return np.asarray(canvas)


def panel_row(image, label_maps, queries, panel_size=256, alpha=1.0, ignore_label=None, image_title="image"):
    """One image and its label maps side by side, titled, with one shared legend: one row of `summary_sheet`.

    E.g. `panel_row(image, {"OpenSeg": labels, "per-pixel baseline": baseline, "ground truth": semantic},
    queries, ignore_label=255)` draws image | OpenSeg | per-pixel baseline | ground truth.

    Args:
        image: array `[H, W, 3]`, uint8 or float in [0, 255].
        label_maps: dict `{title: [H, W] int labels}` (index into `queries`), in panel order.
        queries: list. The queries in label order; an entry may be a string or a list of synonyms.
        panel_size: int >= 16. Each panel's height in pixels. Defaults to `256`.
        alpha: float in [0, 1]. Opacity of the label colors over the image. Defaults to `1.0`.
        ignore_label: int or None. The label value shown in `IGNORE_COLOR`. Defaults to `None`.
        image_title: str. The title above the image. Defaults to `"image"`.

    Returns:
        uint8 array `[height, width, 3]`.

    Example:

    >>> image = np.zeros((32, 32, 3), np.uint8)
    >>> labels = np.ones((32, 32), np.int32)
    >>> row = panel_row(image, {"OpenSeg": labels, "ground truth": labels}, ["sky", "grass"], panel_size=64)
    >>> row.dtype, row.shape[1] > 3 * 64
    (dtype('uint8'), True)
    """
    return summary_sheet(
        [(image, label_maps)],
        queries,
        panel_size=panel_size,
        alpha=alpha,
        ignore_label=ignore_label,
        image_title=image_title,
    )
