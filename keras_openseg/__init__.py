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
"""

__version__ = "0.1.0"

from keras_openseg import layers
from keras_openseg import losses
from keras_openseg import models
from keras_openseg import text
from keras_openseg.models import OpenSegBackbone
from keras_openseg.models import OpenSegModel
from keras_openseg.models import OpenSegTeacher
from keras_openseg.models import TextEmbedder
from keras_openseg.models import segmentation_logits
from keras_openseg.text import CaptionWordExtractor
from keras_openseg.text import WordEmbeddingTable
from keras_openseg.visualization import visualize

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
