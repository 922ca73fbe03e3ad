"""keras_openseg: OpenSeg open-vocabulary segmentation for Keras 3 (TensorFlow, JAX, PyTorch).

Where things live:
    layers/      FPNFusion, FeatureHead, LearnedPositionEmbedding, MaskCrossAttentionBlock, MaskQueryDecoder,
                 MaskPooling, Temperature
    losses/      best_match_dice_loss (eq. 1), grounding_loss (eqs. 2-4) and their Keras wrappers
    models/      OpenSegBackbone, OpenSegModel, OpenSegTeacher, TextEmbedder, segmentation_logits, presets
    text/        CaptionWordExtractor, WordEmbeddingTable, prompt templates
    data/        tf.data input pipeline (imported on use: `import keras_openseg.data`)
    datasets/    tfds builders (imported on use: `import keras_openseg.datasets`)
    evaluation/  MeanIoU, GroundingMeanIoU, ProposalRecall, evaluate()
    training/    TrainingConfig, train(): the paper's recipe with model.fit
    distribution.py, export.py, visualization.py, demo.py, cli.py

The public names below are imported on first use (PEP 562), not by `import keras_openseg`: Keras, and with it
TensorFlow, JAX or PyTorch, loads only when a model, layer or loss is touched, so `keras-openseg --help` is fast
and `KERAS_BACKEND` can still be set after `import keras_openseg`.
"""

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_PUBLIC_NAMES = {
    "CaptionWordExtractor": "keras_openseg.text",
    "OpenSegBackbone": "keras_openseg.models",
    "OpenSegModel": "keras_openseg.models",
    "OpenSegTeacher": "keras_openseg.models",
    "TextEmbedder": "keras_openseg.models",
    "WordEmbeddingTable": "keras_openseg.text",
    "segmentation_logits": "keras_openseg.models.segmentation_logits",
    "visualize": "keras_openseg.visualization",
}
# sub-packages and modules reachable as attributes, e.g. `keras_openseg.layers.MaskPooling`
_SUBMODULES = (
    "data",
    "datasets",
    "distribution",
    "evaluation",
    "export",
    "layers",
    "losses",
    "models",
    "text",
    "training",
    "visualization",
)

__all__ = [
    "CaptionWordExtractor",
    "OpenSegBackbone",
    "OpenSegModel",
    "OpenSegTeacher",
    "TextEmbedder",
    "WordEmbeddingTable",
    "layers",
    "losses",
    "models",
    "segmentation_logits",
    "text",
    "visualize",
]


def __getattr__(name):
    if name in _PUBLIC_NAMES:
        value = getattr(importlib.import_module(_PUBLIC_NAMES[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC_NAMES) | set(_SUBMODULES))
