import keras
from keras import ops

# Stands in for -inf where examples are left out: finite, so masked entries never produce inf - inf = NaN.
_LEFT_OUT = -1e9


def _l2_normalize(x):
    return x * ops.rsqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), 1e-12))


def _check_inputs(region_embeddings, word_embeddings, word_valid):
    if len(region_embeddings.shape) != 3:
        raise ValueError(
            f"`region_embeddings` must be [B, N, D]. Received shape {tuple(region_embeddings.shape)}."
        )
    if len(word_embeddings.shape) != 3:
        raise ValueError(f"`word_embeddings` must be [B, K, D]. Received shape {tuple(word_embeddings.shape)}.")

    def differ(a, b):
        return a is not None and b is not None and a != b

    if differ(region_embeddings.shape[0], word_embeddings.shape[0]):
        raise ValueError(
            f"`region_embeddings` and `word_embeddings` must have the same batch size. Received shapes "
            f"{tuple(region_embeddings.shape)} and {tuple(word_embeddings.shape)}."
        )
    if differ(region_embeddings.shape[-1], word_embeddings.shape[-1]):
        raise ValueError(
            f"`region_embeddings` and `word_embeddings` must have the same embedding size D. Received shapes "
            f"{tuple(region_embeddings.shape)} and {tuple(word_embeddings.shape)}."
        )
    if word_valid is not None and (
        len(word_valid.shape) != 2 or any(differ(a, b) for a, b in zip(word_valid.shape, word_embeddings.shape[:2]))
    ):
        raise ValueError(
            f"`word_valid` must be [B, K] matching `word_embeddings` {tuple(word_embeddings.shape)}. Received "
            f"shape {tuple(word_valid.shape)}."
        )


def grounding_scores(region_embeddings, word_embeddings, word_valid, temperature):
    """Grounding score G(I_a, C_c) of every image with every caption of the same batch (OpenSeg eq. 2).

    Args:
        region_embeddings: `[G, B, N, D]` float32, L2-normalized.
        word_embeddings: `[G, B, K, D]` float32, L2-normalized.
        word_valid: `[G, B, K]` float32 0/1.
        temperature: float32 scalar.

    Returns:
        `[G, B, B]` float32, `[g, a, c]` = mean over the valid words j of caption c of
        `sum_i softmax_i(<z_ai, w_cj> / tau) <z_ai, w_cj>`; 0 for captions without a valid word.
    """
    similarity = ops.einsum("gand,gckd->gacnk", region_embeddings, word_embeddings)
    # Softmax over the regions i of image a: each word picks the regions that ground it.
    attention = ops.softmax(similarity / temperature, axis=3)
    word_scores = ops.sum(attention * similarity, axis=3)  # [G, a, c, K]
    word_count = ops.sum(word_valid, axis=-1)  # [G, c]
    return ops.sum(word_scores * word_valid[:, None], axis=-1) / ops.maximum(word_count, 1.0)[:, None, :]


def grounding_loss(region_embeddings, word_embeddings, word_valid=None, temperature=0.07, group_size=None):
    """Region-word grounding loss L_G (OpenSeg eqs. 2-4, sec. 3.2).

    Cosine similarities between the region embeddings z of an image and the word embeddings w of a caption
    give the grounding score G(I, C) (eq. 2). Each image is contrasted with the captions of the batch and each
    caption with the images (eqs. 3, 4): the loss is the mean over examples b of
    `-(log softmax_a G(I_a, C_b)/tau at a=b + log softmax_c G(I_b, C_c)/tau at c=b)`. Computed in float32.

    Examples whose caption has no valid word take no part (neither as positive nor as negative); the loss is
    0 when no example is left.

    Args:
        region_embeddings: `[B, N, D]` region embeddings (any scale; they are L2-normalized here).
        word_embeddings: `[B, K, D]` word embeddings of each image's caption (L2-normalized here).
        word_valid: `[B, K]` bool or None. Which word slots are real. Defaults to `None` (all valid).
        temperature: float or float scalar tensor (e.g. a `Temperature` layer's value). The tau of both the
            softmax over regions and the contrastive softmax. Defaults to `0.07`.
        group_size: int or None. Cut the batch into consecutive groups of this size, each its own contrastive
            batch (the paper's per-core "unsync" loss); the loss is then the mean over all valid examples of
            all groups. Must divide B. Defaults to `None` (the whole batch, "sync").

    Returns:
        A float32 scalar.

    Example:

    >>> regions = np.random.normal(size=(4, 6, 8)).astype("float32")
    >>> words = np.random.normal(size=(4, 3, 8)).astype("float32")
    >>> valid = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 1, 1]], bool)
    >>> float(grounding_loss(regions, words, valid, temperature=0.1, group_size=2)) > 0
    True
    """
    region_embeddings = ops.cast(region_embeddings, "float32")
    word_embeddings = ops.cast(word_embeddings, "float32")
    _check_inputs(region_embeddings, word_embeddings, word_valid)
    if word_valid is None:
        word_valid = ops.ones(ops.shape(word_embeddings)[:2], dtype="float32")
    else:
        word_valid = ops.cast(ops.cast(word_valid, "bool"), "float32")
    if isinstance(temperature, (int, float)) and not temperature > 0:
        raise ValueError(f"`temperature` must be > 0. Received: temperature={temperature}")
    temperature = ops.cast(temperature, "float32")
    if len(temperature.shape) != 0:
        raise ValueError(f"`temperature` must be a scalar. Received shape {tuple(temperature.shape)}.")

    batch_size = ops.shape(region_embeddings)[0]
    if group_size is None:
        group_size = batch_size
    elif not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"`group_size` must be a positive int or None. Received: group_size={group_size!r}")
    elif isinstance(batch_size, int) and batch_size % group_size:
        raise ValueError(
            f"`group_size` must divide the batch size {batch_size}. Received: group_size={group_size}"
        )

    def grouped(x):
        return ops.reshape(x, (-1, group_size) + tuple(ops.shape(x)[1:]))

    regions = grouped(_l2_normalize(region_embeddings))  # [G, g, N, D]
    words = grouped(_l2_normalize(word_embeddings))  # [G, g, K, D]
    word_valid = grouped(word_valid)  # [G, g, K]

    logits = grounding_scores(regions, words, word_valid, temperature) / temperature  # [G, a, c]
    example_valid = ops.sum(word_valid, axis=-1) > 0.0  # [G, g]
    positive = ops.diagonal(logits, axis1=1, axis2=2)  # G(I_b, C_b) / tau, [G, g]
    # Per caption c: softmax over the valid images a; per image a: softmax over the valid captions c.
    over_images = ops.logsumexp(ops.where(example_valid[:, :, None], logits, _LEFT_OUT), axis=1)  # [G, c]
    over_captions = ops.logsumexp(ops.where(example_valid[:, None, :], logits, _LEFT_OUT), axis=2)  # [G, a]
    per_example = (over_images - positive) + (over_captions - positive)
    per_example = ops.where(example_valid, per_example, 0.0)
    count = ops.sum(ops.cast(example_valid, "float32"))
    return ops.sum(per_example) / ops.maximum(count, 1.0)


@keras.saving.register_keras_serializable(package="keras_openseg")
class GroundingLoss(keras.losses.Loss):
    """Keras loss wrapper of `grounding_loss` (OpenSeg eqs. 2-4).

    The temperature is either fixed here or, for the learnable temperature of the model, passed with the
    predictions as `y_pred["temperature"]` (e.g. the output of a `Temperature` layer), which then wins.

    Args:
        temperature: float. Temperature used when `y_pred` brings none. Defaults to `0.07`.
        group_size: int or None. Contrastive group size (None: the whole batch). Defaults to `None`.
        name: string. Defaults to `"grounding_loss"`.
        **kwargs: `keras.losses.Loss` arguments (`reduction`, `dtype`).

    Call arguments:
        y_true: `[B, K, D]` word embeddings, or a dict `{"word_embeddings": ..., "word_valid": [B, K]}`.
        y_pred: `[B, N, D]` region embeddings, or a dict `{"region_embeddings": ..., "temperature": scalar}`.

    Returns:
        A float32 scalar (the loss is already a batch mean; `sample_weight` is not supported).

    Example:

    >>> loss = GroundingLoss(temperature=0.1)
    >>> y_true = {"word_embeddings": np.random.normal(size=(2, 3, 8)), "word_valid": np.ones((2, 3), bool)}
    >>> float(loss(y_true, np.random.normal(size=(2, 5, 8)))) > 0
    True
    """

    def __init__(self, temperature=0.07, group_size=None, name="grounding_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if not temperature > 0:
            raise ValueError(f"`temperature` must be > 0. Received: temperature={temperature}")
        self.temperature = temperature
        self.group_size = group_size

    def call(self, y_true, y_pred):
        if isinstance(y_true, dict):
            word_embeddings, word_valid = y_true["word_embeddings"], y_true.get("word_valid")
        else:
            word_embeddings, word_valid = y_true, None
        temperature = self.temperature
        if isinstance(y_pred, dict):
            temperature = y_pred.get("temperature", temperature)
            y_pred = y_pred["region_embeddings"]
        if word_valid is not None:
            word_valid = ops.cast(word_valid, "float32") > 0.5
        return grounding_loss(y_pred, word_embeddings, word_valid, temperature=temperature, group_size=self.group_size)

    def get_config(self):
        config = super().get_config()
        config.update({"temperature": self.temperature, "group_size": self.group_size})
        return config
