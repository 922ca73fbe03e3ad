"""tfds builders of keras_openseg; importing this package registers them with tfds.

After `import keras_openseg.datasets`, `tfds.load("coco_panoptic_captions/2017", ...)` and friends work;
`build_dataset` (and `keras-openseg build-dataset`) prepares one, from its manual download where it needs one;
an incomplete or damaged manual download is a `ManualDirError` naming the file. `manual_download` (reading a
manual dir) and `semantic_segmentation` (the features and checks the semantic-segmentation builders share) are
public modules for builders of your own.
"""

from keras_openseg.datasets.ade20k import ADE20K
from keras_openseg.datasets.build import BUILDERS
from keras_openseg.datasets.build import build_dataset
from keras_openseg.datasets.coco_panoptic_captions import CocoPanopticCaptions
from keras_openseg.datasets.localized_narratives import LocalizedNarratives
from keras_openseg.datasets.manual_download import ManualDirError
from keras_openseg.datasets.openseg_shapes import OpenSegShapes
from keras_openseg.datasets.pascal_context import PascalContext
from keras_openseg.datasets.pascal_voc import PascalVOC
