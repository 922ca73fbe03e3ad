"""`pascal_context` tfds builder: PASCAL-Context semantic segmentation (PC-59 and PC-459)."""

from keras_openseg.datasets.pascal_context.pascal_context import PascalContext
