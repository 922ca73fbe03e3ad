import keras
import numpy as np
from keras import ops
from keras_hub.models import Task

from keras_openseg.layers import Temperature
from keras_openseg.losses import best_match_dice_loss
from keras_openseg.losses import grounding_loss
from keras_openseg.models.image_batching import ImageCanvas
from keras_openseg.models.image_batching import as_image_list
from keras_openseg.models.openseg_backbone import OpenSegBackbone
from keras_openseg.models.openseg_preprocessor import OpenSegPreprocessor
from keras_openseg.models.preset_loading import OpenSegPresetMixin
from keras_openseg.models.segmentation_logits import ENSEMBLES
from keras_openseg.models.segmentation_logits import pixel_logits
from keras_openseg.models.segmentation_logits import region_pooled_pixel_features
from keras_openseg.models.segmentation_logits import segmentation_logits


def training_optimizer(learning_rate=0.005, decay_steps=None, weight_decay=1e-5, momentum=0.9):
    """The paper's optimizer: SGD with momentum, cosine learning-rate decay, weight decay (sec. 4.1).

    The learnable temperature is left out of the weight decay, which would pull log(tau) towards 0.
    """
    if decay_steps is not None:
        learning_rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps)
    optimizer = keras.optimizers.SGD(learning_rate, momentum=momentum, weight_decay=weight_decay)
    optimizer.exclude_from_weight_decay(var_names=["log_temperature"])
    return optimizer


def images_of(inputs):
    """The images of a model input: the `images` entry of a training dict, or the input itself."""
    if isinstance(inputs, dict):
        if "images" not in inputs:
            raise ValueError(f"Model inputs given as a dict must hold `images`. Received keys {sorted(inputs)}.")
        return inputs["images"]
    return inputs


def check_training_data(x, y, task_name, needs_words):
    """Raise a ValueError naming what is missing from a training batch."""
    if needs_words and (not isinstance(x, dict) or "word_embeddings" not in x):
        received = sorted(x) if isinstance(x, dict) else type(x).__name__
        raise ValueError(
            f"{task_name} trains on x = {{'images', 'word_embeddings', 'word_valid'}}. Received x: {received}."
        )
    if not isinstance(y, dict) or "masks" not in y:
        received = sorted(y) if isinstance(y, dict) else type(y).__name__
        raise ValueError(f"{task_name} trains on y = {{'masks', 'mask_valid'}}. Received y: {received}.")


@keras.saving.register_keras_serializable(package="keras_openseg")
class OpenSegModel(OpenSegPresetMixin, Task):
    """OpenSeg: open-vocabulary segmentation learned from captions and class-agnostic masks (sec. 3).

    Wraps an `OpenSegBackbone` (mask proposals s, region embeddings z), the learnable temperature tau of the
    grounding loss and, optionally, a frozen text encoder for inference on strings.

    Training (`fit`) minimizes L = L_G + alpha * L_S (eq. 5): the grounding loss between the region
    embeddings and the caption's word embeddings (eqs. 2-4, `keras_openseg.losses.grounding_loss`) plus the
    best-match dice loss between the predicted and the class-agnostic label masks (eq. 1). Batches are
    `x = {"images" [B, H, W, 3] 0..255, "word_embeddings" [B, K, E], "word_valid" [B, K] bool}` and
    `y = {"masks" [B, M, H, W] 0/1, "mask_valid" [B, M] bool}`; both terms are reported as the metrics
    `grounding_loss` and `dice_loss`. Caption-only batches carry no valid mask and train L_G alone.

    Inference (`segment`) scores every pixel against text queries with eq. (6) (sec. 3.4).

    Args:
        backbone: `OpenSegBackbone`.
        preprocessor: `OpenSegPreprocessor` or None. Normalizes raw images in `fit`, `predict` and
            `segment`. None means the inputs are already normalized. Defaults to `None`.
        text_embedder: object with `embed(texts, templates=None) -> [K, E]` and `embedding_dim` (e.g.
            `keras_openseg.models.TextEmbedder`) or None. Needed to segment with string queries. It is
            frozen, not part of the trained weights, and not saved with the model. Defaults to `None`.
        alpha: float. Weight of the dice loss L_S in eq. (5). Defaults to `1.0`.
        temperature: float. Initial value of the learnable temperature tau. Defaults to `0.07`.
        min_temperature: float or None. Lower clip of tau. Defaults to `None`.
        group_size: int or None. Contrastive group size of the grounding loss; None contrasts the whole
            batch (the paper's "sync" loss), an int cuts it into groups of that size ("unsync"). Defaults to
            `None`.
        matching: `"max"` or `"one_to_one"`. Label-to-prediction matching of the dice loss; `"max"` is the
            paper's. Defaults to `"max"`.
        dice_smooth: float. Smoothing of the dice coefficient. Defaults to `1.0`.
        **kwargs: `keras_hub.models.Task` arguments (`name`, `compile`).

    Example:

    ```python
    model = keras_openseg.OpenSegModel(backbone, preprocessor, text_embedder=text_embedder)
    model.fit(train_ds, epochs=1)
    out = model.segment(images, queries=["cat", ["person", "man", "woman"], "grass"])
    out["labels"]  # [B, H, W] int32 index into the queries
    ```
    """

    backbone_cls = OpenSegBackbone
    preprocessor_cls = OpenSegPreprocessor
    uses_text_embedder = True

    def __init__(
        self,
        backbone,
        preprocessor=None,
        text_embedder=None,
        alpha=1.0,
        temperature=0.07,
        min_temperature=None,
        group_size=None,
        matching="max",
        dice_smooth=1.0,
        **kwargs,
    ):
        if not isinstance(backbone, OpenSegBackbone):
            raise ValueError(f"`backbone` must be an `OpenSegBackbone`. Received: {type(backbone).__name__}")
        if text_embedder is not None:
            check_text_embedder(text_embedder, backbone.embedding_dim)

        # === Functional Model ===
        # The graph takes the images alone; `call` picks them out of training dicts, whose word embeddings
        # only `compute_loss` reads.
        images = backbone.input
        outputs = backbone(images)
        super().__init__(inputs=images, outputs=outputs, **kwargs)

        # === Layers ===
        # Created after the functional init so keras tracks them on every backend (torch included).
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.temperature_layer = Temperature(temperature, min_value=min_temperature, name="temperature")
        self.grounding_loss_tracker = keras.metrics.Mean(name="grounding_loss")
        self.dice_loss_tracker = keras.metrics.Mean(name="dice_loss")

        # === Config ===
        self.alpha = alpha
        self.min_temperature = min_temperature
        self.group_size = group_size
        self.matching = matching
        self.dice_smooth = dice_smooth
        self._text_embedder = text_embedder

    @property
    def text_embedder(self):
        """The frozen text encoder used for string queries, or None."""
        return self._text_embedder

    @text_embedder.setter
    def text_embedder(self, value):
        if value is not None:
            check_text_embedder(value, self.backbone.embedding_dim)
        # Kept out of keras' tracking: its weights are frozen and are not part of the model's.
        object.__setattr__(self, "_text_embedder", value)

    def __setattr__(self, name, value):
        if name == "_text_embedder":
            return object.__setattr__(self, name, value)
        return super().__setattr__(name, value)

    def call(self, inputs, training=None, mask=None):
        return super().call(images_of(inputs), training=training, mask=mask)

    def compute_output_spec(self, inputs, training=None, mask=None):
        return super().compute_output_spec(images_of(inputs))

    def compile(self, optimizer="auto", loss=None, metrics=None, *, learning_rate=0.005, decay_steps=None, **kwargs):
        """Configure training; the loss is always eq. (5), computed by `compute_loss`.

        Args:
            optimizer: `"auto"` or a keras optimizer. `"auto"` is the paper's recipe: SGD with momentum 0.9,
                learning rate `learning_rate` with cosine decay over `decay_steps` steps (constant when
                None), weight decay 1e-5 (not on the temperature). Defaults to `"auto"`.
            loss: must stay None: the loss is L_G + alpha L_S. Defaults to `None`.
            metrics: extra keras metrics, or None. `grounding_loss` and `dice_loss` are always reported.
                Defaults to `None`.
            learning_rate: float. Initial learning rate of the `"auto"` optimizer. Defaults to `0.005`.
            decay_steps: int or None. Cosine-decay length of the `"auto"` optimizer. Defaults to `None`.
            **kwargs: `keras.Model.compile` arguments.
        """
        if loss is not None:
            raise ValueError(f"{type(self).__name__} computes its own loss (eq. 5); leave `loss=None`.")
        if optimizer == "auto":
            optimizer = training_optimizer(learning_rate, decay_steps)
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        check_training_data(x, y, type(self).__name__, needs_words=True)
        masks = ops.sigmoid(ops.cast(y_pred["mask_logits"], "float32"))
        dice = best_match_dice_loss(
            masks, y["masks"], y.get("mask_valid"), smooth=self.dice_smooth, matching=self.matching
        )
        grounding = grounding_loss(
            y_pred["region_embeddings"],
            x["word_embeddings"],
            x.get("word_valid"),
            temperature=self.temperature_layer(),
            group_size=self.group_size,
        )
        self.grounding_loss_tracker.update_state(grounding)
        self.dice_loss_tracker.update_state(dice)
        loss = grounding + self.alpha * dice
        if self.losses:
            loss = loss + ops.cast(ops.sum(self.losses), "float32")
        return loss

    # === Inference ===

    def _image_converter(self):
        return getattr(self.preprocessor, "image_converter", None)

    def _run_backbone(self, images, batch_size):
        """Backbone outputs for `images` in chunks of `batch_size`.

        Returns whether the images came as one stacked array, and an iterator of `(ImageCanvas, outputs)`
        pairs (one chunk in memory at a time).
        """
        image_list, stacked = as_image_list(images)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive int. Received: batch_size={batch_size!r}")

        def chunks():
            for start in range(0, len(image_list), batch_size):
                canvas = ImageCanvas(image_list[start : start + batch_size], self._image_converter())
                # `predict_on_batch` runs the compiled (jit) forward pass; an eager call dispatches op by op.
                yield canvas, self.backbone.predict_on_batch(canvas.canvas)

        return stacked, chunks()

    def text_embeddings(self, queries, templates=None):
        """Embed category queries into `[C, S, E]` text embeddings and `[C, S]` name_valid.

        Args:
            queries: list whose entries are a string (one name) or a list of strings (synonyms of one
                category); a single string is one category.
            templates: list of prompt templates passed to the text embedder, or None. Defaults to `None`.

        Returns:
            A tuple `(text_embeddings [C, S, E] float32 numpy, name_valid [C, S] bool numpy)`.
        """
        if isinstance(queries, str):
            queries = [queries]
        if queries is None or len(queries) == 0:
            raise ValueError("`queries` is empty: give at least one category name (a string or a list of synonyms).")
        categories = []
        for index, query in enumerate(queries):
            names = [query] if isinstance(query, str) else list(query) if isinstance(query, (list, tuple)) else None
            if names is None or not all(isinstance(name, str) for name in names):
                raise ValueError(
                    f"`queries[{index}]` must be a string or a list of strings. Received: {query!r}"
                )
            if not names or not all(name.strip() for name in names):
                raise ValueError(
                    f"`queries[{index}]` = {query!r} has no text to embed: every category needs at least one "
                    "name and names must not be blank."
                )
            categories.append(names)
        if self.text_embedder is None:
            raise ValueError(
                "String `queries` need a text embedder, and this model has none: pass `text_embedder=` to "
                "`OpenSegModel` (or set `model.text_embedder`), or give precomputed `text_embeddings`."
            )
        flat = [name for names in categories for name in names]
        kwargs = {} if templates is None else {"templates": templates}
        embeddings = np.asarray(self.text_embedder.embed(flat, **kwargs), "float32")
        if embeddings.ndim != 2 or embeddings.shape[0] != len(flat):
            raise ValueError(
                f"The text embedder returned embeddings of shape {embeddings.shape} for {len(flat)} names; "
                f"expected [{len(flat)}, E]."
            )
        norms = np.linalg.norm(embeddings, axis=-1)
        empty = [name for name, norm in zip(flat, norms) if not np.isfinite(norm) or norm == 0.0]
        if empty:
            raise ValueError(f"The queries {empty} embed to nothing (zero or non-finite text embeddings).")
        width = max(len(names) for names in categories)
        text_embeddings = np.zeros((len(categories), width, embeddings.shape[1]), "float32")
        name_valid = np.zeros((len(categories), width), bool)
        row = 0
        for index, names in enumerate(categories):
            text_embeddings[index, : len(names)] = embeddings[row : row + len(names)]
            name_valid[index, : len(names)] = True
            row += len(names)
        return text_embeddings, name_valid

    def _standardize_queries(self, queries, text_embeddings, name_valid, templates):
        if (queries is None) == (text_embeddings is None):
            raise ValueError("Give exactly one of `queries` (strings) and `text_embeddings` ([C, E] or [C, S, E]).")
        if queries is not None:
            text_embeddings, name_valid = self.text_embeddings(queries, templates)
        else:
            text_embeddings = np.asarray(ops.convert_to_numpy(text_embeddings), "float32")
            if text_embeddings.ndim == 2:
                text_embeddings = text_embeddings[:, None]
            if text_embeddings.ndim != 3 or text_embeddings.shape[0] == 0:
                raise ValueError(
                    "`text_embeddings` must be [C, E] or [C, S, E] with C >= 1. Received shape "
                    f"{text_embeddings.shape}."
                )
            if name_valid is not None:
                name_valid = np.asarray(ops.convert_to_numpy(name_valid), bool)
        if text_embeddings.shape[-1] != self.backbone.embedding_dim:
            raise ValueError(
                f"Text embeddings have size {text_embeddings.shape[-1]}, but the backbone's embedding_dim is "
                f"{self.backbone.embedding_dim}: use the text encoder the model was trained with."
            )
        return text_embeddings, name_valid

    def segment(
        self,
        images,
        queries=None,
        text_embeddings=None,
        name_valid=None,
        ensemble="max",
        use_proposals=True,
        templates=None,
        batch_size=8,
        return_logits=True,
    ):
        """Open-vocabulary semantic segmentation with text queries (sec. 3.4, eq. 6).

        Images of any size are normalized, padded to a multiple of 32 (resized to fit the image converter's
        `image_size` first when that is set), segmented in batches, and the results cropped and resized back
        to each image's size. Pixels get the query with the highest logit.

        Args:
            images: `[B, H, W, 3]` array or tensor, one `[H, W, 3]` image, or a list of `[H, W, 3]` images of
                different sizes; raw pixels (0..255, uint8 or float).
            queries: list of categories, each a string or a list of synonym strings; embedded with the
                model's `text_embedder`. Give this or `text_embeddings`.
            text_embeddings: `[C, E]` or `[C, S, E]` precomputed text embeddings (C categories, S names
                each). Give this or `queries`.
            name_valid: `[C, S]` bool or None. Which names of `text_embeddings` are real. Defaults to `None`.
            ensemble: `"max"` or `"mean"`. How the names of one category are merged. Defaults to `"max"`.
            use_proposals: bool. True scores pixels through the mask proposals (eq. 6); False is the
                per-pixel ablation, the cosine similarity of the pixel embeddings F_z with the text.
                Defaults to `True`.
            templates: prompt templates for the text embedder, or None. Defaults to `None`.
            batch_size: int. Images per forward pass. Defaults to `8`.
            return_logits: bool. Also return the `[C, H, W]` logits (C times the memory of the labels).
                Defaults to `True`.

        Returns:
            A dict of numpy arrays: `labels` `[B, H, W]` int32 (index into the queries), `scores`
            `[B, H, W]` float32 (the winning logit) and `logits` `[B, C, H, W]` float32. When `images` is a
            list, each entry is a list of per-image arrays (`[H, W]`, `[C, H, W]`) instead.
        """
        if ensemble not in ENSEMBLES:
            raise ValueError(f"`ensemble` must be one of {ENSEMBLES}. Received: ensemble={ensemble!r}")
        text_embeddings, name_valid = self._standardize_queries(queries, text_embeddings, name_valid, templates)
        results = {"labels": [], "scores": [], "logits": []}
        stacked, chunks = self._run_backbone(images, batch_size)
        for canvas, outputs in chunks:
            if use_proposals:
                masks = ops.sigmoid(ops.cast(outputs["mask_logits"], "float32"))
                logits = segmentation_logits(
                    masks, outputs["region_embeddings"], text_embeddings, name_valid, ensemble=ensemble
                )
            else:
                logits = pixel_logits(outputs["pixel_embeddings"], text_embeddings, name_valid, ensemble=ensemble)
            for image_logits in canvas.restore(logits):
                results["labels"].append(np.argmax(image_logits, axis=0).astype("int32"))
                results["scores"].append(np.max(image_logits, axis=0))
                if return_logits:
                    results["logits"].append(image_logits)
        if not return_logits:
            del results["logits"]
        if stacked:
            results = {key: np.stack(value) for key, value in results.items()}
        return results

    def pixel_features(self, images, batch_size=8, upsample=False):
        """Per-pixel embeddings sum_n s_n(p) z^_n / sum_n s_n(p) for downstream feature users (sec. 3.4).

        Each pixel's embedding is the mask-weighted mean of the L2-normalized region embeddings covering it
        (the region-pooled pixel feature of the official OpenSeg release); its dot product with a normalized
        text embedding ranks categories like eq. (6).

        Args:
            images: as for `segment`.
            batch_size: int. Images per forward pass. Defaults to `8`.
            upsample: bool. False returns the stride-4 grid covering each image (`[ceil(H/4), ceil(W/4), E]`
                for unresized images); True resizes to the image size `[H, W, E]` (E times the memory of a
                label map). Defaults to `False`.

        Returns:
            `[B, h, w, E]` float32 numpy, or a list of `[h, w, E]` when `images` is a list.
        """
        features = []
        stacked, chunks = self._run_backbone(images, batch_size)
        for canvas, outputs in chunks:
            masks = ops.sigmoid(ops.cast(outputs["mask_logits"], "float32"))
            pooled = ops.transpose(region_pooled_pixel_features(masks, outputs["region_embeddings"]), (0, 3, 1, 2))
            if upsample:
                features.extend(np.moveaxis(image, 0, -1) for image in canvas.restore(pooled))
                continue
            pooled = np.asarray(ops.convert_to_numpy(pooled))
            scale = pooled.shape[2] / canvas.canvas.shape[1]
            for index, (height, width) in enumerate(canvas.fitted_sizes):
                rows, columns = int(np.ceil(height * scale)), int(np.ceil(width * scale))
                features.append(np.moveaxis(pooled[index, :, :rows, :columns], 0, -1))
        return np.stack(features) if stacked else features

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "alpha": self.alpha,
                "temperature": self.temperature_layer.initial_value,
                "min_temperature": self.min_temperature,
                "group_size": self.group_size,
                "matching": self.matching,
                "dice_smooth": self.dice_smooth,
            }
        )
        return config


def check_text_embedder(text_embedder, embedding_dim):
    """Raise a ValueError unless `text_embedder` embeds strings into `embedding_dim`-sized vectors."""
    if not callable(getattr(text_embedder, "embed", None)):
        raise ValueError(
            "`text_embedder` must have an `embed(texts) -> [K, E]` method (e.g. keras_openseg.models.TextEmbedder). "
            f"Received: {type(text_embedder).__name__}"
        )
    size = getattr(text_embedder, "embedding_dim", None)
    if size is not None and size != embedding_dim:
        raise ValueError(
            f"`text_embedder.embedding_dim` is {size} but the backbone's embedding_dim is {embedding_dim}; they "
            "must match."
        )
