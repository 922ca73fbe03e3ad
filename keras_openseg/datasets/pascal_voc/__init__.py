"""`pascal_voc` tfds builder: PASCAL VOC 2012 semantic segmentation (PAS-20)."""

from keras_openseg.datasets.pascal_voc.pascal_voc import PascalVOC
