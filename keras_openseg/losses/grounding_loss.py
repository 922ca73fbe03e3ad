import keras
from keras import ops

# Stands in for -inf where examples are left out: finite, so masked entries never produce inf - inf = NaN.
_LEFT_OUT = -1e9


def l2_normalize(x, axis=-1, epsilon=1e-12):
    """`x / |x|` along `axis` (the cosine similarities of eqs. 2-4 and 6), with |x|^2 floored at `epsilon`."""
    return x * ops.rsqrt(ops.maximum(ops.sum(ops.square(x), axis=axis, keepdims=True), epsilon))


def _check_inputs(region_embeddings, word_embeddings, word_valid):
    if len(region_embeddings.shape) != 3:
        raise ValueError(f"`region_embeddings` must be [B, N, D]. Received shape {tuple(region_embeddings.shape)}.")
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


# Scores of at most this many (image, caption, region, word) similarities are held at once. The loss has
# B^2 N K of them: 2^31 (34 GB with the gradient's buffers) for a global batch of 1024 with N=128, K=16.
# Above this budget the captions are taken in blocks, one after the other, and the backward pass recomputes
# each block's similarities instead of keeping them, so memory stays near one block's whatever B is.
_BLOCK_SIMILARITIES = 2**24


def caption_block_size(num_groups, group_size, num_regions, num_words, budget=None):
    """Captions per block of `grounding_scores`: all of them when one block fits the budget, else fewer.

    `budget` is the number of similarities a block may hold (None: `_BLOCK_SIMILARITIES`). Sizes that are
    unknown while tracing (None) give one block: the whole group.
    """
    budget = _BLOCK_SIMILARITIES if budget is None else budget
    sizes = (num_groups, group_size, num_regions, num_words)
    if any(not isinstance(size, int) for size in sizes):
        return group_size
    per_caption = num_groups * group_size * num_regions * num_words
    return max(1, min(group_size, budget // max(per_caption, 1)))


def _block_scores(region_embeddings, word_embeddings, word_valid, temperature):
    """G for all images against one block of captions: `[G, a, N, D]` x `[G, c, K, D]` -> `[G, a, c]`."""
    similarity = ops.einsum("gand,gckd->gacnk", region_embeddings, word_embeddings)
    # Softmax over the regions i of image a: each word picks the regions that ground it.
    attention = ops.softmax(similarity / temperature, axis=3)
    word_scores = ops.sum(attention * similarity, axis=3)  # [G, a, c, K]
    word_count = ops.sum(word_valid, axis=-1)  # [G, c]
    return ops.sum(word_scores * word_valid[:, None], axis=-1) / ops.maximum(word_count, 1.0)[:, None, :]


@ops.custom_gradient
def _blockwise_scores(region_embeddings, word_blocks, valid_blocks, temperature):
    """`_block_scores` over caption blocks `[num_blocks, G, c, ...]`, one block after the other in both passes.

    The gradient is written out, so that nothing of a block outlives its loop iteration: with
    p = softmax_i(s / tau) and f_j = sum_i p_i s_i, d f_j / d s_i = p_i (1 + (s_i - f_j) / tau) and
    d f_j / d tau = -sum_i p_i s_i (s_i - f_j) / tau^2.
    """
    num_blocks, num_groups, block_size = word_blocks.shape[:3]
    num_images = region_embeddings.shape[1]

    def forward_block(index, scores):
        block = _block_scores(
            region_embeddings, ops.take(word_blocks, index, axis=0), ops.take(valid_blocks, index, axis=0), temperature
        )
        return ops.slice_update(scores, (index, 0, 0, 0), block[None])

    scores = ops.fori_loop(
        0, num_blocks, forward_block, ops.zeros((num_blocks, num_groups, num_images, block_size), "float32")
    )

    def gradient(*args, upstream=None):
        if upstream is None:  # JAX and TensorFlow pass the upstream gradient alone, torch by keyword
            (upstream,) = args

        def backward_block(index, gradients):
            region_gradient, word_gradients, temperature_gradient = gradients
            word_embeddings = ops.take(word_blocks, index, axis=0)
            word_valid = ops.take(valid_blocks, index, axis=0)
            similarity = ops.einsum("gand,gckd->gacnk", region_embeddings, word_embeddings)
            attention = ops.softmax(similarity / temperature, axis=3)
            word_scores = ops.sum(attention * similarity, axis=3, keepdims=True)  # f: [G, a, c, 1, K]
            # d G[a, c] / d f[a, c, j] = valid[c, j] / count[c]
            word_count = ops.maximum(ops.sum(word_valid, axis=-1), 1.0)  # [G, c]
            score_gradient = ops.take(upstream, index, axis=0)  # [G, a, c]
            f_gradient = score_gradient[:, :, :, None] * word_valid[:, None] / word_count[:, None, :, None]
            weighted = f_gradient[:, :, :, None, :] * attention  # [G, a, c, N, K]
            centered = similarity - word_scores
            similarity_gradient = weighted * (1.0 + centered / temperature)
            region_gradient = region_gradient + ops.einsum("gacnk,gckd->gand", similarity_gradient, word_embeddings)
            block_word_gradient = ops.einsum("gacnk,gand->gckd", similarity_gradient, region_embeddings)
            word_gradients = ops.slice_update(word_gradients, (index, 0, 0, 0, 0), block_word_gradient[None])
            temperature_gradient = temperature_gradient - ops.sum(weighted * similarity * centered) / temperature**2
            return region_gradient, word_gradients, temperature_gradient

        init = (ops.zeros_like(region_embeddings), ops.zeros_like(word_blocks), ops.zeros((), "float32"))
        region_gradient, word_gradients, temperature_gradient = ops.fori_loop(0, num_blocks, backward_block, init)
        return region_gradient, word_gradients, ops.zeros_like(valid_blocks), temperature_gradient

    return scores, gradient


def grounding_scores(region_embeddings, word_embeddings, word_valid, temperature, block_size=None):
    """Grounding score G(I_a, C_c) of every image with every caption of the same batch (OpenSeg eq. 2).

    Args:
        region_embeddings: `[G, B, N, D]` float32, L2-normalized.
        word_embeddings: `[G, B, K, D]` float32, L2-normalized.
        word_valid: `[G, B, K]` float32 0/1.
        temperature: float32 scalar.
        block_size: int or None. Captions per block (see `caption_block_size`); None picks it from the
            shapes. Defaults to `None`.

    Returns:
        `[G, B, B]` float32, `[g, a, c]` = mean over the valid words j of caption c of
        `sum_i softmax_i(<z_ai, w_cj> / tau) <z_ai, w_cj>`; 0 for captions without a valid word.
    """
    num_groups, group_size, num_regions, _ = region_embeddings.shape
    if block_size is None:
        block_size = caption_block_size(num_groups, group_size, num_regions, word_embeddings.shape[2])
    if not isinstance(group_size, int) or block_size >= group_size:
        return _block_scores(region_embeddings, word_embeddings, word_valid, temperature)
    num_blocks = -(-group_size // block_size)
    padding = num_blocks * block_size - group_size

    def blocks(x):  # [G, B, ...] -> [num_blocks, G, block_size, ...]; padded captions have no valid word
        if padding:
            x = ops.pad(x, [(0, 0), (0, padding)] + [(0, 0)] * (len(x.shape) - 2))
        x = ops.reshape(x, (num_groups, num_blocks, block_size) + tuple(x.shape[2:]))
        return ops.moveaxis(x, 1, 0)

    scores = _blockwise_scores(region_embeddings, blocks(word_embeddings), blocks(word_valid), temperature)
    scores = ops.reshape(ops.moveaxis(scores, 0, 2), (num_groups, group_size, num_blocks * block_size))
    return scores[:, :, :group_size]


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
        raise ValueError(f"`group_size` must divide the batch size {batch_size}. Received: group_size={group_size}")

    def grouped(x):
        return ops.reshape(x, (-1, group_size) + tuple(ops.shape(x)[1:]))

    regions = grouped(l2_normalize(region_embeddings))  # [G, g, N, D]
    words = grouped(l2_normalize(word_embeddings))  # [G, g, K, D]
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
