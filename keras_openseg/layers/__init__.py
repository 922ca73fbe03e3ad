"""OpenSeg layers: feature fusion, feature heads, position embedding, mask-query decoder, mask pooling, and the
mask shape embedding (beyond the paper)."""

from keras_openseg.layers.feature_head import FeatureHead
from keras_openseg.layers.fpn_fusion import FPNFusion
from keras_openseg.layers.mask_cross_attention import MaskCrossAttentionBlock
from keras_openseg.layers.mask_pooling import MaskPooling
from keras_openseg.layers.mask_query_decoder import MaskQueryDecoder
from keras_openseg.layers.mask_shape_embedding import MaskShapeEmbedding
from keras_openseg.layers.mask_shape_embedding import mask_crops
from keras_openseg.layers.position_embedding import LearnedPositionEmbedding
from keras_openseg.layers.resizing import resize
from keras_openseg.layers.temperature import Temperature

__all__ = [
    "FPNFusion",
    "FeatureHead",
    "LearnedPositionEmbedding",
    "MaskCrossAttentionBlock",
    "MaskPooling",
    "MaskQueryDecoder",
    "MaskShapeEmbedding",
    "Temperature",
    "mask_crops",
    "resize",
]
