"""`coco_panoptic_captions`: COCO 2017 panoptic segments joined with the COCO captions of each image."""

import collections

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from etils import epath

from keras_openseg.datasets import manual_download

# tfds split -> COCO's folder/file suffix.
_SPLITS = {"train": "train2017", "validation": "val2017"}
# `semantic` value of void pixels (the 133 categories take 0..132).
IGNORE_LABEL = 255
# How many offending image ids the metadata keeps per split (the counts are always complete).
_MAX_LISTED_IDS = 20


class CocoPanopticCaptions(tfds.core.GeneratorBasedBuilder):
    """COCO 2017 panoptic segmentation with the captions of each image, built from a manual download.

    OpenSeg (paper sec. 3.1 and 4.1) learns class-agnostic mask proposals from COCO panoptic segments and
    grounds them with the words of the COCO captions. Each example holds one image, its panoptic PNG
    (segment id = R + 256 G + 256^2 B, 0 = void, exactly as in COCO's annotation), the segments of the
    panoptic JSON (category ids kept for evaluation) and the captions of `captions_{split}2017.json`.

    What does not fit is counted, logged and reported in `info.metadata["data_report"][split]`, never dropped
    silently:
    - a panoptic PNG whose segment ids disagree with its JSON entry (an id painted in the PNG but absent from
      `segments_info`, or listed but never painted), or whose size differs from the image's, is rejected:
      its masks would teach wrong boundaries (`rejected_panoptic_mismatch`, ids in `rejected_image_ids`);
    - an image without captions is kept with `captions == []` (its masks still train the proposals; the
      input pipeline sees no words for it) (`images_without_captions`, ids in `images_without_captions_ids`);
    - a segment whose painted area differs from its JSON `area` is kept with the JSON's value
      (`segments_with_area_mismatch`).
    A file that is missing or truncated (JSON, PNG, JPEG) stops the build with a `ManualDirError` naming it.

    Splits are built from what the manual dir holds: a split whose files are all there is built, a split
    missing any is named in a warning and in `info.metadata["incomplete_splits"]` (`{split: "missing ..."}`),
    and only a manual dir with no complete split stops the build (a download of val2017 alone builds
    `validation`). The panoptic PNGs may sit in COCO's layout (`annotations/panoptic_{split}2017/`) or in
    detectron2's (`panoptic_{split}2017/` beside `annotations/`).

    The 133 categories (`id`, `name`, `isthing`) are read from the panoptic JSON into
    `info.metadata["categories"]`. `semantic` is the panoptic annotation as 133-class semantic segmentation
    (each segment's category index among the categories sorted by id, crowd included; void 255 =
    `metadata["ignore_label"]`), with `metadata["class_names"]` in that order, so `evaluate` reports COCO mIoU
    (paper fig. 5) beside proposal recall; training skips decoding it.

    Example:
    ```python
    import tensorflow_datasets as tfds
    import keras_openseg.datasets  # registers the builders

    ds = tfds.load(
        "coco_panoptic_captions/2017",
        split="validation",
        download_and_prepare_kwargs={
            "download_config": tfds.download.DownloadConfig(manual_dir="~/data/coco")
        },
    )
    ```
    """

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release: COCO 2017 panoptic segments with captions.",
        "1.1.0": "`semantic`: the 133-class label map (COCO mIoU, paper fig. 5); splits built from what the manual "
        "dir holds; detectron2's panoptic PNG layout.",
    }
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name="2017", description="COCO 2017 panoptic train/val with 2017 captions.")
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Download from https://cocodataset.org/#download and extract into one folder (the manual dir):
      train2017.zip, val2017.zip                       -> train2017/*.jpg, val2017/*.jpg
      annotations_trainval2017.zip                     -> annotations/captions_{train,val}2017.json
      panoptic_annotations_trainval2017.zip            -> annotations/panoptic_{train,val}2017.json and
                                                          annotations/panoptic_{train,val}2017.zip; unzip
                                                          those two inside annotations/ to get
                                                          annotations/panoptic_{train,val}2017/*.png
                                                          (or detectron2's panoptic_{train,val}2017/*.png
                                                          beside annotations/)
    Only val2017 (its images, panoptic JSON + PNGs and captions JSON) is enough to build `validation`.
    Then: keras-openseg build-dataset coco_panoptic_captions --manual-dir <that folder>
    """

    def manual_paths_by_split(self, manual_dir=None):
        """The files and folders each split needs, `{split: [paths]}` (see `keras_openseg.datasets.manual_download`).

        The panoptic PNGs may be in COCO's layout (`annotations/panoptic_{split}2017/`, the zip unzipped inside
        `annotations/`) or in detectron2's (`panoptic_{split}2017/` beside `annotations/`); with `manual_dir`
        given, each split takes the layout found there, else COCO's.
        """
        return {
            split: [
                f"annotations/panoptic_{coco_split}.json",
                _png_dir(manual_dir, coco_split),
                f"annotations/captions_{coco_split}.json",
                coco_split,
            ]
            for split, coco_split in _SPLITS.items()
        }

    def required_manual_paths(self):
        """Every file and folder of a complete download in COCO's layout (both splits)."""
        return [path for paths in self.manual_paths_by_split().values() for path in paths]

    def check_manual_dir(self, manual_dir):
        """Returns `(complete splits, {incomplete split: what is missing})`; a `ManualDirError` when none is complete.

        Each split is built when its files are there (a manual dir with only val2017 builds `validation`).
        """
        return manual_download.complete_splits(manual_dir, self.manual_paths_by_split(manual_dir), self.info.full_name)

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                    "image/id": np.int64,
                    "panoptic_image": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
                    "semantic": tfds.features.Image(shape=(None, None, 1), dtype=np.uint16, encoding_format="png"),
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
                }
            ),
            homepage="https://cocodataset.org/#panoptic-2020",
            metadata=tfds.core.MetadataDict(
                categories=[], class_names=[], ignore_label=IGNORE_LABEL, data_report={}, incomplete_splits={}
            ),
        )

    def _split_generators(self, dl_manager):
        manual_dir = dl_manager.manual_dir
        complete, incomplete = self.check_manual_dir(manual_dir)
        for split, reason in incomplete.items():
            logging.warning("%s: the %s split is not built: %s", self.info.full_name, split, reason)
        self.info.metadata["incomplete_splits"] = incomplete
        return {split: self._generate_examples(manual_dir, split) for split in complete}

    def _generate_examples(self, manual_dir, split):
        coco_split = _SPLITS[split]
        png_dir = _png_dir(manual_dir, coco_split)
        panoptic = manual_download.read_json(manual_dir, f"annotations/panoptic_{coco_split}.json")
        self._record_categories(panoptic["categories"], coco_split)
        category_ids = [category["id"] for category in self.info.metadata["categories"]]
        captions_json = manual_download.read_json(manual_dir, f"annotations/captions_{coco_split}.json")
        captions = _captions_by_image(captions_json)
        images = {image["id"]: image for image in panoptic["images"]}

        report = collections.Counter()
        rejected_ids, uncaptioned_ids = [], []
        for annotation in sorted(panoptic["annotations"], key=lambda annotation: annotation["image_id"]):
            image_id = annotation["image_id"]
            image = images.get(image_id)
            png_path = f"{png_dir}/{annotation['file_name']}"
            png = manual_download.read_image_bytes(manual_dir, png_path)
            if image is None:
                problem, area_mismatches = "no entry in the JSON's images list", 0
            else:
                pixels = manual_download.decode_image(manual_dir, png_path, png)
                problem, area_mismatches = _compare_png_with_segments(pixels, annotation["segments_info"], image)
            if problem:
                report["rejected_panoptic_mismatch"] += 1
                rejected_ids.append(image_id)
                logging.warning("%s: rejected image %d: %s (%s)", self.name, image_id, problem, png_path)
                continue
            report["segments_with_area_mismatch"] += area_mismatches
            image_captions = captions.get(image_id, [])
            if not image_captions:
                report["images_without_captions"] += 1
                uncaptioned_ids.append(image_id)
                logging.warning("%s: image %d has no caption in captions_%s.json", self.name, image_id, coco_split)
            report["examples"] += 1
            yield (
                image_id,
                {
                    "image": manual_download.read_image_bytes(manual_dir, f"{coco_split}/{image['file_name']}"),
                    "image/id": image_id,
                    "panoptic_image": png,
                    "semantic": semantic_labels(pixels, annotation["segments_info"], category_ids)[..., None],
                    "segments": [_segment(info, image) for info in annotation["segments_info"]],
                    "captions": image_captions,
                },
            )

        unannotated = len(images.keys() - {annotation["image_id"] for annotation in panoptic["annotations"]})
        report["images_without_panoptic_annotation"] += unannotated
        self.info.metadata["data_report"][split] = {
            **{key: report[key] for key in _REPORT_KEYS},
            "rejected_image_ids": rejected_ids[:_MAX_LISTED_IDS],
            "images_without_captions_ids": uncaptioned_ids[:_MAX_LISTED_IDS],
        }
        logging.info("%s/%s: %s", self.name, split, self.info.metadata["data_report"][split])

    def _record_categories(self, categories, coco_split):
        categories = [
            {"id": int(category["id"]), "name": category["name"], "isthing": int(category["isthing"])}
            for category in sorted(categories, key=lambda category: category["id"])
        ]
        known = self.info.metadata["categories"]
        if known and known != categories:
            raise manual_download.ManualDirError(
                f"annotations/panoptic_{coco_split}.json lists other categories than the other split's "
                "panoptic JSON; both must come from the same panoptic_annotations_trainval2017.zip."
            )
        self.info.metadata["categories"] = categories
        self.info.metadata["class_names"] = [category["name"] for category in categories]


def _png_dir(manual_dir, coco_split):
    """The panoptic PNG folder of a split: COCO's `annotations/panoptic_*`, else detectron2's `panoptic_*`."""
    coco_layout, detectron2_layout = f"annotations/panoptic_{coco_split}", f"panoptic_{coco_split}"
    if manual_dir is not None:
        manual_dir = epath.Path(manual_dir)
        if not (manual_dir / coco_layout).is_dir() and (manual_dir / detectron2_layout).is_dir():
            return detectron2_layout
    return coco_layout


_REPORT_KEYS = (
    "examples",
    "rejected_panoptic_mismatch",
    "images_without_captions",
    "segments_with_area_mismatch",
    "images_without_panoptic_annotation",
)


def _captions_by_image(captions_json):
    """image id -> captions, in annotation-id order, stripped of COCO's stray whitespace."""
    captions = collections.defaultdict(list)
    for annotation in sorted(captions_json["annotations"], key=lambda annotation: annotation["id"]):
        captions[annotation["image_id"]].append(annotation["caption"].strip())
    return captions


def semantic_labels(pixels, segments_info, category_ids):
    """The 133-class semantic label map of a panoptic PNG: each segment's category index, 255 = void.

    As COCO panoptic val is evaluated as semantic segmentation (paper fig. 5; the conversion of Mask2Former's
    `datasets/prepare_coco_semantic_annos_from_panoptic_annos.py`): every listed segment, crowd included, takes
    the index of its category among the categories sorted by id; unlisted pixels (void) are `IGNORE_LABEL`.

    Args:
        pixels: np.ndarray. `[H, W, 3]` (or 4) uint8 panoptic PNG, segment id = R + 256 G + 256^2 B.
        segments_info: list of dict. The JSON's segments (`id`, `category_id`).
        category_ids: list of int. The category ids sorted, index = label value.

    Returns:
        np.ndarray. `[H, W]` uint16.
    """
    rgb = pixels[..., :3].astype(np.uint32)
    segment_ids = rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]
    index = {category_id: label for label, category_id in enumerate(category_ids)}
    semantic = np.full(segment_ids.shape, IGNORE_LABEL, np.uint16)
    for info in segments_info:
        if info["category_id"] not in index:
            raise manual_download.ManualDirError(
                f"segment {info['id']} has category_id {info['category_id']}, which the panoptic JSON's "
                "categories do not list."
            )
        semantic[segment_ids == info["id"]] = index[info["category_id"]]
    return semantic


def _compare_png_with_segments(pixels, segments_info, image):
    """Returns (why the PNG disagrees with its JSON entry or "", number of segments whose area differs)."""
    if pixels.ndim != 3 or pixels.shape[-1] not in (3, 4):
        return f"panoptic PNG has shape {pixels.shape}, not RGB", 0
    if pixels.shape[:2] != (image["height"], image["width"]):
        png_size, image_size = f"{pixels.shape[1]}x{pixels.shape[0]}", f"{image['width']}x{image['height']}"
        return f"panoptic PNG is {png_size}, image is {image_size}", 0
    pixels = pixels[..., :3].astype(np.uint32)
    segment_ids = pixels[..., 0] + 256 * pixels[..., 1] + 256 * 256 * pixels[..., 2]
    painted_ids, painted_areas = np.unique(segment_ids, return_counts=True)
    painted = dict(zip(painted_ids.tolist(), painted_areas.tolist()))
    painted.pop(0, None)  # 0 = void (unlabeled pixels)
    listed = {info["id"]: info["area"] for info in segments_info}
    if painted.keys() != listed.keys():
        unlisted = sorted(painted.keys() - listed.keys())
        unpainted = sorted(listed.keys() - painted.keys())
        return f"segment ids painted but not listed: {unlisted[:5]}, listed but not painted: {unpainted[:5]}", 0
    return "", sum(painted[segment_id] != area for segment_id, area in listed.items())


def _segment(info, image):
    """One `segments` entry; COCO's pixel box [x, y, w, h] becomes a normalized [ymin, xmin, ymax, xmax]."""
    x, y, w, h = info["bbox"]
    height, width = image["height"], image["width"]
    return {
        "id": info["id"],
        "category_id": info["category_id"],
        "area": info["area"],
        "is_crowd": bool(info["iscrowd"]),
        "bbox": tfds.features.BBox(
            ymin=min(max(y / height, 0.0), 1.0),
            xmin=min(max(x / width, 0.0), 1.0),
            ymax=min(max((y + h) / height, 0.0), 1.0),
            xmax=min(max((x + w) / width, 0.0), 1.0),
        ),
    }
