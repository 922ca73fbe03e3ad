"""`localized_narratives`: Localized Narratives captions of COCO, Flickr30k and Open Images (no ADE20k)."""

import collections

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from keras_openseg.datasets import manual_download

# How many missing image ids the metadata keeps per split (the counts are always complete).
_MAX_LISTED_IDS = 20


def _open_images_id(image_id):
    # Open Images ids are 16 hex digits, 64 bits: stored as their two's-complement int64 so every id fits.
    return int(np.array(int(image_id, 16), dtype=np.uint64).view(np.int64))


# config -> its splits (tfds split -> (narratives file pattern under annotations/, image folder under images/)),
# the image file name of an `image_id`, and the int64 `image/id` of an `image_id`. The ADE20k part of Localized
# Narratives is left out on purpose: ADE20k must stay unseen for the zero-shot evaluation (paper sec. 4.1).
_PARTS = {
    "coco": {
        "splits": {
            "train": ("coco_train_localized_narratives*.jsonl", "train2017"),
            "validation": ("coco_val_localized_narratives*.jsonl", "val2017"),
        },
        "file_name": lambda image_id: f"{int(image_id):012d}.jpg",
        "image_id": int,
        "description": "Narratives of COCO 2017 train/val images (images from train2017/ and val2017/).",
    },
    "flickr30k": {
        "splits": {
            "train": ("flickr30k_train_localized_narratives*.jsonl", ""),
            "validation": ("flickr30k_val_localized_narratives*.jsonl", ""),
            "test": ("flickr30k_test_localized_narratives*.jsonl", ""),
        },
        "file_name": lambda image_id: f"{image_id}.jpg",
        "image_id": int,
        "description": "Narratives of Flickr30k images (the flat flickr30k-images/ folder).",
    },
    "open_images": {
        "splits": {
            "train": ("open_images_train*_localized_narratives*.jsonl", "train"),
            "validation": ("open_images_validation_localized_narratives*.jsonl", "validation"),
            "test": ("open_images_test_localized_narratives*.jsonl", "test"),
        },
        "file_name": lambda image_id: f"{image_id}.jpg",
        "image_id": _open_images_id,
        "description": "Narratives of Open Images V6 images (image/id = the hex id as two's-complement int64).",
    },
}


class LocalizedNarratives(tfds.core.GeneratorBasedBuilder):
    """Localized Narratives: one spoken-then-transcribed description per image, used as a caption.

    OpenSeg (paper sec. 4.1) adds the Localized Narratives of COCO, Flickr30k and Open Images to its
    caption-only training data; the ADE20k part is excluded so that ADE20k stays unseen. Each example is
    one image with the `caption` field of every narrative of that image (most images have one, some COCO
    and Flickr30k images have several annotators). The traces and timings are not kept.

    The schema is the caption-only part of `coco_panoptic_captions` (no panoptic PNG, no segments): `image`
    (JPEG as distributed), `image/id` (int64), `image/filename` (Text, the file name in the image folder;
    for Open Images the hex id is recoverable from it) and `captions`. Narratives whose image is not in
    the manual dir are counted, logged and listed in `info.metadata["data_report"][split]` (not silently
    dropped); a split where no image is found at all is a `ManualDirError` (wrong layout).

    Configs: `coco` (splits train, validation), `flickr30k` and `open_images` (train, validation, test).
    The manual dir holds one folder per config: `<manual dir>/<config>/annotations/*.jsonl` and
    `<manual dir>/<config>/images/...` (see README.md).

    Example:
    ```python
    import tensorflow_datasets as tfds
    import keras_openseg.datasets  # registers the builders

    ds = tfds.load(
        "localized_narratives/coco",
        split="train",
        download_and_prepare_kwargs={
            "download_config": tfds.download.DownloadConfig(manual_dir="~/data/localized_narratives")
        },
    )
    ```
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: COCO, Flickr30k and Open Images parts, captions only."}
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name=name, description=part["description"]) for name, part in _PARTS.items()
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Download the narratives (JSONL) of https://google.github.io/localized-narratives/ into
    <manual dir>/<config>/annotations/ and put (or symlink) the images in <manual dir>/<config>/images/:
      coco/images/{train2017,val2017}/*.jpg       (COCO 2017 images)
      flickr30k/images/*.jpg                       (the flickr30k-images/ folder of Flickr30k)
      open_images/images/{train,validation,test}/*.jpg  (Open Images V6 images)
    Then: keras-openseg build-dataset localized_narratives --config coco --manual-dir <manual dir>
    """

    def required_manual_paths(self):
        """The files and folders the manual dir must hold for this config (see `datasets.manual_download`)."""
        part = self.builder_config.name
        paths = []
        for pattern, image_folder in _PARTS[part]["splits"].values():
            paths += [f"{part}/annotations/{pattern}", f"{part}/images/{image_folder}".rstrip("/")]
        return list(dict.fromkeys(paths))

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                    "image/id": np.int64,
                    "image/filename": tfds.features.Text(),
                    "captions": tfds.features.Sequence(tfds.features.Text()),
                }
            ),
            homepage="https://google.github.io/localized-narratives/",
            metadata=tfds.core.MetadataDict(data_report={}),
        )

    def _split_generators(self, dl_manager):
        manual_dir = dl_manager.manual_dir
        manual_download.check_manual_dir(manual_dir, self.required_manual_paths(), self.info.full_name)
        part = self.builder_config.name
        generators = {}
        for split, (pattern, image_folder) in _PARTS[part]["splits"].items():
            # Resolving the shards here makes an incomplete download fail before any split is written.
            narrative_files = manual_download.sharded_files(manual_dir, f"{part}/annotations/{pattern}")
            generators[split] = self._generate_examples(manual_dir, split, narrative_files, image_folder)
        return generators

    def _generate_examples(self, manual_dir, split, narrative_files, image_folder):
        part = _PARTS[self.builder_config.name]
        captions = collections.defaultdict(list)
        report = collections.Counter()
        for narrative_file in narrative_files:
            for narrative in manual_download.read_jsonl(manual_dir, narrative_file):
                report["narratives"] += 1
                caption = narrative["caption"].strip()
                if caption:
                    captions[str(narrative["image_id"])].append(caption)
                else:
                    report["empty_narratives"] += 1

        images_dir = f"{self.builder_config.name}/images/{image_folder}".rstrip("/")
        missing_ids = []
        for image_id in sorted(captions):
            file_name = part["file_name"](image_id)
            image_path = f"{images_dir}/{file_name}"
            if not (manual_dir / image_path).exists():
                report["images_missing"] += 1
                missing_ids.append(image_id)
                if report["images_missing"] <= _MAX_LISTED_IDS:
                    logging.warning("%s: no image %s for its narrative", self.info.full_name, image_path)
                continue
            report["examples"] += 1
            yield (
                image_id,
                {
                    "image": manual_download.read_image_bytes(manual_dir, image_path),
                    "image/id": part["image_id"](image_id),
                    "image/filename": file_name,
                    "captions": captions[image_id],
                },
            )

        if captions and not report["examples"]:
            raise manual_download.ManualDirError(
                f"none of the {len(captions)} images of the {split} narratives is in {manual_dir}/{images_dir} "
                f"(e.g. {images_dir}/{part['file_name'](missing_ids[0])}); see the README for the layout."
            )
        self.info.metadata["data_report"][split] = {
            "narratives": report["narratives"],
            "empty_narratives": report["empty_narratives"],
            "examples": report["examples"],
            "images_missing": report["images_missing"],
            "missing_image_ids": missing_ids[:_MAX_LISTED_IDS],
        }
        if missing_ids:
            logging.warning(
                "%s/%s: %d of %d narrated images are not in %s; they are left out (see info.metadata)",
                self.info.full_name,
                split,
                len(missing_ids),
                len(captions),
                images_dir,
            )
