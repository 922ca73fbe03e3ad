"""Preset loading for the OpenSeg classes: keras_hub's machinery, with errors that name the file and the problem.

`from_preset` goes through keras_hub (local directories, `kaggle://`, `hf://`), which deserializes configs
in Keras safe mode (no lambdas, no arbitrary code). Before that, a local preset directory is checked file by
file so that a missing, truncated or foreign file is reported by name instead of by an h5py or
deserialization traceback; errors keras_hub raises while loading are re-raised with the preset and the file
they concern.

Named architectures (`openseg_presets.OPENSEG_ARCHITECTURES`) are untrained compositions of component
presets; they are built with `from_architecture`, never by `from_preset`.
"""

import json
import os

from keras_hub.models import Backbone
from keras_hub.src.utils.python_utils import classproperty

from keras_openseg.models.openseg_presets import OPENSEG_ARCHITECTURES

CONFIG_FILE = "config.json"
TASK_CONFIG_FILE = "task.json"
PREPROCESSOR_CONFIG_FILE = "preprocessor.json"
IMAGE_CONVERTER_CONFIG_FILE = "image_converter.json"
MODEL_WEIGHTS_FILE = "model.weights.h5"
SHARDED_WEIGHTS_CONFIG_FILE = "model.weights.json"
TASK_WEIGHTS_FILE = "task.weights.h5"
BACKBONE_NAME = "keras_openseg>OpenSegBackbone"


def _read_config(preset, filename):
    path = os.path.join(preset, filename)
    try:
        with open(path, encoding="utf-8") as file:
            config = json.load(file)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"OpenSeg preset '{preset}': `{filename}` cannot be read as JSON ({error}).") from None
    if not isinstance(config, dict) or "registered_name" not in config or "config" not in config:
        raise ValueError(
            f"OpenSeg preset '{preset}': `{filename}` is not a serialized Keras object (it has no "
            "`registered_name` / `config`); re-save the preset with `save_to_preset`."
        )
    return config


def _check_weights_file(preset, filename):
    path = os.path.join(preset, filename)
    import h5py  # a keras dependency; only needed to probe local weight files

    try:
        with h5py.File(path, "r"):
            pass
    except OSError as error:
        raise ValueError(
            f"OpenSeg preset '{preset}': `{filename}` is not a readable HDF5 weights file (truncated or "
            f"corrupt?): {error}"
        ) from None


def check_local_preset(preset, load_weights=True, task_cls=None):
    """Validate a local preset directory before keras_hub loads it; raise a ValueError naming the file."""
    config = _read_config(preset, CONFIG_FILE) if os.path.exists(os.path.join(preset, CONFIG_FILE)) else None
    if config is None:
        raise ValueError(
            f"OpenSeg preset '{preset}': `{CONFIG_FILE}` is missing, so this is not a keras_hub preset directory. "
            "Save one with `model.save_to_preset(path)`."
        )
    if config["registered_name"] != BACKBONE_NAME:
        raise ValueError(
            f"OpenSeg preset '{preset}': `{CONFIG_FILE}` holds a `{config['registered_name']}`, not an "
            f"`OpenSegBackbone`; load it with its own class."
        )
    for filename in (TASK_CONFIG_FILE, PREPROCESSOR_CONFIG_FILE, IMAGE_CONVERTER_CONFIG_FILE):
        if os.path.exists(os.path.join(preset, filename)):
            _read_config(preset, filename)
    if task_cls is not None and task_cls.preprocessor_cls is not None:
        has_preprocessor = any(
            os.path.exists(os.path.join(preset, filename))
            for filename in (TASK_CONFIG_FILE, PREPROCESSOR_CONFIG_FILE, IMAGE_CONVERTER_CONFIG_FILE)
        )
        if not has_preprocessor:
            raise ValueError(
                f"OpenSeg preset '{preset}' has a backbone but neither `{TASK_CONFIG_FILE}`, "
                f"`{PREPROCESSOR_CONFIG_FILE}` nor `{IMAGE_CONVERTER_CONFIG_FILE}`: it was saved from a "
                f"backbone, so load it with `OpenSegBackbone.from_preset` and build the `{task_cls.__name__}` "
                "from that backbone."
            )
    if not load_weights:
        return
    if os.path.exists(os.path.join(preset, MODEL_WEIGHTS_FILE)):
        _check_weights_file(preset, MODEL_WEIGHTS_FILE)
    elif not os.path.exists(os.path.join(preset, SHARDED_WEIGHTS_CONFIG_FILE)):
        raise ValueError(
            f"OpenSeg preset '{preset}': the weights file `{MODEL_WEIGHTS_FILE}` is missing (pass "
            "`load_weights=False` for a randomly initialized model of this configuration)."
        )
    if task_cls is not None and os.path.exists(os.path.join(preset, TASK_WEIGHTS_FILE)):
        _check_weights_file(preset, TASK_WEIGHTS_FILE)


def _culprit(error):
    """The preset file an error raised while loading most likely concerns."""
    message = str(error)
    for filename in (TASK_WEIGHTS_FILE, MODEL_WEIGHTS_FILE):
        if filename in message:
            return filename
    lowered = message.lower()
    if any(word in lowered for word in ("weight", "variable", "shape", "h5", "hdf5", "could not be loaded")):
        return f"{MODEL_WEIGHTS_FILE} / {TASK_WEIGHTS_FILE} (the weights do not match the configuration)"
    return f"{CONFIG_FILE} / {TASK_CONFIG_FILE} (the configuration)"


class OpenSegPresetMixin:
    """`from_preset` with clear errors, the named-architecture registry and `from_architecture`.

    Mixed into the OpenSeg classes ahead of their keras_hub base (`Backbone` or `Task`).
    """

    @classproperty
    def presets(cls):
        """Named OpenSeg architectures: name -> metadata (description, component handles, `trained_on`)."""
        return {name: dict(entry["metadata"]) for name, entry in OPENSEG_ARCHITECTURES.items()}

    @classmethod
    def from_preset(cls, preset, load_weights=True, **kwargs):
        """Load a saved OpenSeg preset: a local directory or a `kaggle://` / `hf://` handle.

        Configs are deserialized in Keras safe mode. A local directory is checked first, and a missing,
        unreadable or mismatched file raises a ValueError that names it.

        Args:
            preset: string. Path of a preset directory written by `save_to_preset`, or a hub handle.
            load_weights: bool. Load the saved weights; False gives a random initialization of the saved
                configuration. Defaults to `True`.
            **kwargs: constructor arguments that override the saved ones (e.g. `text_embedder=` for
                `OpenSegModel`, `dtype=`).
        """
        if not isinstance(preset, str):
            raise ValueError(f"`preset` must be a path or a handle string. Received: {preset!r}")
        if preset in OPENSEG_ARCHITECTURES:
            raise ValueError(
                f"'{preset}' names an untrained OpenSeg architecture, not a saved preset. Build it with "
                f"`{cls.__name__}.from_architecture('{preset}')`, train it, and save it with `save_to_preset`."
            )
        is_handle = "://" in preset
        if not is_handle:
            if not os.path.isdir(preset):
                raise ValueError(
                    f"OpenSeg preset '{preset}' not found: it is neither a directory nor a `kaggle://` / `hf://` "
                    f"handle. Untrained architectures are built with `from_architecture`: "
                    f"{sorted(OPENSEG_ARCHITECTURES)}."
                )
            is_task = not issubclass(cls, Backbone)
            check_local_preset(preset, load_weights=load_weights, task_cls=cls if is_task else None)
        try:
            return super().from_preset(preset, load_weights=load_weights, **kwargs)
        except (ValueError, OSError, KeyError, TypeError) as error:
            raise ValueError(
                f"Could not load the OpenSeg preset '{preset}' as `{cls.__name__}`: the problem is in "
                f"{_culprit(error)}: {type(error).__name__}: {error}"
            ) from error

    @classmethod
    def from_architecture(cls, name, load_weights=True, text_embedder=None, **backbone_kwargs):
        """Build a named architecture: pretrained component presets with a fresh OpenSeg head.

        Downloads the image encoder (and, for `OpenSegModel`, the text encoder) through keras_hub unless
        they are cached or local. The image converter takes the image encoder's normalization.

        Args:
            name: string. A key of `presets` (`openseg_presets.OPENSEG_ARCHITECTURES`).
            load_weights: bool. Load the image encoder's pretrained weights. Defaults to `True`.
            text_embedder: a text embedder to use instead of the architecture's text encoder, or None to
                load the architecture's (`OpenSegModel` only). Defaults to `None`.
            **backbone_kwargs: `OpenSegBackbone` arguments overriding the architecture's (e.g.
                `num_queries=64`).
        """
        import keras_hub

        from keras_openseg.models.openseg_backbone import OpenSegBackbone
        from keras_openseg.models.openseg_image_converter import OpenSegImageConverter
        from keras_openseg.models.openseg_preprocessor import OpenSegPreprocessor

        if name not in OPENSEG_ARCHITECTURES:
            raise ValueError(f"Unknown OpenSeg architecture {name!r}. Known: {sorted(OPENSEG_ARCHITECTURES)}.")
        entry = OPENSEG_ARCHITECTURES[name]
        # Dynamic spatial size: OpenSeg runs at any multiple of 32, whatever size the encoder was saved with.
        image_encoder = keras_hub.models.Backbone.from_preset(
            entry["image_encoder"], load_weights=load_weights, image_shape=(None, None, 3)
        )
        encoder_converter = keras_hub.layers.ImageConverter.from_preset(entry["image_encoder"])
        image_converter = OpenSegImageConverter(scale=encoder_converter.scale, offset=encoder_converter.offset)
        backbone = OpenSegBackbone(image_encoder, **{**entry["backbone"], **backbone_kwargs})
        task_kwargs = {"backbone": backbone, "preprocessor": OpenSegPreprocessor(image_converter)}
        if getattr(cls, "uses_text_embedder", False):
            if text_embedder is None and entry.get("text_encoder"):
                from keras_openseg.models.text_embedder import TextEmbedder

                text_embedder = TextEmbedder.from_preset(entry["text_encoder"])
            task_kwargs["text_embedder"] = text_embedder
        if issubclass(cls, Backbone):
            return backbone
        return cls(**task_kwargs)
