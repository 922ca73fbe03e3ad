"""COCO 2017 panoptic segments with captions (tfds builder `coco_panoptic_captions`)."""

from keras_openseg.datasets.coco_panoptic_captions.coco_panoptic_captions import CocoPanopticCaptions
