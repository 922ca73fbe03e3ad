import numpy as np
import pytest
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

from keras_openseg import visualization
from keras_openseg.segment_cli import parse_queries
from keras_openseg.visualization import palette
from keras_openseg.visualization import visualize


def test_parse_queries_splits_categories_and_synonyms():
    assert parse_queries("cat; person, man, woman ;grass") == ["cat", ["person", "man", "woman"], "grass"]
    with pytest.raises(ValueError, match="--queries"):
        parse_queries(" ; ")


def test_overlay_blends_label_colors_and_keeps_unlabelled_pixels():
    image = np.full((6, 8, 3), 100, np.uint8)
    labels = np.full((6, 8), -1, np.int32)
    labels[:, :4] = 1
    out = visualize(image, {"labels": labels}, ["sky", "grass"], alpha=0.5, legend=False)
    expected = np.round(0.5 * 100 + 0.5 * palette(2)[1].astype(np.float32)).astype(np.uint8)
    np.testing.assert_array_equal(out[:, :4], np.broadcast_to(expected, (6, 4, 3)))
    np.testing.assert_array_equal(out[:, 4:], image[:, 4:])


def test_legend_widens_the_image_and_proposals_are_outlined():
    image = np.zeros((32, 32, 3), np.uint8)
    labels = np.zeros((32, 32), np.int32)
    proposal = np.zeros((1, 32, 32), bool)
    proposal[0, 8:24, 8:24] = True
    out = visualize(image, {"labels": labels}, [["person", "man"]], proposals=proposal)
    assert out.shape[0] == 32 and out.shape[1] > 32
    assert (out[8, 8:24] == 255).all() and (out[16, 16] != 255).any()


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="image"):
        visualize(np.zeros((4, 4)), {"labels": np.zeros((4, 4), int)}, ["a"])
    with pytest.raises(ValueError, match="labels"):
        visualize(np.zeros((4, 4, 3)), {"labels": np.zeros((3, 4), int)}, ["a"])
    with pytest.raises(ValueError, match="queries"):
        visualize(np.zeros((4, 4, 3)), {"labels": np.full((4, 4), 2)}, ["a"])


# --- Panels and summary sheets (issue 16, item 4) ----------------------------------------------------------------


def _positions(panel_size, num_panels, column_width=None):
    """Where `summary_sheet` puts things: the documented layout of `visualization._layout`."""
    layout = visualization._layout(panel_size)
    column = column_width or panel_size
    panels_width = layout["pad"] + num_panels * (column + layout["pad"])
    return layout, panels_width


def _sample(size=32):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (size, size, 3)).astype(np.uint8)
    prediction = rng.integers(0, 3, (size, size)).astype(np.int32)
    truth = rng.integers(0, 3, (size, size)).astype(np.int32)
    truth[:4] = 255
    return image, prediction, truth


def test_palette_colors_are_distinct_and_stable():
    colors = palette(40).astype(np.float64)
    distances = np.sqrt(((colors[:, None] - colors[None]) ** 2).sum(-1))
    np.fill_diagonal(distances, np.inf)
    assert distances[:12, :12].min() >= 60  # the first 12: at least 60 apart in RGB (they are >= 100)
    assert distances.min() >= 20  # all 40 told apart
    grey = np.asarray(visualization.IGNORE_COLOR, np.float64)
    assert np.sqrt(((colors - grey) ** 2).sum(-1)).min() >= 60  # no query looks ignored
    np.testing.assert_array_equal(palette(40)[:12], palette(12))  # a query keeps its color
    assert palette(0).shape == (0, 3)
    with pytest.raises(ValueError, match="num_colors"):
        palette(-1)


def test_colorize_matches_a_numpy_lookup_and_greys_ignored_pixels():
    labels = np.array([[0, 1, 2], [255, -1, 1]])
    out = visualization.colorize(labels[..., None], 3, ignore_label=255)
    colors = palette(3)
    expected = np.array([[colors[0], colors[1], colors[2]], [visualization.IGNORE_COLOR] * 2 + [colors[1]]], np.uint8)
    np.testing.assert_array_equal(out, expected)
    with pytest.raises(ValueError, match="labels"):
        visualization.colorize(np.array([[3]]), 3)
    with pytest.raises(ValueError, match="labels"):
        visualization.colorize(np.array([[255]]), 3)  # 255 is a class index unless it is the ignore_label


def test_panel_row_lays_out_titled_panels_at_the_panel_size_with_one_legend():
    image, prediction, truth = _sample()
    maps = {"OpenSeg": prediction, "per-pixel baseline": prediction[::-1], "ground truth": truth}
    queries = ["sky", "plus sign", ["person", "man"]]
    row = visualization.panel_row(image, maps, queries, panel_size=256, ignore_label=255)
    layout, panels_width = _positions(256, 4)
    pad, top = layout["pad"], layout["title"]
    assert row.dtype == np.uint8
    assert row.shape[0] == max(top + 256 + pad, top + 4 * layout["row"] + pad)  # 3 queries + "ignored"
    assert row.shape[1] > panels_width + visualization._legend_size([("person, man", (0, 0, 0))], layout)[0] - 1
    # Each label map: its colors enlarged 8x by nearest neighbour, in its column below its title.
    for k, (title, labels) in enumerate(maps.items(), start=1):
        x = pad + k * (256 + pad)
        expected = np.repeat(np.repeat(visualization.colorize(labels, 3, 255), 8, axis=0), 8, axis=1)
        np.testing.assert_array_equal(row[top : top + 256, x : x + 256], expected, err_msg=title)
        assert (row[:top, x : x + 256] < 128).any(), f"no title above {title}"
    # The ground truth's ignore rows (255) are the neutral grey.
    x = pad + 3 * (256 + pad)
    assert (row[top : top + 32, x : x + 256] == visualization.IGNORE_COLOR).all()
    assert (row[:top, :pad] == 255).all()  # white margin


def test_legend_text_is_each_query_as_given():
    image, prediction, truth = _sample(16)
    queries = ["plus sign", "six-sided shape", ["person", "man"]]
    entries = visualization.legend_entries(queries)
    assert [text for text, _ in entries] == ["plus sign", "six-sided shape", "person, man"]
    assert [color for _, color in entries] == [tuple(int(c) for c in color) for color in palette(3)]
    assert visualization.legend_entries(queries, ignored=True)[-1] == ("ignored", visualization.IGNORE_COLOR)
    truth[truth == 255] = 0  # no ignore pixel: no "ignored" entry
    row = visualization.panel_row(image, {"OpenSeg": prediction, "ground truth": truth}, queries, panel_size=128)
    layout, panels_width = _positions(128, 3)
    left, top, size, pad = panels_width + layout["pad"], layout["title"], layout["font_size"], layout["pad"]
    font = ImageFont.load_default(size=size)
    for k, (text, color) in enumerate(entries):
        y = top + k * layout["row"]
        assert tuple(row[y + size // 2, left + size // 2]) == color  # the swatch
        # The text, drawn in PIL's default font where the legend draws it, matches pixel for pixel.
        crop = row[y : y + layout["row"], left + size + pad :]
        reference = Image.new("RGB", (crop.shape[1], crop.shape[0]), (255, 255, 255))
        ImageDraw.Draw(reference).text((0, 0), text, fill=(0, 0, 0), font=font)
        np.testing.assert_array_equal(crop, np.asarray(reference), err_msg=text)
        joined = Image.new("RGB", reference.size, (255, 255, 255))
        ImageDraw.Draw(joined).text((0, 0), text.replace(" ", ""), fill=(0, 0, 0), font=font)
        assert (np.asarray(joined) != crop).any()  # "plussign" would not pass
    assert len(entries) == 3  # no ignore pixel, no "ignored" entry


def test_summary_sheet_stacks_rows_under_one_title_band_and_one_legend():
    rows = []
    for seed in range(3):
        image, prediction, truth = _sample(32)
        rows.append((image, {"OpenSeg": np.roll(prediction, seed), "ground truth": truth}))
    queries = ["circle", "square", "sky"]
    sheet = visualization.summary_sheet(rows, queries, panel_size=64, ignore_label=255)
    layout, panels_width = _positions(64, 3)
    pad, top = layout["pad"], layout["title"]
    legend_width, legend_height = visualization._legend_size(visualization.legend_entries(queries, True), layout)
    assert sheet.shape == (max(top + 3 * (64 + pad), top + legend_height), panels_width + legend_width, 3)
    for k, (_, maps) in enumerate(rows):
        y = top + k * (64 + pad)  # titles once: rows follow each other
        x = pad + 64 + pad
        expected = np.repeat(np.repeat(visualization.colorize(maps["OpenSeg"], 3), 2, axis=0), 2, axis=1)
        np.testing.assert_array_equal(sheet[y : y + 64, x : x + 64], expected)
    with pytest.raises(ValueError, match="rows"):
        visualization.summary_sheet([rows[0], (rows[1][0], {"OpenSeg": rows[1][1]["OpenSeg"]})], queries, 64, 1.0, 255)
    with pytest.raises(ValueError, match="rows"):
        visualization.summary_sheet([], queries)


def test_panels_blend_with_alpha_and_keep_the_aspect_ratio():
    image = np.full((16, 32, 3), 100, np.uint8)  # wide: panels 64 x 128
    labels = np.zeros((16, 32), np.int32)
    labels[:, 16:] = -1  # a prediction's "no label": grey, not blended
    row = visualization.panel_row(image, {"OpenSeg": labels}, ["sky"], panel_size=64, alpha=0.5)
    layout, _ = _positions(64, 2, column_width=128)
    pad, top = layout["pad"], layout["title"]
    np.testing.assert_array_equal(row[top : top + 64, pad : pad + 128], 100)  # the image, enlarged
    x = pad + 128 + pad
    blended = np.round(0.5 * 100 + 0.5 * palette(1)[0].astype(np.float32)).astype(np.uint8)
    np.testing.assert_array_equal(row[top : top + 64, x : x + 64], np.broadcast_to(blended, (64, 64, 3)))
    assert (row[top : top + 64, x + 64 : x + 128] == visualization.IGNORE_COLOR).all()


def test_panel_arguments_are_checked_by_name():
    image, prediction, _ = _sample(8)
    with pytest.raises(ValueError, match="panel_size"):
        visualization.panel_row(image, {"OpenSeg": prediction}, ["a", "b", "c"], panel_size=8)
    with pytest.raises(ValueError, match="alpha"):
        visualization.panel_row(image, {"OpenSeg": prediction}, ["a", "b", "c"], alpha=1.5)
    with pytest.raises(ValueError, match="queries"):
        visualization.panel_row(image, {"OpenSeg": prediction}, [])
    with pytest.raises(ValueError, match=r"label_maps\['OpenSeg'\]"):
        visualization.panel_row(image, {"OpenSeg": prediction}, ["a", "b"])
    with pytest.raises(ValueError, match="label_maps"):
        visualization.panel_row(image, [prediction], ["a", "b", "c"])
    with pytest.raises(ValueError, match="image"):
        visualization.panel_row(image[..., 0], {"OpenSeg": prediction}, ["a", "b", "c"])
