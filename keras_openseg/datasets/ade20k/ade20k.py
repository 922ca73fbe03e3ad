"""`ade20k`: ADE20K semantic segmentation as the A-150 and A-847 benchmarks, from a manual download."""

import dataclasses
import pickle

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from keras_openseg.datasets import manual_download
from keras_openseg.datasets import semantic_segmentation

_HERE = epath.Path(__file__).parent
# the classes of the SceneParsing release, in its label-value order (value v of an annotation PNG is
# ADE150_CLASS_NAMES[v - 1]), short names as the benchmark writes them ("windowpane", "person").
ADE150_CLASS_NAMES = tuple(_HERE.joinpath("ade150_class_names.txt").read_text().splitlines())
# the benchmark's 847 classes of the full ADE20K release in benchmark order (label value = train_id), each
# with its ADE20K object index (the value of the `_seg.png` class masks, 1 + its position in the `objectnames`
# of the release's index_ade20k.pkl) and its name there ("person, individual, someone, somebody, mortal, soul").
# Source: facebookresearch/MaskFormer, datasets/prepare_ade20k_full_sem_seg.py (ADE20K_SEM_SEG_FULL_CATEGORIES:
# id, trainId, name), the preparation CAT-Seg, SAN and FC-CLIP evaluate A-847 with.
_ADE847_ROWS = [line.split("\t") for line in _HERE.joinpath("ade847_ids.txt").read_text().splitlines()[1:]]
ADE847_OBJECT_INDICES = tuple(int(ade_id) for _, ade_id, _ in _ADE847_ROWS)
ADE847_CLASS_NAMES = tuple(name for _, _, name in _ADE847_ROWS)

_CHALLENGE_ROOT = "ADEChallengeData2016"
_FULL_ROOT = "ADE20K_2021_17_01"
# tfds split -> ADE's folder name (both releases).
_SPLITS = {"train": "training", "validation": "validation"}
_VOCABULARIES = {
    "150": {"class_names": ADE150_CLASS_NAMES, "ignore_label": 255},
    "847": {"class_names": ADE847_CLASS_NAMES, "ignore_label": 65535},
}
# The field evaluates ADE20K validation images with a shorter side of at most 512 (MaskFormer's preparation).
FIELD_MAX_SHORTER_SIDE = 512


@dataclasses.dataclass(eq=False)
class ADE20KConfig(tfds.core.BuilderConfig):
    """A config of `ade20k`: which vocabulary, and how the validation images are prepared.

    Args:
        vocabulary: str. "150" (A-150, ADEChallengeData2016) or "847" (A-847, ADE20K_2021_17_01).
        validation_max_shorter_side: int or None. Validation images whose shorter side is longer are resized
            to this shorter side (image bilinear, labels nearest, as MaskFormer prepares them); None keeps the
            original size. The train split always keeps its original size.
    """

    vocabulary: str = "150"
    validation_max_shorter_side: int | None = FIELD_MAX_SHORTER_SIDE


class ADE20K(tfds.core.GeneratorBasedBuilder):
    """ADE20K scene parsing as the A-150 and A-847 benchmarks, built from a manual download.

    OpenSeg evaluates zero-shot on ADE20K with 150 classes (A-150) and with 847 (A-847) (paper sec. 4.1).

    - `ade20k/150` reads the SceneParsing release `ADEChallengeData2016` (20,210 train, 2,000 validation
      images), whose annotation PNGs hold 0 = "other" and 1..150 the classes. `semantic` holds the class index
      0..149 (PNG value - 1) and 255 for "other" (`metadata["ignore_label"]`).
    - `ade20k/847` reads the full release `ADE20K_2021_17_01` (25,574 train, 2,000 validation images). Its
      `<image>_seg.png` encodes the object class of each pixel as `R / 10 * 256 + G` (0 = unannotated), the
      ADE20K object index, 1 + the position of the class in `objectnames` of `index_ade20k.pkl`. The builder
      maps the fixed object index of each of the 847 benchmark classes (`ADE847_OBJECT_INDICES`) to its label
      value, as the field does, after checking that `objectnames[index - 1]` is the class's name; pixels of
      the ~2,800 other ADE objects and unannotated pixels become 65535 (`ignore_label`, beyond every class).

    Validation images are prepared as the field evaluates them (MaskFormer's ADE20K preparation, also used by
    CAT-Seg, SAN and FC-CLIP): a shorter side above 512 is resized to 512 (image bilinear, labels nearest,
    the image re-encoded as a JPEG of quality 75). `ade20k/150_original_size` and `ade20k/847_original_size`
    keep the original sizes; `metadata["validation_max_shorter_side"]` says which (512 or None). Train images
    keep their original size and JPEG bytes in every config.

    `metadata["class_names"]` lists the names in label-value order; `semantic` is a 1-channel uint16 PNG. A
    missing or damaged file stops the build with a `keras_openseg.datasets.ManualDirError` naming it.

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
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release: A-150 (ADEChallengeData2016) and A-847 (ADE20K_2021_17_01).",
        "1.1.0": "The field's protocol: A-847 labels by ADE20K object index (checked against objectnames); "
        "validation at a shorter side of at most 512; *_original_size configs keep the original size.",
    }
    BUILDER_CONFIGS = [
        ADE20KConfig(
            name="150",
            vocabulary="150",
            description="A-150 from ADEChallengeData2016: classes 0..149, 255 = other (ignore); validation at a "
            "shorter side of at most 512.",
        ),
        ADE20KConfig(
            name="847",
            vocabulary="847",
            description="A-847 from ADE20K_2021_17_01: classes 0..846 by ADE object index, 65535 = other objects "
            "and unannotated; validation at a shorter side of at most 512.",
        ),
        ADE20KConfig(
            name="150_original_size",
            vocabulary="150",
            validation_max_shorter_side=None,
            description="A-150 with validation images at their original size.",
        ),
        ADE20KConfig(
            name="847_original_size",
            vocabulary="847",
            validation_max_shorter_side=None,
            description="A-847 with validation images at their original size.",
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
        """The files and folders the manual dir must hold (see `keras_openseg.datasets.manual_download`)."""
        if self.builder_config.vocabulary == "150":
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
        config = self.builder_config
        vocabulary = _VOCABULARIES[config.vocabulary]
        max_side = config.validation_max_shorter_side
        return self.dataset_info_from_configs(
            features=semantic_segmentation.semantic_segmentation_features(),
            supervised_keys=("image", "semantic"),
            homepage="https://groups.csail.mit.edu/vision/datasets/ADE20K/",
            metadata=tfds.core.MetadataDict(
                class_names=list(vocabulary["class_names"]),
                ignore_label=vocabulary["ignore_label"],
                validation_max_shorter_side=max_side,
                preparation={
                    "train": "original size",
                    "validation": "original size"
                    if max_side is None
                    else f"shorter side at most {max_side} (image bilinear, JPEG quality "
                    f"{semantic_segmentation.RESIZED_JPEG_QUALITY}; labels nearest), as MaskFormer's "
                    "datasets/prepare_ade20k_full_sem_seg.py",
                    "labels": "ADE20K object index -> A-847 class (MaskFormer's ADE20K_SEM_SEG_FULL_CATEGORIES)"
                    if config.vocabulary == "847"
                    else "ADEChallengeData2016 annotation value - 1, 0 -> 255",
                },
            ),
        )

    def _split_generators(self, dl_manager):
        manual_dir = dl_manager.manual_dir
        manual_download.check_manual_dir(manual_dir, self.required_manual_paths(), self.info.full_name)
        class_mask_to_semantic = None
        if self.builder_config.vocabulary == "847":
            index_file = f"{_FULL_ROOT}/index_ade20k.pkl"
            class_mask_to_semantic = ade847_lookup_table(read_objectnames(manual_dir, index_file), index_file)
        max_side = self.builder_config.validation_max_shorter_side
        return {
            split: self._generate_examples(
                manual_dir, ade_split, class_mask_to_semantic, max_side if split == "validation" else None
            )
            for split, ade_split in _SPLITS.items()
        }

    def _generate_examples(self, manual_dir, ade_split, class_mask_to_semantic=None, max_shorter_side=None):
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
            image = manual_download.read_image_bytes(manual_dir, image_file)
            if class_mask_to_semantic is None:
                label_file = f"{_CHALLENGE_ROOT}/annotations/{ade_split}/{image_path.stem}.png"
                semantic = ade150_semantic(manual_download.decode_image(manual_dir, label_file), label_file)
            else:
                label_file = image_file[: -len(".jpg")] + "_seg.png"
                class_mask = decode_class_mask(manual_download.decode_image(manual_dir, label_file), label_file)
                semantic = _lookup(class_mask_to_semantic, class_mask, label_file)
            semantic_segmentation.check_same_size(image, semantic, label_file)
            if max_shorter_side is not None:
                image, semantic = semantic_segmentation.resize_to_shorter_side(image, semantic, max_shorter_side)
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
        raise manual_download.ManualDirError(
            f"{path}: expected a 1-channel annotation PNG, got shape {annotation.shape}."
        )
    if annotation.max(initial=0) > len(ADE150_CLASS_NAMES):
        raise manual_download.ManualDirError(f"{path}: value {annotation.max()} is beyond the 150 classes.")
    annotation = annotation.astype(np.int64)
    return np.where(annotation == 0, _VOCABULARIES["150"]["ignore_label"], annotation - 1).astype(np.uint16)


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
        raise manual_download.ManualDirError(f"{path}: expected an RGB _seg.png, got pixels of shape {seg.shape}.")
    red, green = seg[..., 0].astype(np.int32), seg[..., 1].astype(np.int32)
    return red // 10 * 256 + green


def ade847_lookup_table(objectnames, path="index_ade20k.pkl"):
    """Returns the uint16 table mapping an ADE object index (class-mask value) to its A-847 label (65535 = ignore).

    Each benchmark class is found by its fixed ADE20K object index (`ADE847_OBJECT_INDICES`), never by name:
    `objectnames` repeats some names, and a name match would label the other objects of that name too.

    Args:
        objectnames: list of str. `objectnames` of index_ade20k.pkl; class-mask value v names
            `objectnames[v - 1]`.
        path: str. The index file, named in errors. Defaults to "index_ade20k.pkl".

    Returns:
        np.ndarray. `[len(objectnames) + 1]` uint16; `table[class_mask]` is the `semantic` image.

    Raises:
        ManualDirError: `objectnames[index - 1]` is not the class's name for some class (the message names the
            index and both names), or `objectnames` is too short for an index.
    """
    mismatches = []
    for label, (index, name) in enumerate(zip(ADE847_OBJECT_INDICES, ADE847_CLASS_NAMES)):
        found = objectnames[index - 1].strip() if index <= len(objectnames) else None
        if found != name:
            shown = "absent" if found is None else repr(found)
            mismatches.append(
                f"objectnames[{index - 1}] (ADE object index {index}) is {shown}, not class {label} {name!r}"
            )
    if mismatches:
        raise manual_download.ManualDirError(
            f"{path}: {len(mismatches)} of the 847 A-847 classes are not at their ADE20K object index "
            f"({len(objectnames)} objectnames): {'; '.join(mismatches[:3])}. The index and the images must come "
            "from the same ADE20K_2021_17_01 release."
        )
    table = np.full(len(objectnames) + 1, _VOCABULARIES["847"]["ignore_label"], np.uint16)
    table[list(ADE847_OBJECT_INDICES)] = np.arange(len(ADE847_OBJECT_INDICES))
    return table


def read_objectnames(manual_dir, relative_path):
    """Returns `objectnames` (list of str) of the full release's index_ade20k.pkl."""
    try:
        # The release distributes its index as a pickle; read only the official file.
        index = pickle.loads((epath.Path(manual_dir) / relative_path).read_bytes())
        return [str(name) for name in index["objectnames"]]
    except Exception as error:  # unpickling a damaged file raises many types
        raise manual_download.ManualDirError(
            f"{relative_path} in {manual_dir} is not ADE20K's index (a pickled dict with 'objectnames'): "
            f"{error!r}; unzip ADE20K_2021_17_01.zip again."
        ) from None


def _lookup(table, class_mask, path):
    if class_mask.max(initial=0) >= len(table):
        raise manual_download.ManualDirError(
            f"{path}: class {class_mask.max()} is beyond the {len(table) - 1} objectnames of index_ade20k.pkl; "
            "the index and the images must come from the same ADE20K_2021_17_01 release."
        )
    return table[class_mask]
