"""`ade20k`: ADE20K semantic segmentation as the A-150 and A-847 benchmarks, from a manual download."""

import io
import pickle

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from etils import epath
from PIL import Image

from keras_openseg.datasets import _manual_dir

_HERE = epath.Path(__file__).parent
# the classes of the SceneParsing release, in its label-value order (value v of an annotation PNG is
# ADE150_CLASS_NAMES[v - 1]), short names as the benchmark writes them ("windowpane", "person").
ADE150_CLASS_NAMES = tuple(_HERE.joinpath("ade150_class_names.txt").read_text().splitlines())
# the benchmark's 847 classes of the full ADE20K release, in benchmark order, each written exactly as in
# the `objectnames` of the release's index_ade20k.pkl ("person, individual, someone, somebody, mortal, soul"),
# which is how the builder finds them.
ADE847_CLASS_NAMES = tuple(_HERE.joinpath("ade847_class_names.txt").read_text().splitlines())

_CHALLENGE_ROOT = "ADEChallengeData2016"
_FULL_ROOT = "ADE20K_2021_17_01"
# tfds split -> ADE's folder name (both releases).
_SPLITS = {"train": "training", "validation": "validation"}
_CONFIGS = {
    "150": {"class_names": ADE150_CLASS_NAMES, "ignore_label": 255},
    "847": {"class_names": ADE847_CLASS_NAMES, "ignore_label": 65535},
}


class ADE20K(tfds.core.GeneratorBasedBuilder):
    """ADE20K scene parsing as the A-150 and A-847 benchmarks, built from a manual download.

    OpenSeg evaluates zero-shot on ADE20K with 150 classes (A-150) and with 847 (A-847) (paper sec. 4.1).

    - `ade20k/150` reads the SceneParsing release `ADEChallengeData2016` (20,210 train, 2,000 validation
      images), whose annotation PNGs hold 0 = "other" and 1..150 the classes. `semantic` holds the class index
      0..149 (PNG value - 1) and 255 for "other" (`metadata["ignore_label"]`).
    - `ade20k/847` reads the full release `ADE20K_2021_17_01` (25,574 train, 2,000 validation images). Its
      `<image>_seg.png` encodes the object class of each pixel as `R / 10 * 256 + G` (0 = unannotated), the
      1-based position of the class in `objectnames` of `index_ade20k.pkl`. The builder maps each ADE object
      name to its index among the 847 benchmark names (`ADE847_CLASS_NAMES`) when the names are equal; pixels
      of the ~3,000 other ADE objects and unannotated pixels become 65535 (`ignore_label`, beyond every class).
      A benchmark name missing from `objectnames` is logged as a warning (that class then has no pixels).

    `metadata["class_names"]` lists the names in label-value order. Images keep their original size and
    JPEG bytes; `semantic` is a 1-channel uint16 PNG. A missing or damaged file stops the build with a
    `keras_openseg.datasets._manual_dir.ManualDirError` naming it.

    Example:
    ```python
    import tensorflow_datasets as tfds
    import keras_openseg.datasets  # registers the builders

    ds = tfds.load(
        "ade20k/150",
        split="validation",
        download_and_prepare_kwargs={
            "download_config": tfds.download.DownloadConfig(manual_dir="~/data/ade20k")
        },
    )
    ```
    """

    name = "ade20k"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: A-150 (ADEChallengeData2016) and A-847 (ADE20K_2021_17_01)."}
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(
            name="150",
            description="A-150 from ADEChallengeData2016: classes 0..149, 255 = other (ignore).",
        ),
        tfds.core.BuilderConfig(
            name="847",
            description="A-847 from ADE20K_2021_17_01: classes 0..846, 65535 = other objects and unannotated.",
        ),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Into one folder (the manual dir), for the config you build:
      ade20k/150: ADEChallengeData2016.zip from http://sceneparsing.csail.mit.edu/ (or
        http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip); unzip it there
        -> ADEChallengeData2016/{images,annotations}/{training,validation}/
      ade20k/847: ADE20K_2021_17_01.zip from https://groups.csail.mit.edu/vision/datasets/ADE20K/ (needs a free
        account); unzip it there
        -> ADE20K_2021_17_01/index_ade20k.pkl, ADE20K_2021_17_01/images/ADE/{training,validation}/<scene>/...
    Then: keras-openseg build-dataset ade20k/150 --manual-dir <manual dir>   (or ade20k/847)
    """

    def required_manual_paths(self):
        """The files and folders the manual dir must hold (see `keras_openseg.datasets._manual_dir`)."""
        if self.builder_config.name == "150":
            return [
                f"{_CHALLENGE_ROOT}/{kind}/{ade_split}"
                for kind in ("images", "annotations")
                for ade_split in _SPLITS.values()
            ]
        return [
            f"{_FULL_ROOT}/index_ade20k.pkl",
            *(f"{_FULL_ROOT}/images/ADE/{ade_split}" for ade_split in _SPLITS.values()),
        ]

    def _info(self):
        config = _CONFIGS[self.builder_config.name]
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                    "image/filename": tfds.features.Text(),
                    "semantic": tfds.features.Image(shape=(None, None, 1), dtype=np.uint16, encoding_format="png"),
                }
            ),
            supervised_keys=("image", "semantic"),
            homepage="https://groups.csail.mit.edu/vision/datasets/ADE20K/",
            metadata=tfds.core.MetadataDict(
                class_names=list(config["class_names"]), ignore_label=config["ignore_label"]
            ),
        )

    def _split_generators(self, dl_manager):
        manual_dir = dl_manager.manual_dir
        _manual_dir.check_manual_dir(manual_dir, self.required_manual_paths(), self.info.full_name)
        if self.builder_config.name == "150":
            return {split: self._generate_examples(manual_dir, ade_split) for split, ade_split in _SPLITS.items()}
        objectnames = read_objectnames(manual_dir, f"{_FULL_ROOT}/index_ade20k.pkl")
        class_mask_to_semantic = ade847_lookup_table(objectnames)
        return {
            split: self._generate_examples(manual_dir, ade_split, class_mask_to_semantic)
            for split, ade_split in _SPLITS.items()
        }

    def _generate_examples(self, manual_dir, ade_split, class_mask_to_semantic=None):
        if class_mask_to_semantic is None:
            image_dir = manual_dir / _CHALLENGE_ROOT / "images" / ade_split
            image_paths = sorted(image_dir.glob("*.jpg"))
        else:
            image_dir = manual_dir / _FULL_ROOT / "images" / "ADE" / ade_split
            # Scene folders nest (`cultural/apse__indoor/ADE_train_00001472.jpg`); every image is a .jpg.
            image_paths = sorted(
                (folder / name for folder, _, names in image_dir.walk() for name in names if name.endswith(".jpg")),
                key=lambda path: path.name,
            )
        for image_path in image_paths:
            image_file = str(image_path.relative_to(manual_dir))
            image = _manual_dir.read_image_bytes(manual_dir, image_file)
            if class_mask_to_semantic is None:
                label_file = f"{_CHALLENGE_ROOT}/annotations/{ade_split}/{image_path.stem}.png"
                semantic = ade150_semantic(_manual_dir.decode_image(manual_dir, label_file), label_file)
            else:
                label_file = image_file[: -len(".jpg")] + "_seg.png"
                class_mask = decode_class_mask(_manual_dir.decode_image(manual_dir, label_file), label_file)
                semantic = _lookup(class_mask_to_semantic, class_mask, label_file)
            _check_same_size(image, semantic, label_file)
            yield (
                image_path.stem,
                {
                    "image": image,
                    "image/filename": image_path.name,
                    "semantic": semantic[..., None],
                },
            )


def ade150_semantic(annotation, path="the annotation PNG"):
    """Maps an ADEChallengeData2016 annotation (`[H, W]`, 0 = other, 1..150) to A-150 labels (0..149, 255)."""
    if annotation.ndim != 2:
        raise _manual_dir.ManualDirError(f"{path}: expected a 1-channel annotation PNG, got shape {annotation.shape}.")
    if annotation.max(initial=0) > len(ADE150_CLASS_NAMES):
        raise _manual_dir.ManualDirError(f"{path}: value {annotation.max()} is beyond the 150 classes.")
    annotation = annotation.astype(np.int64)
    return np.where(annotation == 0, _CONFIGS["150"]["ignore_label"], annotation - 1).astype(np.uint16)


def decode_class_mask(seg, path="the _seg.png"):
    """Returns the ADE object class of each pixel of a full-release `_seg.png`: `R / 10 * 256 + G`.

    Args:
        seg: np.ndarray. `[H, W, 3]` (or 4) uint8 pixels of the `_seg.png`. R / 10 is the high byte of the
            class (R is a multiple of 10), G the low byte; B encodes instances and is not used.
        path: str. The file, named in errors. Defaults to "the _seg.png".

    Returns:
        np.ndarray. `[H, W]` int32: 0 = unannotated, else the 1-based position in `objectnames`.
    """
    if seg.ndim != 3 or seg.shape[-1] not in (3, 4):
        raise _manual_dir.ManualDirError(f"{path}: expected an RGB _seg.png, got pixels of shape {seg.shape}.")
    red, green = seg[..., 0].astype(np.int32), seg[..., 1].astype(np.int32)
    return red // 10 * 256 + green


def ade847_lookup_table(objectnames):
    """Returns the uint16 table mapping an ADE class-mask value to its A-847 label (65535 = ignore).

    Args:
        objectnames: list of str. `objectnames` of index_ade20k.pkl; class-mask value v names
            `objectnames[v - 1]`.

    Returns:
        np.ndarray. `[len(objectnames) + 1]` uint16; `table[class_mask]` is the `semantic` image.
    """
    benchmark_index = {name: index for index, name in enumerate(ADE847_CLASS_NAMES)}
    table = np.full(len(objectnames) + 1, _CONFIGS["847"]["ignore_label"], np.uint16)
    for position, name in enumerate(objectnames):
        if name in benchmark_index:
            table[position + 1] = benchmark_index[name]
    present = set(objectnames)
    unmatched = [name for name in ADE847_CLASS_NAMES if name not in present]
    if unmatched:
        logging.warning(
            "ade20k/847: %d of the 847 benchmark classes are not in index_ade20k.pkl's objectnames and get no "
            "pixels, e.g. %s",
            len(unmatched),
            unmatched[:5],
        )
    return table


def read_objectnames(manual_dir, relative_path):
    """Returns `objectnames` (list of str) of the full release's index_ade20k.pkl."""
    try:
        # The release distributes its index as a pickle; read only the official file.
        index = pickle.loads((epath.Path(manual_dir) / relative_path).read_bytes())
        return [str(name) for name in index["objectnames"]]
    except Exception as error:  # unpickling a damaged file raises many types
        raise _manual_dir.ManualDirError(
            f"{relative_path} in {manual_dir} is not ADE20K's index (a pickled dict with 'objectnames'): "
            f"{error!r}; unzip ADE20K_2021_17_01.zip again."
        ) from None


def _lookup(table, class_mask, path):
    if class_mask.max(initial=0) >= len(table):
        raise _manual_dir.ManualDirError(
            f"{path}: class {class_mask.max()} is beyond the {len(table) - 1} objectnames of index_ade20k.pkl; "
            "the index and the images must come from the same ADE20K_2021_17_01 release."
        )
    return table[class_mask]


def _check_same_size(image, semantic, path):
    # Pillow reads the size from the JPEG header without decoding the pixels.
    width, height = Image.open(io.BytesIO(image)).size
    if semantic.shape != (height, width):
        raise _manual_dir.ManualDirError(
            f"{path}: the label is {semantic.shape[1]}x{semantic.shape[0]} but its image is {width}x{height}."
        )
