"""The tf.data input pipeline of keras_openseg (works under every KERAS_BACKEND).

`TrainingSource` + `make_training_dataset` give the `(x, y)` batches `OpenSegModel.fit` trains on;
`caption_words_for` extracts and caches the caption words once per dataset; `make_evaluation_dataset` gives
images and semantic label maps for mIoU; `pseudo_label_dataset` turns a teacher's masks into a source.
"""

from keras_openseg.data.caption_words import caption_vocabulary
from keras_openseg.data.caption_words import caption_words_for
from keras_openseg.data.evaluation_dataset import make_evaluation_dataset
from keras_openseg.data.pseudo_labels import load_pseudo_labels
from keras_openseg.data.pseudo_labels import pseudo_label_dataset
from keras_openseg.data.training_dataset import make_training_dataset
from keras_openseg.data.training_source import TrainingSource
