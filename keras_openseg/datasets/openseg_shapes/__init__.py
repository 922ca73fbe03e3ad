"""`openseg_shapes`: the procedural tfds dataset of keras_openseg (no download). Importing registers it."""

from keras_openseg.datasets.openseg_shapes.openseg_shapes_dataset_builder import OpenSegShapes
