"""`pascal_voc`: PASCAL VOC 2012 semantic segmentation (the PAS-20 and PAS-20b benchmarks), from a manual download."""

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from keras_openseg.datasets import manual_download
from keras_openseg.datasets import semantic_segmentation
from keras_openseg.datasets.pascal_context.pascal_context import PC59_CLASS_NAMES

# Label values of VOC's SegmentationClass PNGs: 0 = background, 1..20 the classes in this order, 255 = the
# "void" outline around objects (and unlabeled pixels). The names are VOC's own (`tvmonitor`, `pottedplant`,
# `diningtable`), the spelling of the PAS-20 benchmark list.
CLASS_NAMES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
IGNORE_LABEL = 255
# PAS-20b's background (paper sec. 4.1): whatever the PC-59 classes outside VOC cover (39 names).
BACKGROUND_CLASS_NAMES = tuple(name for name in PC59_CLASS_NAMES if name not in CLASS_NAMES)


@dataclasses.dataclass(eq=False)
class PascalVOCConfig(tfds.core.BuilderConfig):
    """A config of `pascal_voc`: what the background pixels are.

    Args:
        benchmark: str. "PAS-20": background is not scored (labels 0..19 = the 20 classes, background and void
            255), as the field evaluates PAS-20. "PAS-20b": VOC's raw labels (0 = background, 1..20, 255 =
            void), background scored as the pixels the model gives to a PC-59 class outside VOC (the paper's
            rule).
    """

    benchmark: str = "PAS-20"


_ROOT = "VOCdevkit/VOC2012"
# tfds split -> VOC's ImageSets/Segmentation list.
_SPLITS = {"train": "train", "validation": "val"}


class PascalVOC(tfds.core.GeneratorBasedBuilder):
    """PASCAL VOC 2012 semantic segmentation as the PAS-20 and PAS-20b benchmarks, built from a manual download.

    OpenSeg evaluates zero-shot on PASCAL VOC's 20 object classes (paper sec. 4.1); the two configs differ in
    what happens to VOC's background pixels:

    - `pascal_voc/20` (PAS-20, as the field evaluates it: CAT-Seg, SAN, FC-CLIP): background is not scored.
      `semantic` holds 0..19 for the 20 classes in `info.metadata["class_names"]` order (VOC's spellings, e.g.
      `tvmonitor`) and 255 for background and VOC's void outline (`info.metadata["ignore_label"]`).
    - `pascal_voc/20b` (PAS-20b, the paper's rule): VOC's raw label values, 0 = background, 1..20 the classes
      (`class_names` starts with "background"), 255 = void. `metadata["background_label"]` (0) and
      `metadata["background_class_names"]` (the 39 PC-59 classes outside VOC) tell the evaluation to query those
      names too and to count their pixels as background (`keras_openseg.evaluation.background_rule`).

    VOC's SegmentationClass files are palette PNGs: the pixel values are the class indices and the palette
    only colours them. They are read as indices (never converted to RGB) and stored as 1-channel uint16 PNGs,
    like the other semantic-segmentation builders.

    Splits: `train` (1,464 images of `ImageSets/Segmentation/train.txt`) and `validation` (1,449 images of
    `val.txt`, the benchmark split). A missing or truncated file stops the build with a
    `keras_openseg.datasets.ManualDirError` naming it.

    Example:
    ```python
    import tensorflow_datasets as tfds
    import keras_openseg.datasets  # registers the builders

    ds = tfds.load(
        "pascal_voc/20",
        split="validation",
        download_and_prepare_kwargs={
            "download_config": tfds.download.DownloadConfig(manual_dir="~/data/voc")
        },
    )
    ```
    """

    name = "pascal_voc"
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release: VOC 2012 segmentation train/val with raw labels.",
        "1.1.0": "pascal_voc/20 is PAS-20 (background not scored, classes 0..19); the raw labels with the "
        "paper's background rule are pascal_voc/20b (PAS-20b).",
    }
    BUILDER_CONFIGS = [
        PascalVOCConfig(
            name="20",
            benchmark="PAS-20",
            description="PAS-20: the 20 classes 0..19; background and void 255 = not scored.",
        ),
        PascalVOCConfig(
            name="20b",
            benchmark="PAS-20b",
            description="PAS-20b: raw labels (0 = background, 1..20, 255 = void); background = the PC-59 classes "
            "outside VOC (paper sec. 4.1).",
        ),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Download VOCtrainval_11-May-2012.tar from
    http://host.robots.ox.ac.uk/pascal/VOC/voc2012/ and extract it into one folder (the manual dir):
      tar -xf VOCtrainval_11-May-2012.tar -C <manual dir>
    which gives
      VOCdevkit/VOC2012/JPEGImages/*.jpg
      VOCdevkit/VOC2012/SegmentationClass/*.png
      VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val}.txt
    Then: keras-openseg build-dataset pascal_voc/20 --manual-dir <manual dir>   (or pascal_voc/20b)
    """

    def required_manual_paths(self):
        """The files and folders the manual dir must hold (see `keras_openseg.datasets.manual_download`)."""
        return [
            f"{_ROOT}/JPEGImages",
            f"{_ROOT}/SegmentationClass",
            *(f"{_ROOT}/ImageSets/Segmentation/{voc_split}.txt" for voc_split in _SPLITS.values()),
        ]

    def _info(self):
        if self.builder_config.benchmark == "PAS-20":
            metadata = tfds.core.MetadataDict(
                class_names=list(CLASS_NAMES[1:]),
                ignore_label=IGNORE_LABEL,
                benchmark="PAS-20",
                background="not scored: background pixels are 255 like void (the field's PAS-20)",
            )
        else:
            metadata = tfds.core.MetadataDict(
                class_names=list(CLASS_NAMES),
                ignore_label=IGNORE_LABEL,
                benchmark="PAS-20b",
                background="the pixels won by a PC-59 class outside VOC (paper sec. 4.1)",
                background_label=0,
                background_class_names=list(BACKGROUND_CLASS_NAMES),
            )
        return self.dataset_info_from_configs(
            features=semantic_segmentation.semantic_segmentation_features(),
            supervised_keys=("image", "semantic"),
            homepage="http://host.robots.ox.ac.uk/pascal/VOC/voc2012/",
            metadata=metadata,
        )

    def _split_generators(self, dl_manager):
        manual_dir = dl_manager.manual_dir
        manual_download.check_manual_dir(manual_dir, self.required_manual_paths(), self.info.full_name)
        return {split: self._generate_examples(manual_dir, voc_split) for split, voc_split in _SPLITS.items()}

    def _generate_examples(self, manual_dir, voc_split):
        list_path = f"{_ROOT}/ImageSets/Segmentation/{voc_split}.txt"
        image_ids = (manual_dir / list_path).read_text().split()
        raw_to_semantic = None if self.builder_config.benchmark == "PAS-20b" else pas20_lookup_table()
        for image_id in image_ids:
            label_path = f"{_ROOT}/SegmentationClass/{image_id}.png"
            semantic = read_class_indices(manual_download.decode_image(manual_dir, label_path), label_path)
            yield (
                image_id,
                {
                    "image": manual_download.read_image_bytes(manual_dir, f"{_ROOT}/JPEGImages/{image_id}.jpg"),
                    "image/filename": f"{image_id}.jpg",
                    "semantic": semantic if raw_to_semantic is None else raw_to_semantic[semantic],
                },
            )


def pas20_lookup_table():
    """The uint16 table from a raw VOC label (0..20, 255) to PAS-20's (class k + 1 -> k; background, void -> 255)."""
    table = np.full(IGNORE_LABEL + 1, IGNORE_LABEL, np.uint16)
    table[1 : len(CLASS_NAMES)] = np.arange(len(CLASS_NAMES) - 1)
    return table


def read_class_indices(pixels, path="the label PNG"):
    """Returns VOC label pixels as a `[H, W, 1]` uint16 array of raw class indices (0..20, 255).

    Args:
        pixels: np.ndarray. The decoded SegmentationClass PNG: `[H, W]` palette indices (Pillow mode "P" or
            "L"). An RGB array means the file was re-saved in colour, which loses the indices.
        path: str. The file, named in errors. Defaults to "the label PNG".

    Returns:
        np.ndarray. `[H, W, 1]` uint16.
    """
    if pixels.ndim != 2:
        raise manual_download.ManualDirError(
            f"{path}: expected a palette PNG of class indices ([H, W]), got pixels of shape {pixels.shape}; "
            "use the SegmentationClass files of VOCtrainval_11-May-2012.tar unchanged."
        )
    values = np.unique(pixels)
    unexpected = values[(values > len(CLASS_NAMES) - 1) & (values != IGNORE_LABEL)]
    if unexpected.size:
        raise manual_download.ManualDirError(
            f"{path}: label values {unexpected.tolist()} are neither a VOC class (0..20) nor void (255)."
        )
    return pixels.astype(np.uint16)[..., None]
