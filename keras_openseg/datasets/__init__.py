"""tfds builders of keras_openseg; importing this package registers them with tfds.

After `import keras_openseg.datasets`, `tfds.load("coco_panoptic_captions/2017", ...)` and friends work.
`build_dataset` (and `keras-openseg build-dataset`) prepares one from its manual download.
"""

import importlib

from keras_openseg.datasets.build import build_dataset
from keras_openseg.datasets.coco_panoptic_captions import CocoPanopticCaptions
from keras_openseg.datasets.localized_narratives import LocalizedNarratives

_BUILDERS = [CocoPanopticCaptions, LocalizedNarratives]
# Builders written in parallel by other helpers: imported when their folder exists.
# TODO(coco helper): plain imports once openseg_shapes, ade20k, pascal_context and pascal_voc have landed.
for _module, _class in (
    ("keras_openseg.datasets.openseg_shapes", "OpenSegShapes"),
    ("keras_openseg.datasets.ade20k", "ADE20k"),
    ("keras_openseg.datasets.pascal_context", "PascalContext"),
    ("keras_openseg.datasets.pascal_voc", "PascalVOC"),
):
    try:
        _BUILDERS.append(getattr(importlib.import_module(_module), _class))
    except (ImportError, AttributeError):
        pass

# tfds name -> builder class, for every dataset of the package.
BUILDERS = {builder.name: builder for builder in _BUILDERS}
