"""The tf.data input pipeline of keras_openseg (works under every KERAS_BACKEND).

`TrainingSource` + `make_training_dataset` give the `(x, y)` batches `OpenSegModel.fit` trains on;
`caption_words_for` extracts and caches the caption words once per dataset; `make_evaluation_dataset` gives
images and semantic label maps for mIoU; `write_pseudo_labels` runs a teacher over caption-only images once and
`load_pseudo_labels` reads its masks back as a source.
"""

from keras_openseg.data.evaluation_dataset import make_evaluation_dataset
from keras_openseg.data.pseudo_labels import load_pseudo_labels
from keras_openseg.data.pseudo_labels import write_pseudo_labels
from keras_openseg.data.training_dataset import make_training_dataset
from keras_openseg.data.training_source import TrainingSource
from keras_openseg.text.caption_words import caption_vocabulary
from keras_openseg.text.caption_words import caption_words_for
