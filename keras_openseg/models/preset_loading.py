"""Preset checks for the OpenSeg classes: errors that name the file and the problem.

`from_preset` goes through keras_hub (local directories, `kaggle://`, `hf://`), which deserializes configs
in Keras safe mode (no lambdas, no arbitrary code). Before that, a local preset directory is checked file by
file so that a missing, truncated or foreign file is reported by name instead of by an h5py or
deserialization traceback; errors keras_hub raises while loading are re-raised with the preset and the file
they concern. The file names are keras_hub's own.

This module imports no OpenSeg class: `OpenSegBackbone.from_preset` and `OpenSegTask.from_preset` call
`load_checked_preset` with their keras_hub base's loader.
"""

import json
import os
import re

from keras_hub.src.utils.preset_utils import CONFIG_FILE
from keras_hub.src.utils.preset_utils import IMAGE_CONVERTER_CONFIG_FILE
from keras_hub.src.utils.preset_utils import MODEL_WEIGHTS_FILE
from keras_hub.src.utils.preset_utils import PREPROCESSOR_CONFIG_FILE
from keras_hub.src.utils.preset_utils import SHARDED_MODEL_WEIGHTS_CONFIG_FILE
from keras_hub.src.utils.preset_utils import TASK_CONFIG_FILE
from keras_hub.src.utils.preset_utils import TASK_WEIGHTS_FILE

from keras_openseg.models.openseg_presets import OPENSEG_ARCHITECTURES

BACKBONE_NAME = "keras_openseg>OpenSegBackbone"
# What keras_hub raises for a preset that does not fit the class (h5py's errors are OSErrors).
LOADING_ERRORS = (ValueError, OSError, KeyError, TypeError)


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
    elif not os.path.exists(os.path.join(preset, SHARDED_MODEL_WEIGHTS_CONFIG_FILE)):
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


def load_checked_preset(cls, load, preset, load_weights=True, task_cls=None, **kwargs):
    """`load(preset, load_weights=..., **kwargs)` (a keras_hub `from_preset`), checked before and after.

    Args:
        cls: the class being loaded, for the messages.
        load: the keras_hub loader, e.g. `super().from_preset` of an OpenSeg class.
        preset: string. Path of a preset directory written by `save_to_preset`, or a hub handle.
        load_weights: bool. Whether the weights are loaded (and so checked). Defaults to `True`.
        task_cls: the task class when loading a task (it needs a preprocessor), None for a backbone.
            Defaults to `None`.
        **kwargs: passed to `load`.
    """
    if not isinstance(preset, str):
        raise ValueError(f"`preset` must be a path or a handle string. Received: {preset!r}")
    if preset in OPENSEG_ARCHITECTURES:
        raise ValueError(
            f"'{preset}' names an untrained OpenSeg architecture, not a saved preset. Build it with "
            f"`{cls.__name__}.from_architecture('{preset}')`, train it, and save it with `save_to_preset`."
        )
    if "://" not in preset:
        if not os.path.isdir(preset):
            raise ValueError(
                f"OpenSeg preset '{preset}' not found: it is neither a directory nor a `kaggle://` / `hf://` "
                f"handle. Untrained architectures are built with `from_architecture`: "
                f"{sorted(OPENSEG_ARCHITECTURES)}."
            )
        check_local_preset(preset, load_weights=load_weights, task_cls=task_cls)
        if task_cls is not None:
            kwargs = with_mixed_policy_resolved(preset, kwargs)
    try:
        return load(preset, load_weights=load_weights, **kwargs)
    except LOADING_ERRORS as error:
        raise ValueError(
            f"Could not load the OpenSeg preset '{preset}' as `{cls.__name__}`: the problem is in "
            f"{_culprit(error)}: {type(error).__name__}: {error}"
        ) from error


def with_mixed_policy_resolved(preset, kwargs):
    """`kwargs` for keras_hub's `load_task` of a local preset, with `dtype` set if it was saved mixed-precision.

    keras_hub 0.32 loads a task saved in a float policy in the current global policy, but its check
    (`is_float_dtype`) raises on "mixed_bfloat16" / "mixed_float16"; this applies its rule before it looks.
    """
    if kwargs.get("dtype") is None and _saved_mixed_policy(preset):
        import keras

        kwargs = dict(kwargs, dtype=keras.config.dtype_policy())
    return kwargs


def _saved_mixed_policy(preset):
    """The mixed-precision policy name (`mixed_bfloat16`, `mixed_float16`) a local preset was saved in, or None."""
    try:
        with open(os.path.join(preset, CONFIG_FILE), encoding="utf-8") as file:
            dtype = json.load(file).get("config", {}).get("dtype")
    except (OSError, ValueError):
        return None
    name = dtype.get("config", {}).get("name") if isinstance(dtype, dict) else dtype
    return name if isinstance(name, str) and re.fullmatch(r"mixed_b?float\d+", name) else None


def architecture_entry(name):
    """The registry entry of a named architecture; a ValueError naming the known ones otherwise."""
    if name not in OPENSEG_ARCHITECTURES:
        raise ValueError(f"Unknown OpenSeg architecture {name!r}. Known: {sorted(OPENSEG_ARCHITECTURES)}.")
    return OPENSEG_ARCHITECTURES[name]
