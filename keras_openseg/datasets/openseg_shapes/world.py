"""The procedural world of `openseg_shapes`: scenes of textured shapes on "stuff" backgrounds, with captions.

Everything is drawn with numpy from a `numpy.random.Generator`, so one example depends only on its seed and
examples can be generated in any order or in parallel.

The world is designed so that every kind of caption word carries signal a model can learn from (a prototype
with 8 colors, 6 small shapes and color-heavy captions taught colors and stuff but no shape word: captions
could be matched through their colors alone). Hence:

- few colors (4) for many shapes (7), objects large at the image size (22-50 % of the side);
- in half of the scenes every object has the same color, so color cannot tell the objects apart;
- about half of the captions name shapes without any color; nearly every caption names at least one shape;
- stuff regions (sky, grass, water, sand, wall) have their own textures and are segments like the objects.

Zero-shot material for evaluation:

- `HELD_OUT_PAIRS`: (color, shape) pairs never drawn in `train`/`validation`; every `held_out` image has one.
- `HELD_OUT_CLASS_NAMES`: "hexagon" is drawn in every split (its mask is a training target, class-agnostic)
  but named only in `held_out` captions; `train` captions call it "shape"/"object"/"thing" at most.
- `UNSEEN_SYNONYMS`: names of every class that no caption of any split contains (e.g. "round" for circle).
"""

import functools

import numpy as np

SHAPES = ("circle", "square", "triangle", "star", "ring", "cross", "hexagon")
STUFF = ("sky", "grass", "water", "sand", "wall")
CLASS_NAMES = SHAPES + STUFF
HELD_OUT_CLASS_NAMES = ("hexagon",)
IGNORE_LABEL = 255

COLORS = {
    "red": (214, 38, 38),
    "blue": (32, 78, 222),
    "yellow": (246, 202, 30),
    "purple": (128, 48, 178),
}
TEXTURES = ("plain", "striped", "dotted")
HELD_OUT_PAIRS = (
    ("blue", "circle"),
    ("yellow", "square"),
    ("purple", "triangle"),
    ("red", "star"),
    ("purple", "ring"),
    ("blue", "cross"),
)

# Names used in captions: singular -> plural. A class's first name is its class name.
CAPTION_NAMES = {
    "circle": {"circle": "circles", "disc": "discs", "disk": "disks"},
    "square": {"square": "squares", "box": "boxes"},
    "triangle": {"triangle": "triangles"},
    "star": {"star": "stars"},
    "ring": {"ring": "rings", "donut": "donuts"},
    "cross": {"cross": "crosses"},
    "hexagon": {"hexagon": "hexagons"},
}
GENERIC_NAMES = {"shape": "shapes", "object": "objects", "thing": "things"}
STUFF_PHRASES = {
    "sky": ("under the sky", "against the sky", "in the sky", "under a clear sky"),
    "grass": ("on the grass", "on a lawn", "on the meadow", "in the grass"),
    "water": ("on the water", "floating on the water", "on the lake", "in the sea", "above the sea"),
    "sand": ("on the sand", "at the beach", "on the beach", "in the sand"),
    "wall": ("in front of a wall", "against a brick wall", "before the bricks", "by the wall"),
}
STUFF_NOUNS = {
    "sky": ("the sky", "a clear sky"),
    "grass": ("grass", "a lawn", "a meadow"),
    "water": ("water", "a lake", "the sea"),
    "sand": ("sand", "a beach"),
    "wall": ("a wall", "a brick wall", "bricks"),
}
# Never written in any caption: lets an evaluation query classes by names the model never read.
UNSEEN_SYNONYMS = {
    "circle": ["round", "sphere"],
    "square": ["rectangle", "cube"],
    "triangle": ["pyramid", "wedge"],
    "star": ["pentagram", "starfish"],
    "ring": ["hoop", "doughnut"],
    "cross": ["plus sign", "crucifix"],
    "hexagon": ["six-sided shape"],
    "sky": ["heavens", "clouds"],
    "grass": ["turf", "field"],
    "water": ["ocean", "pond"],
    "sand": ["desert", "dune"],
    "wall": ["masonry", "brickwork"],
}
SIZE_WORDS = {"small": ("small", "little", "tiny"), "big": ("big", "large", "huge")}
TEXTURE_WORDS = {"striped": ("striped",), "dotted": ("dotted", "polka-dot")}
PREFIXES = (
    "a photo of",
    "an image of",
    "a picture of",
    "a drawing of",
    "a rendering of",
    "a simple illustration of",
    "a close-up of",
    "we can see",
    "this shows",
    "here we see",
    "look at",
)
SUFFIXES = (
    "on a sunny day",
    "in the afternoon",
    "in this scene",
    "at noon",
    "in bright light",
    "in a cartoon style",
    "for the children",
    "on a quiet morning",
)
NUMBERS = {2: "two", 3: "three", 4: "four", 5: "five"}

_SPLIT_CODES = {"train": 0, "validation": 1, "held_out": 2}
_SEED = 20220721


def render_example(split, index, image_size, max_objects=3, object_size=(0.3, 0.6)):
    """Draws example `index` of `split`, seeded by both: any order or process gives the same example.

    Args:
        split: str. "train", "validation" or "held_out"; decides the held-out pairs and names (module doc).
        index: int. Example index within the split.
        image_size: int. Side of the square image in pixels.
        max_objects: int. Objects per scene are drawn from 1..max_objects.
        object_size: (float, float). Range of the object diameter as a fraction of the image side.

    Returns:
        dict with "image" uint8 [S, S, 3], "panoptic_image" uint8 [S, S, 3] (id = R + 256 G + 256^2 B),
        "semantic" uint8 [S, S, 1] (class index), "segments" (list of dicts id, category_id, area, is_crowd,
        bbox [ymin, xmin, ymax, xmax] normalized), "captions" (list of str) and "objects" (list of dicts
        class, color, texture, size: what was drawn, for analyses; not a dataset feature). Segments partition
        the image.
    """
    if split not in _SPLIT_CODES:
        raise ValueError(f"`split` must be one of {sorted(_SPLIT_CODES)}, got {split!r}.")
    rng = np.random.default_rng([_SEED, _SPLIT_CODES[split], index])
    size = int(image_size)
    ys, xs = _pixel_centers(size)

    bands, band_map = _stuff_layout(rng, size, xs, ys)
    image = np.zeros((size, size, 3), np.float32)
    segment_map = np.zeros((size, size), np.int32)  # index into `parts`
    parts = []
    for band_index, stuff in enumerate(bands):
        region = band_map == band_index
        rows = np.nonzero(region.any(axis=1))[0]
        slab = slice(rows[0], rows[-1] + 1)  # textures are drawn only where their band can be
        texture = _stuff_texture(rng, stuff, size, xs[slab], ys[slab])
        np.copyto(image[slab], texture, where=region[slab, :, None])
        segment_map[region] = len(parts)
        parts.append({"class": stuff})

    objects = _place_objects(rng, size, xs, ys, split, max_objects, object_size)
    for obj in objects:
        row, column = np.clip(obj["center"].astype(int), 0, size - 1)
        obj["ground"] = bands[band_map[row, column]]  # what a caption says the object is on
        box = obj["box"]
        texture = _object_texture(rng, obj, size, xs[box], ys[box])
        np.copyto(image[box], texture, where=obj["mask"][box][..., None])
        segment_map[obj["mask"]] = len(parts)
        parts.append(obj)

    image = np.clip(np.round(image), 0, 255).astype(np.uint8)

    category_ids = np.array([CLASS_NAMES.index(p["class"]) + 1 for p in parts])
    instances = np.array([np.sum(category_ids[:i] == c) for i, c in enumerate(category_ids)])
    # COCO-like ids spread over the R and G channels, so decoders must combine the channels.
    panoptic_ids = category_ids * 1000 + instances
    areas = np.bincount(segment_map.ravel(), minlength=len(parts))
    in_row = np.zeros((len(parts), size), bool)
    in_row[segment_map, np.arange(size)[:, None]] = True
    in_column = np.zeros((len(parts), size), bool)
    in_column[segment_map, np.arange(size)[None, :]] = True
    segments = []
    for index in np.nonzero(areas)[0]:
        rows, cols = np.nonzero(in_row[index])[0], np.nonzero(in_column[index])[0]
        bbox = np.array([rows[0], cols[0], rows[-1] + 1, cols[-1] + 1], np.float64) / size
        segments.append(
            {
                "id": int(panoptic_ids[index]),
                "category_id": int(category_ids[index]),
                "area": int(areas[index]),
                "is_crowd": False,
                "bbox": bbox,
            }
        )
    palette = np.stack([panoptic_ids % 256, panoptic_ids // 256 % 256, panoptic_ids // 65536], -1).astype(np.uint8)
    panoptic = palette[segment_map]
    semantic = (category_ids - 1).astype(np.uint8)[segment_map][..., None]

    captions = _captions(rng, objects, bands, name_held_out=split == "held_out")
    return {
        "image": image,
        "panoptic_image": panoptic,
        "semantic": semantic,
        "segments": segments,
        "captions": captions,
        "objects": [{key: obj[key] for key in ("class", "color", "texture", "size")} for obj in objects],
    }


@functools.lru_cache(maxsize=8)
def _pixel_centers(size):
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    ys.flags.writeable = xs.flags.writeable = False
    return ys, xs


# ----------------------------------------------------------------------------------------------- stuff


def _stuff_layout(rng, size, xs, ys):
    """1-3 horizontal bands with wavy borders: sky/wall above grass/water/sand."""
    count = rng.choice([1, 2, 3], p=[0.25, 0.55, 0.2])
    if count == 1:
        bands = [str(rng.choice(STUFF))]
    elif count == 2:
        bands = [str(rng.choice(["sky", "wall"], p=[0.7, 0.3])), str(rng.choice(["grass", "water", "sand"]))]
    else:
        bands = ["sky"] + [str(s) for s in rng.choice(["grass", "water", "sand"], size=2, replace=False)]
    band_map = np.zeros((size, size), np.int32)
    borders = np.sort(rng.uniform(0.25, 0.75, size=count - 1))
    if count == 3 and borders[1] - borders[0] < 0.2:
        borders = np.array([0.3, 0.55]) + rng.uniform(-0.05, 0.05)
    for border, upper in zip(borders, bands[:-1]):
        amplitude = 0.0 if upper == "wall" else rng.uniform(0.0, 0.05) * size
        wavelength = rng.uniform(0.5, 1.5) * size
        line = border * size + amplitude * np.sin(2 * np.pi * xs / wavelength + rng.uniform(0, 2 * np.pi))
        band_map += (ys > line).astype(np.int32)
    return bands, band_map


def _stuff_texture(rng, stuff, size, xs, ys):
    """Texture of `stuff` at the pixel centers `xs`, `ys` (any sub-grid of the image), float32 [h, w, 3]."""
    unit = size / 128.0  # textures keep their look in pixels relative to a 128 px image
    shape = xs.shape
    if stuff == "sky":
        top, bottom = np.array([96, 150, 232], np.float32), np.array([180, 212, 246], np.float32)
        t = (ys / size)[..., None]
        image = top * (1 - t) + bottom * t
        for _ in range(rng.integers(0, 4)):
            cy, cx = rng.uniform(0.05, 0.6) * size, rng.uniform(0, 1) * size
            ry, rx = rng.uniform(0.04, 0.08) * size, rng.uniform(0.1, 0.22) * size
            cloud = np.exp(-(((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2))[..., None]
            image = image * (1 - 0.8 * cloud) + 250 * 0.8 * cloud
        return image
    if stuff == "grass":
        streak = max(int(round(5 * unit)), 2)
        rows = np.floor((ys[:, 0] + rng.integers(streak)) / streak).astype(np.int64)
        noise = rng.uniform(size=(size // streak + 2, size)).astype(np.float32)[rows]
        return np.array([58, 148, 52], np.float32) * (0.7 + 0.55 * noise)[..., None]
    if stuff == "water":
        waves = np.sin(ys / (2.2 * unit) + 1.5 * np.sin(xs / (9 * unit) + rng.uniform(0, 2 * np.pi)))
        crest = np.clip(waves - 0.6, 0, None)[..., None] / 0.4
        return np.array([26, 96, 140], np.float32) * (1 - crest) + np.array([150, 200, 220], np.float32) * crest
    if stuff == "sand":
        grains = rng.random(shape + (1,), dtype=np.float32)
        # most grains jitter the color a little; the 6 % darkest are dark specks
        shade = np.where(grains < 0.06, np.float32(-45.0), (grains - 0.5) * np.float32(36.0))
        return np.array([222, 196, 142], np.float32) + shade
    if stuff == "wall":
        height = rng.uniform(7, 11) * unit
        row = np.floor(ys / height)
        shifted = xs + (row % 2) * height
        column = np.floor(shifted / (2 * height))
        shade = _hash_noise(row, column, rng.integers(1 << 30))[..., None]
        brick = np.array([168, 72, 54], np.float32) * (0.8 + 0.4 * shade)
        mortar = ((ys % height) < 1.2 * unit) | ((shifted % (2 * height)) < 1.2 * unit)
        return np.where(mortar[..., None], np.array([196, 192, 184], np.float32), brick)
    raise ValueError(f"unknown stuff {stuff!r}")


def _hash_noise(a, b, salt):
    """Deterministic noise in [0, 1) per integer cell (a, b): one value per brick."""
    value = np.sin(a * 12.9898 + b * 78.233 + salt % 1000) * 43758.5453
    return value - np.floor(value)


# --------------------------------------------------------------------------------------------- objects


def _place_objects(rng, size, xs, ys, split, max_objects, object_size):
    count = int(rng.integers(1, max_objects + 1))
    shapes = [str(s) for s in rng.choice(SHAPES, size=count)]
    if count > 1 and rng.uniform() < 0.25:  # repeated shapes give plural captions ("two stars")
        shapes[1] = shapes[0]
    force_held_out = split == "held_out"
    if force_held_out:
        pair = HELD_OUT_PAIRS[rng.integers(len(HELD_OUT_PAIRS))]
        shapes[0] = pair[1]
    allowed = [[c for c in COLORS if split == "held_out" or (c, s) not in HELD_OUT_PAIRS] for s in shapes]
    shared = [c for c in COLORS if all(c in a for a in allowed)]
    if force_held_out:
        shared = [c for c in shared if c == pair[0]]
        allowed[0] = [pair[0]]
    same_color = rng.uniform() < 0.5 and shared
    shared_color = str(rng.choice(shared)) if same_color else None

    objects = []
    for shape, colors in zip(shapes, allowed):
        color = shared_color or str(rng.choice(colors))
        for _ in range(30):
            fraction = rng.uniform(*object_size)
            radius = fraction * size / 2
            center = rng.uniform(radius * 0.4, size - radius * 0.4, size=2)
            reach = 1.1 * radius
            box = tuple(slice(int(max(0, np.floor(c - reach))), int(min(size, np.ceil(c + reach)))) for c in center)
            mask = np.zeros((size, size), bool)
            mask[box] = _shape_mask(shape, center, radius, rng.uniform(0, 2 * np.pi), xs[box], ys[box])
            if mask.sum() < 0.6 * _shape_area(shape, radius):  # mostly inside the frame
                continue
            # Every earlier object keeps at least half of what it showed: occlusion, never disappearance.
            if all((o["mask"] & ~mask).sum() >= 0.5 * o["mask"].sum() for o in objects):
                break
        else:
            if objects:
                continue
        for o in objects:
            if o["occluded_by"] is None and (o["mask"] & mask).sum() > 0.15 * o["mask"].sum():
                o["occluded_by"] = shape
            o["mask"] = o["mask"] & ~mask
        objects.append(
            {
                "class": shape,
                "color": color,
                "texture": str(rng.choice(TEXTURES, p=[0.5, 0.25, 0.25])),
                "size": _size_word(fraction, object_size),
                "center": center,
                "radius": radius,
                "box": box,
                "mask": mask,
                "occluded_by": None,
            }
        )
    return objects


def _size_word(fraction, object_size):
    low, high = object_size
    third = (high - low) / 3
    return "small" if fraction < low + third else ("big" if fraction > high - third else "medium")


def _shape_area(shape, radius):
    """Area in pixels of the whole shape; shapes with thin parts are drawn larger to look as big as a disc."""
    return {
        "circle": np.pi * (0.92 * radius) ** 2,
        "ring": np.pi * ((0.95 * radius) ** 2 - (0.5 * radius) ** 2),
        "square": (2 * 0.78 * radius) ** 2,
        "triangle": 3 * np.sqrt(3) / 4 * (1.1 * radius) ** 2,
        "star": 5 * np.sin(2 * np.pi / 10) * (1.1 * radius) * (0.5 * 1.1 * radius),
        "hexagon": 3 * np.sqrt(3) / 2 * (0.95 * radius) ** 2,
        "cross": (8 * 0.95 * 0.36 - 4 * 0.36**2) * radius**2,  # two bars minus their shared square
    }[shape]


def _shape_mask(shape, center, radius, angle, xs, ys):
    dy, dx = ys - center[0], xs - center[1]
    if shape == "circle":
        return dy**2 + dx**2 <= (0.92 * radius) ** 2
    if shape == "ring":
        distance = dy**2 + dx**2
        return (distance <= (0.95 * radius) ** 2) & (distance >= (0.5 * radius) ** 2)
    if shape == "square":
        a = 0.78
        unit = np.array([[-a, -a], [-a, a], [a, a], [a, -a]])
    elif shape == "triangle":
        angles = np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        unit = 1.1 * np.stack([-np.sin(angles), np.cos(angles)], -1)
    elif shape == "star":
        angles = np.pi / 2 + np.arange(10) * np.pi / 5
        radii = 1.1 * np.where(np.arange(10) % 2 == 0, 1.0, 0.5)
        unit = np.stack([-np.sin(angles) * radii, np.cos(angles) * radii], -1)
    elif shape == "hexagon":
        angles = np.arange(6) * np.pi / 3
        unit = 0.95 * np.stack([np.sin(angles), np.cos(angles)], -1)
    elif shape == "cross":
        w, e = 0.36, 0.95
        unit = np.array(
            [[-e, -w], [-e, w], [-w, w], [-w, e], [w, e], [w, w], [e, w], [e, -w], [w, -w], [w, -e], [-w, -e], [-w, -w]]
        )
    else:
        raise ValueError(f"unknown shape {shape!r}")
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    vertices = unit @ rotation.T * radius + np.asarray(center)
    return _polygon_mask(vertices, xs, ys)


def _polygon_mask(vertices, xs, ys):
    """Even-odd rule, vectorized over pixels (vertices [V, 2] as (y, x))."""
    inside = np.zeros(xs.shape, bool)
    for (y0, x0), (y1, x1) in zip(vertices, np.roll(vertices, -1, axis=0)):
        if y0 == y1:
            continue
        crosses = (y0 > ys) != (y1 > ys)
        x_at = x0 + (ys - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (xs < x_at)
    return inside


def _object_texture(rng, obj, size, xs, ys):
    """Colored, shaded and patterned surface of `obj` at the pixel centers `xs`, `ys`, float32 [h, w, 3]."""
    color = (np.array(COLORS[obj["color"]]) + rng.uniform(-14, 14, size=3)).astype(np.float32)
    unit = size / 128.0
    dy, dx = (ys - obj["center"][0]) / obj["radius"], (xs - obj["center"][1]) / obj["radius"]
    light = rng.uniform(0, 2 * np.pi)
    shading = (1.0 + 0.12 * (np.float32(np.cos(light)) * dx + np.float32(np.sin(light)) * dy))[..., None]
    image = color * shading
    if obj["texture"] == "striped":
        direction = rng.uniform(0, np.pi)
        period = rng.uniform(7, 10) * unit
        phase = (np.cos(direction) * xs + np.sin(direction) * ys) / period
        image = np.where(((phase % 1.0) < 0.45)[..., None], image * 0.55, image)
    elif obj["texture"] == "dotted":
        period = rng.uniform(7, 10) * unit
        oy, ox = rng.uniform(0, period, size=2)
        dots = ((ys + oy) % period - period / 2) ** 2 + ((xs + ox) % period - period / 2) ** 2
        image = np.where((dots < (0.28 * period) ** 2)[..., None], image * 0.35 + 255 * 0.65, image)
    return image


# -------------------------------------------------------------------------------------------- captions


def _captions(rng, objects, bands, name_held_out):
    count = int(rng.integers(1, 6))
    captions = []
    for _ in range(count * 3):
        caption = _caption(rng, objects, bands, name_held_out)
        if caption not in captions:
            captions.append(caption)
        if len(captions) == count:
            break
    return captions


def _caption(rng, objects, bands, name_held_out):
    style = rng.choice(["shapes", "full", "color", "scene", "count", "tags"], p=[0.42, 0.35, 0.06, 0.09, 0.03, 0.05])
    if style == "tags":
        words = [_noun(rng, o["class"], False, name_held_out) for o in objects] + [
            _article_free(rng.choice(STUFF_NOUNS[b])) for b in bands
        ]
        words = list(dict.fromkeys(w for w in words if w not in GENERIC_NAMES))
        rng.shuffle(words)
        return ", ".join(words)
    if style == "scene":
        stuff = " and ".join(str(rng.choice(STUFF_NOUNS[b])) for b in bands)
        if rng.uniform() < 0.5:
            obj = objects[rng.integers(len(objects))]
            stuff = f"{stuff} with {_with_article(_noun(rng, obj['class'], False, name_held_out))}"
        return _decorate(rng, stuff)
    if style == "count":
        noun = rng.choice(list(GENERIC_NAMES.items()))
        phrase = f"a single {noun[0]}" if len(objects) == 1 else f"{NUMBERS[len(objects)]} {noun[1]}"
        return _decorate(rng, f"{phrase} {_stuff_phrase(rng, bands, objects[0]['ground'])}")

    mentioned = objects if rng.uniform() < 0.7 else [o for o in objects if rng.uniform() < 0.6] or objects[:1]
    groups = {}
    for obj in mentioned:
        key = {"shapes": obj["class"], "full": (obj["color"], obj["class"]), "color": obj["color"]}[style]
        groups.setdefault(key, []).append(obj)
    phrases = [_group_phrase(rng, style, members, name_held_out) for members in groups.values()]
    rng.shuffle(phrases)
    occluded = [o for o in mentioned if o["occluded_by"] and o["occluded_by"] != o["class"]]
    if len(phrases) == 2 and occluded and style != "color" and rng.uniform() < 0.35:
        joined = f"{phrases[0]} partly hidden behind {phrases[1]}"
    elif len(phrases) == 2:
        joined = f"{phrases[0]} {rng.choice(['and', 'next to', 'beside', 'near', 'with'])} {phrases[1]}"
    else:
        joined = ", ".join(phrases[:-1]) + " and " + phrases[-1] if len(phrases) > 1 else phrases[0]
    if rng.uniform() < 0.65:
        joined = f"{joined} {_stuff_phrase(rng, bands, mentioned[0]['ground'])}"
    return _decorate(rng, joined)


def _group_phrase(rng, style, members, name_held_out):
    count = len(members)
    if style == "color":
        if rng.uniform() < 0.4 and count == 1:
            return f"something {members[0]['color']}"
        head = rng.choice(list(GENERIC_NAMES))
        noun = head if count == 1 else GENERIC_NAMES[head]
        adjectives = [members[0]["color"]]
    else:
        noun = _noun(rng, members[0]["class"], count > 1, name_held_out)
        adjectives = []
        sizes = {m["size"] for m in members}
        textures = {m["texture"] for m in members}
        if len(sizes) == 1 and sizes != {"medium"} and rng.uniform() < 0.35:
            adjectives.append(str(rng.choice(SIZE_WORDS[sizes.pop()])))
        if len(textures) == 1 and textures != {"plain"} and rng.uniform() < 0.4:
            adjectives.append(str(rng.choice(TEXTURE_WORDS[textures.pop()])))
        if style == "full":
            colors = {m["color"] for m in members}
            if len(colors) == 1:
                adjectives.append(colors.pop())
            elif count == 2:  # "two squares, one red and one blue"
                first, second = members[0]["color"], members[1]["color"]
                return f"two {noun}, one {first} and one {second}"
    phrase = " ".join(adjectives + [noun])
    if count == 1:
        return _with_article(phrase)
    if count == 2 and rng.uniform() < 0.2:
        return f"a pair of {phrase}"
    return f"{NUMBERS[count]} {phrase}"


def _noun(rng, shape, plural, name_held_out):
    if shape in HELD_OUT_CLASS_NAMES and not name_held_out:
        names = GENERIC_NAMES
    else:
        names = CAPTION_NAMES[shape]
    singular = str(rng.choice(list(names)))
    return names[singular] if plural else singular


def _stuff_phrase(rng, bands, ground):
    """Where the objects are: the stuff under `ground`'s object first, sometimes another band too."""
    order = [ground] + [b for b in bands if b != ground]
    count = 1 if len(order) == 1 or rng.uniform() < 0.5 else 2
    return " ".join(str(rng.choice(STUFF_PHRASES[b])) for b in order[:count])


def _decorate(rng, text):
    if rng.uniform() < 0.45:
        text = f"{rng.choice(PREFIXES)} {text}"
    if rng.uniform() < 0.25:
        text = f"{text} {rng.choice(SUFFIXES)}"
    if rng.uniform() < 0.4:
        text = text[0].upper() + text[1:] + "."
    return text


def _with_article(phrase):
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _article_free(noun_phrase):
    return noun_phrase.split(" ", 1)[-1] if noun_phrase.split(" ", 1)[0] in ("a", "an", "the") else noun_phrase
