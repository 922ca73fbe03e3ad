"""OpenSeg models: the backbone, the student and teacher tasks, preprocessing, inference scores, presets."""

from keras_openseg.models.mask_nms import mask_iou
from keras_openseg.models.mask_nms import mask_nms
from keras_openseg.models.open_vocabulary_logits import pixel_logits
from keras_openseg.models.open_vocabulary_logits import region_pooled_pixel_features
from keras_openseg.models.open_vocabulary_logits import segmentation_logits
from keras_openseg.models.openseg_backbone import OpenSegBackbone
from keras_openseg.models.openseg_image_converter import OpenSegImageConverter
from keras_openseg.models.openseg_model import OpenSegModel
from keras_openseg.models.openseg_preprocessor import OpenSegPreprocessor
from keras_openseg.models.openseg_presets import OPENSEG_ARCHITECTURES
from keras_openseg.models.openseg_task import cosine_schedule
from keras_openseg.models.openseg_task import training_optimizer
from keras_openseg.models.openseg_teacher import OpenSegTeacher
from keras_openseg.models.per_pixel_grounding_model import PerPixelGroundingModel
from keras_openseg.models.supervised_region_model import SupervisedRegionModel
from keras_openseg.models.supervised_region_model import region_classification_loss
from keras_openseg.models.text_embedder import TextEmbedder
from keras_openseg.models.text_embedder_preprocessor import TextEmbedderPreprocessor

__all__ = [
    "OPENSEG_ARCHITECTURES",
    "OpenSegBackbone",
    "OpenSegImageConverter",
    "OpenSegModel",
    "OpenSegPreprocessor",
    "OpenSegTeacher",
    "PerPixelGroundingModel",
    "SupervisedRegionModel",
    "TextEmbedder",
    "TextEmbedderPreprocessor",
    "cosine_schedule",
    "mask_iou",
    "mask_nms",
    "pixel_logits",
    "region_classification_loss",
    "region_pooled_pixel_features",
    "segmentation_logits",
    "training_optimizer",
]
