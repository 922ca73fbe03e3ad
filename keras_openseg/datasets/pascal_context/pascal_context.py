"""`pascal_context`: PASCAL-Context semantic segmentation (PC-59 and PC-459), from a manual download."""

import io

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from etils import epath

from keras_openseg.datasets import manual_download
from keras_openseg.datasets import semantic_segmentation

_HERE = epath.Path(__file__).parent
# The 459 labels in label-value order (`LabelMap` value 1 is the first), spelled as PASCAL-Context's
# labels.txt spells them ("air conditioner"; the benchmark lists of other projects join the words,
# "airconditioner", and are otherwise identical).
PC459_CLASS_NAMES = tuple(_HERE.joinpath("pc459_class_names.txt").read_text().splitlines())
# The 59 most frequent labels in the PC-59 benchmark order, which is their order in the 459 list; PC-59 spells
# the 459 list's "table" as "diningtable" (as VOC does).
PC59_CLASS_NAMES = tuple(_HERE.joinpath("pc59_class_names.txt").read_text().splitlines())
_PC59_ALIASES = {"diningtable": "table"}

_ROOT = "VOCdevkit/VOC2010"
# tfds split -> VOC 2010's ImageSets/Main list: PASCAL-Context annotates all of VOC 2010 trainval (train 4,998
# images, val 5,105).
_SPLITS = {"train": "train", "validation": "val"}
# The field's train list (4,996 images: the train images of the Detail API's trainval_merged.json), as
# mmsegmentation's PASCAL-Context converter writes it. Used instead of Main/train.txt when the manual dir has it.
FIELD_TRAIN_LIST = f"{_ROOT}/ImageSets/SegmentationContext/train.txt"
# The 5,104 validation images the field evaluates PC-59 / PC-459 on (VOC 2010's Main/val.txt has one image
# more). Source: cvlab-kaist/CAT-Seg, datasets/pascalcontext_val.txt (the val split of the Detail API's
# trainval_merged.json that MaskFormer, SAN and FC-CLIP evaluate on too).
FIELD_VALIDATION_IDS = tuple(_HERE.joinpath("pascal_context_val_5104.txt").read_text().split())
_CONFIGS = {
    "59": {"class_names": PC59_CLASS_NAMES, "ignore_label": 255},
    "459": {"class_names": PC459_CLASS_NAMES, "ignore_label": 65535},
}


class PascalContext(tfds.core.GeneratorBasedBuilder):
    """PASCAL-Context: full-scene labels of PASCAL VOC 2010, as the PC-59 and PC-459 benchmarks.

    OpenSeg evaluates zero-shot on PASCAL-Context with its 59 most frequent classes (PC-59) and with all 459
    (PC-459) (paper sec. 4.1). Both configs read the same files: the VOC 2010 JPEGs and PASCAL-Context's
    `trainval/<image id>.mat`, whose `LabelMap` holds values 1..459 (rows of `labels.txt`), 0 = unlabeled.

    - `pascal_context/459`: `semantic = LabelMap - 1`, i.e. 0..458 in `labels.txt` order; unlabeled pixels are
      `65535` (`metadata["ignore_label"]`; 255 would be a class here). `class_names` use labels.txt's spelling
      ("air conditioner", "tvmonitor"). The class "unknown" is a class, as in the benchmark.
    - `pascal_context/59`: the 59 classes of PC-59 in its benchmark order (0..58); pixels of the other 400
      classes and unlabeled pixels are `255` (`ignore_label`). `class_names` use the benchmark spelling
      (`diningtable` for labels.txt's "table", `pottedplant`, `tvmonitor`).

    Splits: `validation`, the benchmark split: the 5,104 images of `val.txt` that the field evaluates on
    (`FIELD_VALIDATION_IDS`); the one other image of `val.txt` is left out and named in
    `metadata["validation_excluded_ids"]`. `train`: the field's 4,996 images when the manual dir holds their
    list, `ImageSets/SegmentationContext/train.txt` (the train images of the Detail API's trainval_merged.json,
    as mmsegmentation's converter writes them); otherwise VOC 2010's `ImageSets/Main/train.txt` (4,998).
    `metadata["train_ids"]` records which list was used. No PASCAL-Context image trains OpenSeg, so only
    `validation` gives benchmark numbers.

    The builder checks that `labels.txt` lists the 459 names it expects (ignoring spaces), so a label-value
    mismatch cannot go unnoticed. A missing or damaged file stops the build with a
    `keras_openseg.datasets.ManualDirError` naming it.

    Example:
    ```python
    import tensorflow_datasets as tfds
    import keras_openseg.datasets  # registers the builders

    ds = tfds.load(
        "pascal_context/59",
        split="validation",
        download_and_prepare_kwargs={
            "download_config": tfds.download.DownloadConfig(manual_dir="~/data/pascal_context")
        },
    )
    ```
    """

    name = "pascal_context"
    VERSION = tfds.core.Version("1.2.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release: PC-59 and PC-459 train/val from the 459-label .mat files.",
        "1.1.0": "validation = the field's 5,104 images (VOC 2010 val.txt lists 5,105).",
        "1.2.0": "train = the field's 4,996 images when ImageSets/SegmentationContext/train.txt is present.",
    }
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(
            name="59",
            description="PC-59: the 59 benchmark classes (0..58), every other pixel 255 = ignore.",
        ),
        tfds.core.BuilderConfig(
            name="459",
            description="PC-459: all 459 labels (0..458, labels.txt order), unlabeled pixels 65535 = ignore.",
        ),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Into one folder (the manual dir):
      1. VOCtrainval_03-May-2010.tar from http://host.robots.ox.ac.uk/pascal/VOC/voc2010/
         tar -xf VOCtrainval_03-May-2010.tar -C <manual dir>
         -> VOCdevkit/VOC2010/JPEGImages/*.jpg, VOCdevkit/VOC2010/ImageSets/Main/{train,val}.txt
      2. trainval.tar.gz (the full 459-label annotation) from https://cs.stanford.edu/~roozbeh/pascal-context/
         tar -xzf trainval.tar.gz -C <manual dir>/VOCdevkit/VOC2010
         -> VOCdevkit/VOC2010/trainval/*.mat, VOCdevkit/VOC2010/labels.txt
    Then: keras-openseg build-dataset pascal_context/59 --manual-dir <manual dir>   (or pascal_context/459)
    """

    def required_manual_paths(self):
        """The files and folders the manual dir must hold (see `keras_openseg.datasets.manual_download`)."""
        return [
            f"{_ROOT}/JPEGImages",
            *(f"{_ROOT}/ImageSets/Main/{voc_split}.txt" for voc_split in _SPLITS.values()),
            f"{_ROOT}/trainval",
            f"{_ROOT}/labels.txt",
        ]

    def _info(self):
        config = _CONFIGS[self.builder_config.name]
        return self.dataset_info_from_configs(
            features=semantic_segmentation.semantic_segmentation_features(),
            supervised_keys=("image", "semantic"),
            homepage="https://cs.stanford.edu/~roozbeh/pascal-context/",
            metadata=tfds.core.MetadataDict(
                class_names=list(config["class_names"]),
                ignore_label=config["ignore_label"],
                validation_ids="pascal_context_val_5104.txt: the field's 5,104 validation images "
                "(cvlab-kaist/CAT-Seg datasets/pascalcontext_val.txt)",
                validation_excluded_ids=[],
                train_ids="",
            ),
        )

    def _split_generators(self, dl_manager):
        manual_dir = dl_manager.manual_dir
        manual_download.check_manual_dir(manual_dir, self.required_manual_paths(), self.info.full_name)
        check_labels_txt((manual_dir / f"{_ROOT}/labels.txt").read_text(), f"{_ROOT}/labels.txt")
        label_map_to_semantic = label_map_lookup_table(self.builder_config.name)
        return {
            split: self._generate_examples(manual_dir, voc_split, label_map_to_semantic)
            for split, voc_split in _SPLITS.items()
        }

    def _generate_examples(self, manual_dir, voc_split, label_map_to_semantic):
        image_ids = (manual_dir / f"{_ROOT}/ImageSets/Main/{voc_split}.txt").read_text().split()
        if voc_split == "train":
            image_ids, self.info.metadata["train_ids"] = train_ids(manual_dir, image_ids)
        if voc_split == "val":
            image_ids, excluded = field_validation_ids(image_ids)
            self.info.metadata["validation_excluded_ids"] = excluded
        for image_id in image_ids:
            image = manual_download.read_image_bytes(manual_dir, f"{_ROOT}/JPEGImages/{image_id}.jpg")
            mat_path = f"{_ROOT}/trainval/{image_id}.mat"
            label_map = read_label_map(manual_dir, mat_path)
            semantic_segmentation.check_same_size(image, label_map, mat_path)
            yield (
                image_id,
                {
                    "image": image,
                    "image/filename": f"{image_id}.jpg",
                    "semantic": label_map_to_semantic[label_map][..., None],
                },
            )


def train_ids(manual_dir, main_train_ids):
    """The `train` split's ids and a description of their list (see `FIELD_TRAIN_LIST`).

    Args:
        manual_dir: path of the manual dir.
        main_train_ids: list of str. The ids of VOC 2010's `ImageSets/Main/train.txt`.

    Returns:
        `(ids, description)`: the field's list when the manual dir holds it (each of its ids must be in
        `Main/train.txt`), else `main_train_ids`.
    """
    path = manual_dir / FIELD_TRAIN_LIST
    if not path.exists():
        return main_train_ids, f"ImageSets/Main/train.txt: {len(main_train_ids):,} images (VOC 2010's train list)"
    ids = path.read_text().split()
    unknown = sorted(set(ids) - set(main_train_ids))
    if unknown:
        raise manual_download.ManualDirError(
            f"{FIELD_TRAIN_LIST} in {manual_dir} lists {len(unknown)} image(s) that are not in VOC 2010's "
            f"ImageSets/Main/train.txt, e.g. {unknown[:3]}: it is not PASCAL-Context's train list."
        )
    return ids, f"ImageSets/SegmentationContext/train.txt: {len(ids):,} images (the field's train list)"


def field_validation_ids(val_ids):
    """Splits VOC 2010 `val.txt`'s ids into `(the field's validation ids, the other ones)`, in `val.txt` order.

    Logs a warning when `val.txt` lacks some of the 5,104 (an incomplete download: fewer images are evaluated).
    """
    field = set(FIELD_VALIDATION_IDS)
    kept = [image_id for image_id in val_ids if image_id in field]
    absent = len(field) - len(set(kept))
    if absent:
        logging.warning(
            "pascal_context: ImageSets/Main/val.txt lacks %d of the field's %d validation images; the validation "
            "split has %d.",
            absent,
            len(field),
            len(kept),
        )
    return kept, [image_id for image_id in val_ids if image_id not in field]


def label_map_lookup_table(config_name):
    """Returns the uint16 table mapping a `LabelMap` value (0..459) to the config's `semantic` value.

    Args:
        config_name: str. "59" or "459".

    Returns:
        np.ndarray. `[460]` uint16: `table[label_map]` is the `semantic` image.
    """
    if config_name == "459":
        table = np.arange(-1, len(PC459_CLASS_NAMES), dtype=np.int64)
        table[0] = _CONFIGS["459"]["ignore_label"]
        return table.astype(np.uint16)
    table = np.full(len(PC459_CLASS_NAMES) + 1, _CONFIGS["59"]["ignore_label"], np.uint16)
    for index, name in enumerate(PC59_CLASS_NAMES):
        table[PC459_CLASS_NAMES.index(_PC59_ALIASES.get(name, name)) + 1] = index
    return table


def check_labels_txt(text, path="labels.txt"):
    """Raises `ManualDirError` unless `text` (labels.txt: lines `<value>: <name>`) lists the 459 expected labels.

    Names are compared without spaces, so either spelling ("air conditioner", "airconditioner") passes; what
    must agree is which name each label value carries.
    """
    names = {}
    for line in text.splitlines():
        value, colon, name = line.partition(":")
        if colon and value.strip().isdigit():
            names[int(value)] = name.strip()
    mismatches = [
        f"{value}: {names.get(value, '<missing>')!r} (expected {expected!r})"
        for value, expected in enumerate(PC459_CLASS_NAMES, start=1)
        if names.get(value, "").replace(" ", "").lower() != expected.replace(" ", "")
    ]
    if mismatches:
        raise manual_download.ManualDirError(
            f"{path} is not PASCAL-Context's 459-label list: {len(mismatches)} label values differ, e.g. "
            f"{'; '.join(mismatches[:3])}. Use the labels.txt of trainval.tar.gz."
        )


def read_label_map(manual_dir, relative_path):
    """Returns the `LabelMap` (`[H, W]` uint16, values 0..459) of a PASCAL-Context `.mat` file."""
    # scipy is needed only to read PASCAL-Context's MATLAB files.
    import scipy.io

    path = epath.Path(manual_dir) / relative_path
    if not path.exists():
        raise manual_download.ManualDirError(f"missing {relative_path} in {manual_dir}")
    try:
        label_map = scipy.io.loadmat(io.BytesIO(path.read_bytes()))["LabelMap"]
    except Exception as error:  # scipy raises several types (MatReadError, ValueError, zlib.error) for damaged files
        raise manual_download.ManualDirError(
            f"{relative_path} in {manual_dir} is not a readable PASCAL-Context .mat file with a LabelMap "
            f"({error!r}); extract trainval.tar.gz again."
        ) from None
    if label_map.ndim != 2 or label_map.size == 0 or label_map.max() > len(PC459_CLASS_NAMES):
        raise manual_download.ManualDirError(
            f"{relative_path} in {manual_dir}: LabelMap must be a 2-D map of values 0..459, got shape "
            f"{label_map.shape} and maximum {label_map.max() if label_map.size else None}."
        )
    return label_map.astype(np.int64)
