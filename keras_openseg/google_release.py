"""Google's OpenSeg release signature, both ways: export a model in it, and segment with any SavedModel that has it.

Google's only OpenSeg release is a TensorFlow SavedModel (EfficientNet-B7 image encoder, CLIP ViT-L/14@336 text
features) with one signature, `serving_default(inp_image_bytes, inp_text_emb)`. The tools built on it (its Colab,
OpenScene's feature fusion, Open3DSG, OpenNeRF) call it as

```python
model = tf.saved_model.load(path)
out = model.signatures["serving_default"](inp_image_bytes=tf.convert_to_tensor(image_bytes), inp_text_emb=text_emb)
crop = [int(out["image_info"][0, 0] * out["image_info"][2, 0]), int(out["image_info"][0, 1] * out["image_info"][2, 1])]
features = out["ppixel_ave_feat"][:, : crop[0], : crop[1]]  # [1, h, w, E] per-pixel features of the image
```

`export_google_saved_model(model, path)` (`keras-openseg export --format google-savedmodel`) writes an
`OpenSegModel` in that signature, so those tools run on any checkpoint this package trains;
`SavedModelSegmenter(path)` loads the release (or such an export) behind this package's API (`segment`,
`pixel_features`, and `keras-openseg evaluate --saved-model DIR`).

Inputs of `serving_default`:
    inp_image_bytes: `[]` string. One encoded JPEG or PNG (GIF and BMP decode too) of any size.
    inp_text_emb: `[C, S, E]` float32. L2-normalized text embeddings of C categories with S names each
        (synonyms or prompts); any C, S >= 1.

Outputs of the export (H x W: the padded input size, `image_size` rounded up to a multiple of 32; N proposals):
    image_info: `[4, 2]` float32. The TF detection convention `[[h, w], [Hd, Wd], [y_scale, x_scale], [0, 0]]`:
        the original size, the desired size (`image_size`), the resize factor (resized / original) and the
        offset. The image fills `image_info[0] * image_info[2]` (rounded) at the top left; the rest is padding.
    ppixel_ave_feat: `[1, H, W, E]` float32. The region-pooled per-pixel feature sum_n s_n(p) z^_n / sum_n s_n(p)
        (`OpenSegModel.pixel_features`), bilinearly upsampled from the stride-4 grid.
    image_embedding_feat: `[1, H, W, E]` float32. The per-pixel embedding F_z (unnormalized), upsampled likewise.
    segm_proposal: `[1, N, H, W]` float32. The N mask proposals: the sigmoid of the upsampled mask logits.
    segm_prediction: `[1, H, W]` int32. Each pixel's category by eq. (6), the max over a category's S names
        (`OpenSegModel.segment(...)["labels"]`).
    segm_confidence: `[1, H, W]` float32. Its eq. (6) logit (`segment(...)["scores"]`).
    pixel_prediction: `[1, H, W]` int32. Each pixel's category from F_z alone, the per-pixel ablation
        (`segment(..., use_proposals=False)["labels"]`).
    region_probs_: `[1, N, C]` float32. Per proposal, the softmax over the categories of <z^_n, w_c> / tau (max
        over the names; tau the model's learned temperature).

The release's own post-processing of `segm_*`, `pixel_prediction` and `region_probs_` is not public; the names
and `image_info`, `ppixel_ave_feat` and `image_embedding_feat` follow the way the client scripts read them.
Images are resized (bilinear, aspect ratio kept) to fit `image_size`, normalized by the preset's image converter
and padded with zeros at the bottom and right, all inside the graph, as the TF detection input pipeline does.
"""

import json
import os

import keras
import numpy as np
from keras import ops

from keras_openseg.export.openseg_inference import image_normalizer
from keras_openseg.layers.resizing import resize
from keras_openseg.models.open_vocabulary_logits import category_embeddings
from keras_openseg.models.open_vocabulary_logits import pixel_logits
from keras_openseg.models.open_vocabulary_logits import region_pooled_pixel_features
from keras_openseg.models.open_vocabulary_logits import segmentation_logits

SIGNATURE_KEY = "serving_default"
INPUT_NAMES = ("inp_image_bytes", "inp_text_emb")
OUTPUT_NAMES = (
    "image_info",
    "ppixel_ave_feat",
    "image_embedding_feat",
    "segm_proposal",
    "segm_prediction",
    "segm_confidence",
    "pixel_prediction",
    "region_probs_",
)
DEFAULT_IMAGE_SIZE = 640  # the release's input size
RELEASE_TEXT_ENCODER = "clip_vit_large_patch14_336"  # keras_hub preset of the release's text tower
STRIDE = 32
# Written beside the graph in the SavedModel's `assets.extra/` (files TensorFlow ignores): the text encoder the
# model was trained with and a description of the export.
TEXT_EMBEDDER_DIR = os.path.join("assets.extra", "text_embedder")
EXPORT_INFO_FILE = os.path.join("assets.extra", "openseg_export.json")
_BACKENDS = ("tensorflow", "jax")


def _standardize_image_size(image_size):
    size = (image_size, image_size) if isinstance(image_size, (int, np.integer)) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(side, (int, np.integer)) and side >= 1 for side in size):
        raise ValueError(f"`image_size` must be a positive int or (height, width). Received: {image_size!r}")
    return int(size[0]), int(size[1])


def padded_size(image_size):
    """The canvas `(H, W)` of an export: `image_size` rounded up to a multiple of 32."""
    height, width = _standardize_image_size(image_size)
    return -(-height // STRIDE) * STRIDE, -(-width // STRIDE) * STRIDE


def fit_image(image, image_size):
    """Resize one image to fit `image_size` with its aspect ratio kept, as the exported graph does (TensorFlow).

    The TF detection convention (`resize_and_crop_image` without jitter): scale = min(Hd / h, Wd / w), the
    resized size round(h * scale) x round(w * scale), bilinear, no antialiasing.

    Args:
        image: `[h, w, 3]` tensor, raw pixels (any dtype).
        image_size: int or `(height, width)`. The box `(Hd, Wd)` to fit.

    Returns:
        `(resized [h', w', 3] float32 tf.Tensor, image_info [4, 2] float32 tf.Tensor)`.
    """
    import tensorflow as tf

    desired = tf.constant(_standardize_image_size(image_size), tf.float32)
    image = tf.convert_to_tensor(image)
    original = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.reduce_min(desired / original)
    scaled = tf.clip_by_value(tf.round(original * scale), 1.0, desired)
    resized = tf.image.resize(tf.cast(image, tf.float32), tf.cast(scaled, tf.int32), method="bilinear")
    image_info = tf.stack([original, desired, scaled / original, tf.zeros([2], tf.float32)])
    return resized, image_info


def _max_over_names(logits, categories, names, axis):
    """`[..., C * S, ...]` logits of every name -> `[..., C, ...]`, the max over each category's S names."""
    shape = ops.shape(logits)
    split = tuple(shape[:axis]) + (categories, names) + tuple(shape[axis + 1 :])
    return ops.max(ops.reshape(logits, split), axis=axis + 1)


def release_outputs(backbone, images, text_embeddings, temperature=1.0):
    """The release's outputs (all but `image_info`) for a normalized, padded canvas; `keras.ops` only.

    Computes what `OpenSegModel.segment` and `pixel_features` compute on the same canvas: eq. (6) logits at
    the stride-4 grid (max over the names of a category), bilinearly resized to the canvas, and the features
    resized likewise. Traces with unknown numbers of categories and names on every backend.

    Args:
        backbone: `OpenSegBackbone`.
        images: `[1, H, W, 3]` normalized images, H and W multiples of 32.
        text_embeddings: `[C, S, E]` text embeddings.
        temperature: float. tau of `region_probs_`. Defaults to `1.0`.

    Returns:
        A dict with `ppixel_ave_feat`, `image_embedding_feat`, `segm_proposal`, `segm_prediction`,
        `segm_confidence`, `pixel_prediction` and `region_probs_` (see the module docstring).
    """
    shape = ops.shape(images)
    height, width = shape[1], shape[2]
    outputs = backbone(images, training=False)
    mask_logits = ops.cast(outputs["mask_logits"], "float32")
    masks = ops.sigmoid(mask_logits)
    regions = ops.cast(outputs["region_embeddings"], "float32")
    pixels = ops.cast(outputs["pixel_embeddings"], "float32")
    text_shape = ops.shape(text_embeddings)
    categories, names = text_shape[0], text_shape[1]
    # Every name scored on its own, then the max per category: the same numbers as the "max" ensemble of
    # `segmentation_logits` with no padded name, for a number of names that is only known when the graph runs.
    flat_text = ops.reshape(ops.cast(text_embeddings, "float32"), (-1, text_shape[2]))

    logits = _max_over_names(segmentation_logits(masks, regions, flat_text), categories, names, axis=1)
    logits = resize(logits, (height, width), axes=(2, 3))
    per_pixel = _max_over_names(pixel_logits(pixels, flat_text), categories, names, axis=1)
    per_pixel = resize(per_pixel, (height, width), axes=(2, 3))
    region_scores = ops.einsum("bne,ke->bnk", _unit(regions), _unit(flat_text))
    region_scores = _max_over_names(region_scores, categories, names, axis=2)
    return {
        "ppixel_ave_feat": resize(region_pooled_pixel_features(masks, regions), (height, width), axes=(1, 2)),
        "image_embedding_feat": resize(pixels, (height, width), axes=(1, 2)),
        "segm_proposal": ops.sigmoid(resize(mask_logits, (height, width), axes=(2, 3))),
        "segm_prediction": ops.cast(ops.argmax(logits, axis=1), "int32"),
        "segm_confidence": ops.max(logits, axis=1),
        "pixel_prediction": ops.cast(ops.argmax(per_pixel, axis=1), "int32"),
        "region_probs_": ops.softmax(region_scores / temperature, axis=-1),
    }


def _unit(x):
    return x / ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), 1e-12))


def export_google_saved_model(model, path, image_size=None, verbose=False):
    """Export an `OpenSegModel` as a SavedModel with the signature of Google's OpenSeg release.

    `serving_default(inp_image_bytes, inp_text_emb)` decodes the image, resizes it to fit `image_size`
    (aspect ratio kept), normalizes it with the model's image converter, pads it bottom/right to a multiple of
    32 and returns the release's outputs (module docstring). The model's text embedder, when it has one, is
    saved in `assets.extra/text_embedder/`, where `SavedModelSegmenter` finds it. From the TensorFlow or the
    JAX backend (jax2tf); a preset loads on either.

    Args:
        model: `OpenSegModel`.
        path: string. The SavedModel directory to write.
        image_size: int, `(height, width)` or None. The box images are resized into. Defaults to `None`: the
            image converter's `image_size` when it has one, else 640 (the release's).
        verbose: bool. Let Keras print the exported endpoints. Defaults to `False`.

    Returns:
        `path`.

    Example:

    ```python
    export_google_saved_model(model, "openseg_release", image_size=640)
    served = tf.saved_model.load("openseg_release").signatures["serving_default"]
    out = served(inp_image_bytes=tf.io.read_file("photo.jpg"), inp_text_emb=text_emb)  # [C, S, E]
    ```
    """
    import tensorflow as tf

    backend = keras.backend.backend()
    if backend not in _BACKENDS:
        raise ValueError(
            f"The release signature is exported from the tensorflow or jax backend, not {backend} (Keras writes a "
            "TF SavedModel from torch only through torch_xla). Set KERAS_BACKEND=tensorflow or jax: the preset "
            "loads on any backend."
        )
    backbone = getattr(model, "backbone", None)
    if backbone is None or not hasattr(backbone, "embedding_dim"):
        raise ValueError(f"`model` must be an `OpenSegModel`. Received: {type(model).__name__}")
    converter = getattr(getattr(model, "preprocessor", None), "image_converter", None)
    if image_size is None:
        image_size = getattr(converter, "image_size", None) or DEFAULT_IMAGE_SIZE
    image_size = _standardize_image_size(image_size)
    canvas = padded_size(image_size)
    embedding_dim = int(backbone.embedding_dim)
    temperature_layer = getattr(model, "temperature_layer", None)
    temperature = 1.0 if temperature_layer is None else float(ops.convert_to_numpy(temperature_layer()))
    normalizer = image_normalizer(converter)

    def core(images, text_embeddings):
        return release_outputs(backbone, images, text_embeddings, temperature)

    # Build the backbone on one concrete canvas before the exporter traces it.
    core(np.zeros((1,) + canvas + (3,), "float32"), np.ones((2, 1, embedding_dim), "float32"))
    archive = keras.export.ExportArchive()
    archive.track(backbone)
    kwargs = {}
    if backend == "jax":
        # Name the free dimensions: categories and names are independent of each other.
        polymorphic = [f"(1, {canvas[0]}, {canvas[1]}, 3)", f"(c, s, {embedding_dim})"]
        kwargs["jax2tf_kwargs"] = {"polymorphic_shapes": polymorphic}
    core_endpoint = archive.add_endpoint(
        "openseg_outputs",
        core,
        input_signature=[
            keras.InputSpec(shape=(1,) + canvas + (3,), dtype="float32"),
            keras.InputSpec(shape=(None, None, embedding_dim), dtype="float32"),
        ],
        **kwargs,
    )

    # Decoding, resizing, normalizing and padding run in TensorFlow around the backend's graph (the image
    # converter's TensorFlow path; under jax2tf the converter could not run).
    @tf.function(
        input_signature=[
            tf.TensorSpec([], tf.string, name=INPUT_NAMES[0]),
            tf.TensorSpec([None, None, embedding_dim], tf.float32, name=INPUT_NAMES[1]),
        ]
    )
    def serving_default(inp_image_bytes, inp_text_emb):
        image = tf.io.decode_image(inp_image_bytes, channels=3, expand_animations=False)
        resized, image_info = fit_image(image, image_size)
        normalized = resized[None] if normalizer is None else tf.cast(normalizer(resized[None]), tf.float32)
        padded = tf.image.pad_to_bounding_box(normalized, 0, 0, canvas[0], canvas[1])
        outputs = dict(core_endpoint(padded, inp_text_emb))
        outputs["image_info"] = image_info
        return {name: outputs[name] for name in OUTPUT_NAMES}

    archive.add_endpoint(SIGNATURE_KEY, serving_default)
    path = os.fspath(path)
    archive.write_out(path, verbose=verbose)

    text_embedder = getattr(model, "text_embedder", None)
    if text_embedder is not None and hasattr(text_embedder, "save_to_preset"):
        text_embedder.save_to_preset(os.path.join(path, TEXT_EMBEDDER_DIR))
    info = {
        "signature": SIGNATURE_KEY,
        "inputs": {
            INPUT_NAMES[0]: {"shape": [], "dtype": "string"},
            INPUT_NAMES[1]: {"shape": [None, None, embedding_dim], "dtype": "float32"},
        },
        "outputs": list(OUTPUT_NAMES),
        "image_size": list(image_size),
        "padded_size": list(canvas),
        "num_queries": int(backbone.num_queries),
        "embedding_dim": embedding_dim,
        "temperature": temperature,
        "backend": backend,
        "text_encoder": getattr(text_embedder, "identity", None),
    }
    os.makedirs(os.path.dirname(os.path.join(path, EXPORT_INFO_FILE)), exist_ok=True)
    with open(os.path.join(path, EXPORT_INFO_FILE), "w") as file:
        json.dump(info, file, indent=2)
    return path


class SavedModelSegmenter:
    """A SavedModel with the OpenSeg release signature (Google's release or this package's export) as a segmenter.

    Offers the inference API of `OpenSegModel`: `segment(images, queries=... or text_embeddings=...)`,
    `pixel_features(images)` and `text_embedder`, so `keras_openseg.evaluation.evaluate` and
    `keras-openseg evaluate --saved-model DIR` score it like a Keras model. Each image is PNG-encoded and sent
    through `serving_default` on its own; the valid crop (`image_info[0] * image_info[2]`, rounded) of each
    output is resized back to the image's size.

    What each result is made of:
    - `labels` and `scores`: the SavedModel's `segm_prediction` and `segm_confidence` (`pixel_prediction`
      with `use_proposals=False`), at the image's size (nearest) when the graph resized it.
    - `logits` (which Grounding mIoU ranks): <ppixel_ave_feat(p), w_c>, the cosine of the region-pooled pixel
      feature with each category (max or mean over its names). For this package's exports that is the eq. (6)
      logit divided by the pixel's total mask weight, so it orders the categories of a pixel like eq. (6);
      with `use_proposals=False` the cosine of `image_embedding_feat`.
    - `mask_logits`: the logits of `segm_proposal`.

    Args:
        saved_model: string (a SavedModel directory) or an already loaded SavedModel object.
        text_embedder: object with `embed(texts, templates=None) -> [K, E]` (e.g. `keras_openseg.models.
            TextEmbedder`) or None. None uses the text encoder saved in the export's `assets.extra/text_embedder/`
            when there is one, else the release's: the CLIP ViT-L/14@336 text tower
            (`TextEmbedder.from_preset("clip_vit_large_patch14_336")`, fetched from Kaggle on first use).
            Defaults to `None`.

    Example:

    ```python
    segmenter = SavedModelSegmenter("openseg_exported_model")   # Google's release folder, or an export
    out = segmenter.segment(images, queries=["cat", ["person", "man"], "grass"])
    out["labels"]                                             # [B, H, W] int32
    features = segmenter.pixel_features(images)               # per-image [h', w', 768]
    ```
    """

    def __init__(self, saved_model, text_embedder=None):
        import tensorflow as tf

        self.path = os.fspath(saved_model) if isinstance(saved_model, (str, os.PathLike)) else None
        loaded = tf.saved_model.load(self.path) if self.path is not None else saved_model
        signatures = getattr(loaded, "signatures", {})
        if SIGNATURE_KEY not in signatures:
            raise ValueError(
                f"SavedModel {self.path or saved_model!r} has no `{SIGNATURE_KEY}` signature (it has "
                f"{sorted(signatures)}): not an OpenSeg release."
            )
        self._loaded = loaded
        self._serve = signatures[SIGNATURE_KEY]
        _, specs = self._serve.structured_input_signature
        missing = [name for name in INPUT_NAMES if name not in specs]
        if missing:
            raise ValueError(
                f"The `{SIGNATURE_KEY}` signature of {self.path or saved_model!r} takes {sorted(specs)}, not the "
                f"release's {list(INPUT_NAMES)}."
            )
        text_dim = specs[INPUT_NAMES[1]].shape[-1]
        self.embedding_dim = None if text_dim is None else int(text_dim)
        self._text_embedder = text_embedder

    @property
    def text_embedder(self):
        """The text encoder of string queries: given, saved with the export, or CLIP ViT-L/14@336 (on first use)."""
        if self._text_embedder is None:
            from keras_openseg.models.text_embedder import TextEmbedder

            saved = None if self.path is None else os.path.join(self.path, TEXT_EMBEDDER_DIR)
            preset = saved if saved is not None and os.path.isdir(saved) else RELEASE_TEXT_ENCODER
            try:
                self._text_embedder = TextEmbedder.from_preset(preset)
            except Exception as error:  # a failed download or a broken folder: say what to give instead
                raise ValueError(
                    f"The text encoder of {self.path or 'this SavedModel'} ({preset!r}) could not be loaded: "
                    f"{type(error).__name__}: {error}. Pass `text_embedder=` (`--text-encoder` on the command "
                    "line) or precomputed `text_embeddings`."
                ) from error
        return self._text_embedder

    @text_embedder.setter
    def text_embedder(self, value):
        self._text_embedder = value

    def text_embeddings(self, queries, templates=None):
        """`(text_embeddings [C, S, E], name_valid [C, S])` of string queries (a name or a list of synonyms each)."""
        from keras_openseg.evaluation import embed_class_queries

        if isinstance(queries, str):
            queries = [queries]
        categories = [[query] if isinstance(query, str) else list(query) for query in queries or ()]
        if not categories or not all(
            names and all(isinstance(n, str) and n.strip() for n in names) for names in categories
        ):
            raise ValueError(
                f"`queries` must be a non-empty list of names or lists of names, none blank. Received: {queries!r}"
            )
        return embed_class_queries(self.text_embedder, categories, templates=templates)

    def _graph_text(self, text_embeddings, name_valid, ensemble):
        """`[C, S, E]` float32 for the graph: padded names replaced by the category's first name (same max)."""
        text = np.asarray(ops.convert_to_numpy(text_embeddings), "float32")
        if text.ndim == 2:
            text = text[:, None]
        if text.ndim != 3 or text.shape[0] == 0:
            raise ValueError(f"`text_embeddings` must be [C, E] or [C, S, E] with C >= 1. Received shape {text.shape}.")
        if self.embedding_dim is not None and text.shape[-1] != self.embedding_dim:
            raise ValueError(
                f"Text embeddings have size {text.shape[-1]}, but the SavedModel takes {self.embedding_dim}: use "
                "its text encoder."
            )
        valid = np.ones(text.shape[:2], bool) if name_valid is None else np.asarray(name_valid, bool)
        if ensemble == "mean":
            return np.asarray(ops.convert_to_numpy(category_embeddings(text, valid)), "float32")[:, None]
        first = np.argmax(valid, axis=1)
        filled = np.where(valid[..., None], text, text[np.arange(len(text)), first][:, None])
        return filled.astype("float32")

    def _run(self, image, text):
        import tensorflow as tf

        image = np.asarray(ops.convert_to_numpy(image))
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"Each image must be [H, W, 3]. Received shape {image.shape}.")
        pixels = np.clip(np.round(image), 0, 255).astype("uint8") if image.dtype != np.uint8 else image
        outputs = self._serve(
            inp_image_bytes=tf.io.encode_png(pixels), inp_text_emb=tf.convert_to_tensor(text, tf.float32)
        )
        info = outputs["image_info"].numpy()
        crop = tuple(int(side) for side in np.round(info[0] * info[2]))
        return outputs, crop

    def segment(
        self,
        images,
        queries=None,
        text_embeddings=None,
        name_valid=None,
        ensemble="max",
        use_proposals=True,
        templates=None,
        batch_size=None,
        return_logits=True,
        return_mask_logits=False,
    ):
        """Open-vocabulary segmentation through the SavedModel, with the arguments of `OpenSegModel.segment`.

        Args:
            images: `[B, H, W, 3]`, one `[H, W, 3]` image or a list of `[H, W, 3]` images; raw pixels 0..255
                (sent as PNG, so rounded to uint8).
            queries: categories, each a string or a list of synonyms, embedded with `text_embedder`.
            text_embeddings: `[C, E]` or `[C, S, E]` precomputed, L2-normalized text embeddings.
            name_valid: `[C, S]` bool or None. Defaults to `None`.
            ensemble: `"max"` or `"mean"` over the names of a category. Defaults to `"max"`.
            use_proposals: bool. False reads the per-pixel outputs (`pixel_prediction`,
                `image_embedding_feat`). Defaults to `True`.
            templates: prompt templates for string queries. Defaults to `None`.
            batch_size: ignored (the signature takes one image); accepted for `OpenSegModel.segment` parity.
            return_logits: bool. Also return `[C, H, W]` logits. Defaults to `True`.
            return_mask_logits: bool. Also return `[N, H, W]` proposal logits. Defaults to `False`.

        Returns:
            The dict of `OpenSegModel.segment`: `labels`, `scores`, and `logits` / `mask_logits` when asked;
            stacked arrays for a `[B, H, W, 3]` input, lists for a list.
        """
        import tensorflow as tf

        if ensemble not in ("max", "mean"):
            raise ValueError(f"`ensemble` must be 'max' or 'mean'. Received: ensemble={ensemble!r}")
        if (queries is None) == (text_embeddings is None):
            raise ValueError("Give exactly one of `queries` (strings) and `text_embeddings` ([C, E] or [C, S, E]).")
        if queries is not None:
            text_embeddings, name_valid = self.text_embeddings(queries, templates)
        text = self._graph_text(text_embeddings, name_valid, ensemble)
        image_list, stacked = _image_list(images)
        label_key, feature_key = (
            ("segm_prediction", "ppixel_ave_feat") if use_proposals else ("pixel_prediction", "image_embedding_feat")
        )
        results = {"labels": [], "scores": [], "logits": [], "mask_logits": []}
        for image in image_list:
            outputs, (height, width) = self._run(image, text)
            size = image.shape[:2]
            labels = _crop_map(outputs, label_key, height, width)
            scores = _crop_map(outputs, "segm_confidence", height, width) if use_proposals else None
            logits = None
            if return_logits or labels is None or scores is None:
                features = outputs[feature_key][0, :height, :width]
                if not use_proposals:
                    features = tf.math.l2_normalize(features, axis=-1)
                # [C, S, h, w] cosines, then the max over the names (the graph's text has no padded name).
                cosines = tf.einsum("hwe,cse->cshw", features, tf.convert_to_tensor(text))
                logits = _resize_maps(tf.reduce_max(cosines, axis=1), size, "bilinear").numpy()
            if labels is None:
                labels = np.argmax(logits, axis=0)
            else:
                labels = _resize_maps(labels, size, "nearest").numpy()[0]
            if scores is None:
                scores = np.take_along_axis(logits, labels[None].astype("int64"), axis=0)[0]
            else:
                scores = _resize_maps(scores, size, "nearest").numpy()[0]
            results["labels"].append(labels.astype("int32"))
            results["scores"].append(scores.astype("float32"))
            if return_logits:
                results["logits"].append(logits)
            if return_mask_logits:
                probabilities = tf.clip_by_value(outputs["segm_proposal"][0, :, :height, :width], 1e-7, 1 - 1e-7)
                mask_logits = tf.math.log(probabilities) - tf.math.log1p(-probabilities)
                results["mask_logits"].append(_resize_maps(mask_logits, size, "bilinear").numpy())
        if not return_logits:
            del results["logits"]
        if not return_mask_logits:
            del results["mask_logits"]
        if stacked:
            results = {key: np.stack(value) for key, value in results.items()}
        return results

    def pixel_features(self, images, batch_size=None, upsample=False, regional_pool=True):
        """Per-pixel features of each image: the valid crop of `ppixel_ave_feat` (or `image_embedding_feat`).

        Args:
            images: as for `segment`.
            batch_size: ignored; accepted for `OpenSegModel.pixel_features` parity.
            upsample: bool. False returns the crop at the resolution the graph resized the image to
                (`[h', w', E]`, h' = round(H * scale)); True resizes it to the image's size `[H, W, E]`.
                Defaults to `False`.
            regional_pool: bool. True reads `ppixel_ave_feat` (region-pooled), False `image_embedding_feat`, like
                OpenScene's `regional_pool`. Defaults to `True`.

        Returns:
            `[B, h', w', E]` float32 numpy for a `[B, H, W, 3]` input, a list of `[h', w', E]` for a list.
        """
        import tensorflow as tf

        key = "ppixel_ave_feat" if regional_pool else "image_embedding_feat"
        text = np.zeros((1, 1, self.embedding_dim or 1), "float32")
        image_list, stacked = _image_list(images)
        features = []
        for image in image_list:
            outputs, (height, width) = self._run(image, text)
            crop = outputs[key][0, :height, :width]
            if upsample and (height, width) != image.shape[:2]:
                crop = tf.image.resize(crop, image.shape[:2], method="bilinear")
            features.append(np.asarray(crop, "float32"))
        if stacked and len({feature.shape for feature in features}) == 1:
            return np.stack(features)
        return features


def _image_list(images):
    """`images` as a list of `[H, W, 3]` numpy arrays, and whether they came stacked (`[B, H, W, 3]` or one image)."""
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("`images` is empty: give at least one [H, W, 3] image.")
        return [np.asarray(ops.convert_to_numpy(image)) for image in images], False
    array = np.asarray(ops.convert_to_numpy(images))
    return list(array[None] if array.ndim == 3 else array), True


def _crop_map(outputs, key, height, width):
    """The valid `[1, h, w]` crop of a `[1, H, W]` output, or None when the SavedModel has no such output."""
    value = outputs.get(key)
    if value is None or len(value.shape) != 3:
        return None
    return value[:, :height, :width]


def _resize_maps(maps, size, method):
    """`[K, h, w]` tensor -> `[K, H, W]` float32 tf tensor (unchanged when already that size)."""
    import tensorflow as tf

    maps = tf.convert_to_tensor(maps)
    if tuple(maps.shape[1:3]) == tuple(size):
        return maps
    dtype = maps.dtype
    resized = tf.image.resize(tf.cast(maps, tf.float32)[..., None], size, method=method)[..., 0]
    return tf.cast(resized, dtype) if method == "nearest" else resized
