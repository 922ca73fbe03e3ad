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
    export/      SavedModel / ONNX / LiteRT / torch export; google_release.py: Google's release signature
    distribution.py, visualization.py, demo.py, segment_cli.py, cli.py

The public names are imported on first use (PEP 562, `lazy_imports.py`), not by `import keras_openseg`: Keras,
and with it TensorFlow, JAX or PyTorch, loads when a model, layer or loss is first touched, so
`keras-openseg --help` is fast and `KERAS_BACKEND` can still be set after `import keras_openseg`.
"""

from keras_openseg.lazy_imports import lazy_attributes

__version__ = "0.1.0"

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

__getattr__, __dir__ = lazy_attributes(
    __name__,
    {
        "CaptionWordExtractor": "keras_openseg.text",
        "OpenSegBackbone": "keras_openseg.models",
        "OpenSegModel": "keras_openseg.models",
        "OpenSegTeacher": "keras_openseg.models",
        "TextEmbedder": "keras_openseg.models",
        "WordEmbeddingTable": "keras_openseg.text",
        "segmentation_logits": "keras_openseg.models.open_vocabulary_logits",
        "visualize": "keras_openseg.visualization",
    },
    submodules=(
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
    ),
)
