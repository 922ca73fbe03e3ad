"""`ade20k` tfds builder: ADE20K semantic segmentation (A-150 and A-847)."""

from keras_openseg.datasets.ade20k.ade20k import ADE20K
