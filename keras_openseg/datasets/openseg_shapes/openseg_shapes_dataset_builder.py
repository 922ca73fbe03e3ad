"""`openseg_shapes`: procedural images of textured shapes on stuff backgrounds, with panoptic segments,
captions and semantic labels. Needs no download."""

import dataclasses
import io

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from keras_openseg.datasets.openseg_shapes import world

_DESCRIPTION = """
Procedural scenes of shapes (circle, square, triangle, star, ring, cross, hexagon) in four colors, plain,
striped or dotted, partly occluding each other, on one to three textured "stuff" regions (sky, grass, water,
sand, wall). Each image has class-agnostic panoptic segments that partition it (stuff regions are segments
too), 1-5 template captions with synonyms, plurals, adjectives and distractor words, and a semantic label map
over the 12 shape and stuff classes.

The `held_out` split shows (color, shape) pairs that `train` and `validation` never show, and is the only split
whose captions name the hexagon; metadata `unseen_synonyms` lists names that no caption uses, for zero-shot
evaluation. Built from seeds, so every build gives the same examples. See README.md.
"""

_SPLITS = ("train", "validation", "held_out")


@dataclasses.dataclass
class OpenSegShapesConfig(tfds.core.BuilderConfig):
    """Size of the generated dataset.

    Args:
        image_size: int. Side of the square images in pixels.
        num_examples: dict. Examples per split ("train", "validation", "held_out").
        max_objects: int. At most this many shapes per image (at least 1).
        object_size: (float, float). Range of an object's diameter as a fraction of the image side.
    """

    image_size: int = 128
    num_examples: dict = dataclasses.field(default_factory=dict)
    max_objects: int = 3
    object_size: tuple = (0.3, 0.6)


class OpenSegShapes(tfds.core.GeneratorBasedBuilder):
    """DatasetBuilder for `openseg_shapes` (needs no download; every config builds from seeds).

    Example:
    ```python
    import tensorflow_datasets as tfds
    import keras_openseg.datasets.openseg_shapes  # registers the builder

    ds = tfds.load("openseg_shapes/tiny", split="train")
    example = next(iter(ds))  # image, panoptic_image, segments, captions, semantic
    ```
    """

    name = "openseg_shapes"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [
        OpenSegShapesConfig(
            name="tiny",
            description="64 px images, 32/8/8 examples: for tests; builds in seconds.",
            image_size=64,
            num_examples={"train": 32, "validation": 8, "held_out": 8},
        ),
        OpenSegShapesConfig(
            name="default",
            description="128 px images, 3000/300/300 examples: the demo, learnable by a small model on CPU.",
            image_size=128,
            num_examples={"train": 3000, "validation": 300, "held_out": 300},
        ),
        OpenSegShapesConfig(
            name="large",
            description="192 px images with up to 4 shapes, 20000/1000/1000 examples.",
            image_size=192,
            num_examples={"train": 20000, "validation": 1000, "held_out": 1000},
            max_objects=4,
            object_size=(0.25, 0.55),
        ),
    ]
    DEFAULT_BUILDER_CONFIG_NAME = "default"

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=_DESCRIPTION,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
                    "image/id": np.int64,
                    "panoptic_image": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
                    "segments": tfds.features.Sequence(
                        {
                            "id": np.int64,
                            "category_id": np.int64,
                            "area": np.int64,
                            "is_crowd": np.bool_,
                            "bbox": tfds.features.BBoxFeature(),
                        }
                    ),
                    "captions": tfds.features.Sequence(tfds.features.Text()),
                    "semantic": tfds.features.Image(shape=(None, None, 1), encoding_format="png"),
                }
            ),
            supervised_keys=None,
            homepage="https://arxiv.org/abs/2112.12143",
            metadata=tfds.core.MetadataDict(_metadata()),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # everything is drawn, nothing is downloaded
        return {split: self._generate_examples(split) for split in _SPLITS}

    def _generate_examples(self, split):
        config = self.builder_config
        offset = _SPLITS.index(split) * 10_000_000  # image ids unique across splits
        for index in range(config.num_examples[split]):
            example = world.render_example(
                split, index, config.image_size, max_objects=config.max_objects, object_size=config.object_size
            )
            yield (
                index,
                {
                    "image": _png(example["image"]),
                    "image/id": offset + index,
                    "panoptic_image": _png(example["panoptic_image"]),
                    "segments": [{**s, "bbox": tfds.features.BBox(*s["bbox"])} for s in example["segments"]],
                    "captions": example["captions"],
                    "semantic": _png(example["semantic"][..., 0]),
                },
            )


Builder = OpenSegShapes  # the name tfds looks for in a `*_dataset_builder.py` module


def _metadata():
    return {
        "categories": [
            {"id": i + 1, "name": name, "isthing": name in world.SHAPES} for i, name in enumerate(world.CLASS_NAMES)
        ],
        "class_names": list(world.CLASS_NAMES),
        "ignore_label": world.IGNORE_LABEL,
        "held_out_class_names": list(world.HELD_OUT_CLASS_NAMES),
        "held_out_pairs": [list(pair) for pair in world.HELD_OUT_PAIRS],
        "unseen_synonyms": world.UNSEEN_SYNONYMS,
        "caption_names": {name: list(names) for name, names in world.CAPTION_NAMES.items()},
        "colors": list(world.COLORS),
        "textures": list(world.TEXTURES),
    }


def _png(array):
    # PIL at the fastest zlib level: the build spends most of its time here, and the files stay small.
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="png", compress_level=1)
    return buffer.getvalue()
