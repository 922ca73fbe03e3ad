"""One dataset of OpenSeg's training mixture, with the words of its captions."""

import dataclasses
from typing import Mapping
from typing import Sequence

import tensorflow as tf
import tensorflow_datasets as tfds

from keras_openseg.data.dataset_preparation import download_and_prepare
from keras_openseg.text.caption_words import caption_words_for


@dataclasses.dataclass
class TrainingSource:
    """A dataset that `make_training_dataset` mixes with others, and the words of its captions.

    OpenSeg (sec. 3.3, 4) trains on COCO panoptic masks + captions, Localized Narratives captions and
    teacher pseudo-labels, sampled with equal probability. Each of these is one source. Its elements are
    dicts in one of these forms (extra keys are ignored):

    - panoptic: "image" uint8 [H, W, 3], "panoptic_image" uint8 [H, W, 3] (id = R + 256 G + 256^2 B),
      "segments" {"id" [S], "is_crowd" [S]} (the tfds schema of coco_panoptic_captions and openseg_shapes);
    - masks: "image", "masks" [N, H, W] (bool / 0-1, e.g. teacher pseudo-labels), optional "mask_valid" [N];
    - caption-only: "image" and "captions".

    Any form may carry "captions" (string [C]); without them the source's examples have no valid word, and
    without masks they have no valid mask: the grounding loss and the mask loss skip them (SPEC sec. 5).

    Args:
        dataset: `tf.data.Dataset` of examples as above.
        caption_words: dict str -> list of str or None. Words of each caption (`caption_words_for`);
            required when the examples hold captions.
        weight: float. Relative sampling weight in the mixture. Defaults to `1.0` (equal probability).
        name: str. For messages. Defaults to `"source"`.

    Example:
    ```python
    extractor = keras_openseg.text.CaptionWordExtractor()
    coco = TrainingSource.from_tfds("coco_panoptic_captions/2017", "train", extractor)
    narratives = TrainingSource.from_tfds("localized_narratives/coco", "train", extractor)
    ```
    """

    dataset: tf.data.Dataset
    caption_words: Mapping[str, Sequence[str]] | None = None
    weight: float = 1.0
    name: str = "source"

    def __post_init__(self):
        if not isinstance(self.dataset, tf.data.Dataset):
            raise ValueError(f"`dataset` must be a tf.data.Dataset. Received: {type(self.dataset).__name__}")
        spec = self.dataset.element_spec
        if not isinstance(spec, dict) or "image" not in spec:
            raise ValueError(f"Elements of source {self.name!r} must be dicts with an 'image'. Received: {spec}")
        if "captions" in spec and self.caption_words is None:
            raise ValueError(
                f"Source {self.name!r} has captions but `caption_words` is None; compute them once with "
                "`keras_openseg.data.caption_words_for(...)`."
            )
        if not self.weight > 0:
            raise ValueError(f"`weight` must be positive. Received: weight={self.weight}")

    @property
    def kind(self):
        """ "panoptic", "masks" or "captions": where the source's mask targets come from."""
        spec = self.dataset.element_spec
        if "panoptic_image" in spec:
            return "panoptic"
        if "masks" in spec:
            return "masks"
        return "captions"

    @classmethod
    def from_tfds(
        cls,
        name,
        split="train",
        extractor=None,
        data_dir=None,
        weight=1.0,
        download=True,
        shuffle_files=True,
        seed=None,
    ):
        """A source reading a tfds dataset, with its caption words extracted once and cached beside it.

        Args:
            name: str. tfds name with config, e.g. `"openseg_shapes/default"` (import `keras_openseg.datasets`
                first so the package's builders are registered).
            split: str. Defaults to `"train"`.
            extractor: `CaptionWordExtractor` or None. Needed when the dataset has captions.
            data_dir: path-like or None. tfds data dir. Defaults to tfds's default.
            weight: float. Sampling weight. Defaults to `1.0`.
            download: bool. Prepare the dataset first (generates `openseg_shapes`; needs the manual download
                for the others). Defaults to `True`.
            shuffle_files: bool. Read the files in random order. Defaults to `True`.
            seed: int or None. Seed of the file order. Defaults to `None`.

        Returns:
            `TrainingSource`.
        """
        builder = tfds.builder(name, data_dir=data_dir)
        if download:
            download_and_prepare(builder)
        features = builder.info.features
        caption_words = None
        if "captions" in features:
            if extractor is None:
                raise ValueError(f"{name} has captions: pass `extractor` (a CaptionWordExtractor).")
            caption_words = caption_words_for(builder, extractor, split=split)
        # Training needs neither the semantic map nor ids: leave them undecoded.
        decoders = {key: tfds.decode.SkipDecoding() for key in ("semantic",) if key in features}
        dataset = builder.as_dataset(
            split=split,
            shuffle_files=shuffle_files,
            decoders=decoders or None,
            read_config=seeded_read_config(seed),
        )
        return cls(dataset=dataset, caption_words=caption_words, weight=weight, name=name)


def seeded_read_config(seed):
    """The tfds `ReadConfig` of a training source: with a seed, the file order is the seed's on every pass and
    every iterator (tfds would otherwise re-draw it per iteration from a generator all iterators share, the race
    `make_training_dataset` avoids); the examples are still shuffled anew on every pass."""
    import tensorflow_datasets as tfds

    return tfds.ReadConfig(shuffle_seed=seed, shuffle_reshuffle_each_iteration=None if seed is None else False)
