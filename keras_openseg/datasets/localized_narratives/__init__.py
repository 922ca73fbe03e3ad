"""Localized Narratives captions of COCO, Flickr30k and Open Images (tfds builder `localized_narratives`)."""

from keras_openseg.datasets.localized_narratives.localized_narratives import LocalizedNarratives
