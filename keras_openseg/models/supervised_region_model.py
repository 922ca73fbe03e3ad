import keras
import numpy as np
from keras import ops

from keras_openseg.losses import best_match_dice_loss
from keras_openseg.losses import scale_loss_for_replicas
from keras_openseg.losses.grounding_loss import l2_normalize
from keras_openseg.models.openseg_model import OpenSegModel
from keras_openseg.models.openseg_task import check_labels


def region_classification_loss(
    region_embeddings, assignment, class_embeddings, mask_classes, mask_valid=None, class_ids=None, temperature=0.07
):
    """Softmax cross-entropy of the matched regions' cosine scores against the classes of their label masks.

    Each label mask m takes the region embedding of the query `assignment` matched it to (the best-match
    dice matching, `best_match_dice_loss(..., return_assignment=True)`); its logits are the cosine
    similarities of that embedding with the K class embeddings, divided by `temperature`, and its target is
    the row of its class. The loss is the mean over the labeled masks of the batch: valid, matched, and with
    a class found in `class_ids` (others, e.g. class -1, are ignored); 0 when there is none. Computed in
    float32 whatever the input dtypes.

    Args:
        region_embeddings: `[B, N, E]` region embeddings (any scale; L2-normalized here).
        assignment: `[B, N, M]` 0/1, at most one 1 per column (treated as a constant: no gradient flows
            through it).
        class_embeddings: `[K, E]` text embeddings of the class names (L2-normalized here).
        mask_classes: `[B, M]` int. The class id of each label mask; -1 (or any id not in `class_ids`) ignores
            the mask.
        mask_valid: `[B, M]` bool or None. Which label slots are real. Defaults to `None` (all valid).
        class_ids: list of K ints or None. The class id of each row of `class_embeddings`. Defaults to `None`
            (`1..K`, the 1-based category ids of openseg_shapes).
        temperature: float or float32 scalar tensor (e.g. a `Temperature` layer's value). Defaults to `0.07`.

    Returns:
        A float32 scalar.

    Example:

    >>> regions = np.random.normal(size=(2, 4, 8)).astype("float32")
    >>> assignment = np.zeros((2, 4, 3), "float32"); assignment[:, 0, 0] = assignment[:, 2, 1] = 1
    >>> classes = np.random.normal(size=(5, 8)).astype("float32")
    >>> labels = np.array([[1, 5, -1], [2, -1, -1]])
    >>> float(region_classification_loss(regions, assignment, classes, labels, temperature=0.1)) > 0
    True
    """
    region_embeddings = ops.cast(region_embeddings, "float32")
    class_embeddings = ops.cast(class_embeddings, "float32")
    num_classes = class_embeddings.shape[0]
    if class_ids is None:
        class_ids = list(range(1, num_classes + 1))
    if len(class_ids) != num_classes:
        raise ValueError(
            f"`class_ids` must have one id per row of `class_embeddings` ({num_classes}). Received "
            f"{len(class_ids)} ids."
        )
    assignment = ops.stop_gradient(ops.cast(assignment, "float32"))
    mask_classes = ops.cast(mask_classes, "int32")
    if mask_valid is None:
        mask_valid = ops.ones(ops.shape(mask_classes), "bool")
    else:
        mask_valid = ops.cast(mask_valid, "bool")
    temperature = ops.cast(temperature, "float32")

    regions = l2_normalize(region_embeddings)  # [B, N, E]
    classes = l2_normalize(class_embeddings)  # [K, E]
    matched = ops.einsum("bnm,bne->bme", assignment, regions)  # the matched query's embedding, 0 when unmatched
    logits = ops.einsum("bme,ke->bmk", matched, classes) / temperature  # [B, M, K]
    ids = ops.convert_to_tensor(np.asarray(class_ids, "int32"))
    target = ops.cast(ops.equal(mask_classes[:, :, None], ids[None, None, :]), "float32")  # [B, M, K]
    labeled = mask_valid & (ops.sum(target, axis=-1) > 0.0) & (ops.sum(assignment, axis=1) > 0.0)
    per_mask = ops.logsumexp(logits, axis=-1) - ops.sum(target * logits, axis=-1)  # [B, M]
    per_mask = ops.where(labeled, per_mask, 0.0)
    count = ops.sum(ops.cast(labeled, "float32"))
    return ops.sum(per_mask) / ops.maximum(count, 1.0)


# Attribute names of the config of `OpenSegModel` that `from_architecture` carries over.
_OPENSEG_OPTIONS = ("alpha", "min_temperature", "group_size", "sync_grounding_loss", "matching", "dice_smooth")


@keras.saving.register_keras_serializable(package="keras_openseg")
class SupervisedRegionModel(OpenSegModel):
    """A supervised (closed-vocabulary) upper bound of OpenSeg: region embeddings learn the class of their mask.

    The same network, data and budget as `OpenSegModel`, but the region embeddings are trained with the
    class of their matched label mask instead of the caption words: L = L_CE + alpha * L_S, where L_S is
    OpenSeg's best-match dice loss (eq. 1, the same call and `matching`) and L_CE matches every valid label
    mask to a query with that same matching (stop-gradient), takes the query's region embedding, and applies
    a softmax cross-entropy over the cosine similarities with the K class embeddings divided by the model's
    learnable temperature (`region_classification_loss`). Comparing it with OpenSeg tells capacity and
    budget apart from weak (caption) supervision.

    Training batches are those of `make_training_dataset(..., mask_classes=True)` (what `train` builds with
    `TrainingConfig(supervision="labels")`): y = `{"masks", "mask_valid", "mask_classes" [B, M] int}`, the
    class id of each label mask, -1 for none (pseudo labels, caption-only examples); x = the images, or the
    training dict (its words are ignored). `fit` logs `loss`, `classification_loss` (L_CE) and `dice_loss`.

    Inference is OpenSeg's, unchanged: `segment` and the evaluation score the region embeddings against the
    query text embeddings (eq. 6), so its per-class IoUs compare directly with OpenSeg's.

    Args:
        backbone: `OpenSegBackbone`.
        preprocessor: `OpenSegPreprocessor` or None. Defaults to `None`.
        class_embeddings: `[K, E]` float array or None: the text embeddings of the K class names (e.g.
            `model.text_embeddings(names)` averaged over the templates, or rows of a word table), E the
            backbone's `embedding_dim`. Kept in a non-trainable weight, saved with the model. None (as when a
            saved model is loaded) creates that weight with zeros for `num_classes` rows. Defaults to `None`.
        class_ids: list of K ints or None. The dataset category id of each row (as `mask_classes` holds
            them). Defaults to `None` (`1..K`: openseg_shapes' 1-based indices into `class_names`).
        num_classes: int or None. K when `class_embeddings` is None; otherwise it must agree. Defaults to
            `None` (the length of `class_embeddings` or of `class_ids`).
        **kwargs: those of `OpenSegModel` (`text_embedder`, `alpha`, `temperature`, `matching`, ...).

    Example:

    ```python
    names = ["circle", "square", "sky", "grass"]
    class_embeddings = text_embedder.embed(names)  # [4, E]
    model = SupervisedRegionModel.from_architecture("tiny", class_embeddings=class_embeddings)
    model.compile()
    model.fit(make_training_dataset(source, table, mask_classes=True), steps_per_epoch=100)
    ```
    """

    def __init__(self, backbone, preprocessor=None, class_embeddings=None, class_ids=None, num_classes=None, **kwargs):
        embedding_dim = backbone.embedding_dim if hasattr(backbone, "embedding_dim") else None
        if class_embeddings is not None:
            class_embeddings = np.asarray(ops.convert_to_numpy(class_embeddings), "float32")
            if class_embeddings.ndim != 2 or class_embeddings.shape[0] == 0:
                raise ValueError(
                    "`class_embeddings` must be [K, E] with K >= 1 (average synonyms or templates first). "
                    f"Received shape {class_embeddings.shape}."
                )
            if embedding_dim is not None and class_embeddings.shape[1] != embedding_dim:
                raise ValueError(
                    f"`class_embeddings` have size {class_embeddings.shape[1]}, but the backbone's embedding_dim "
                    f"is {embedding_dim}: embed the class names with the text encoder of the region embeddings."
                )
            norms = np.linalg.norm(class_embeddings, axis=-1)
            if not np.all(np.isfinite(norms) & (norms > 0)):
                raise ValueError("`class_embeddings` has zero or non-finite rows; every class needs an embedding.")
        sizes = {
            "class_embeddings": None if class_embeddings is None else class_embeddings.shape[0],
            "class_ids": None if class_ids is None else len(class_ids),
            "num_classes": num_classes,
        }
        known = {size for size in sizes.values() if size is not None}
        if not known:
            raise ValueError(
                "`SupervisedRegionModel` needs its classes: pass `class_embeddings` ([K, E], the text embeddings "
                "of the class names) and, unless the dataset's class ids are 1..K, `class_ids`."
            )
        if len(known) > 1:
            given = ", ".join(f"{name}: {size}" for name, size in sizes.items() if size is not None)
            raise ValueError(f"The number of classes K disagrees between the arguments ({given}).")
        (num_classes,) = known
        if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
            raise ValueError(f"`num_classes` must be a positive int. Received: num_classes={num_classes!r}")
        num_classes = int(num_classes)
        if class_ids is None:
            class_ids = list(range(1, num_classes + 1))
        if not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in class_ids):
            raise ValueError(f"`class_ids` must be ints. Received: {list(class_ids)!r}")
        class_ids = [int(i) for i in class_ids]
        if len(set(class_ids)) != len(class_ids):
            raise ValueError(f"`class_ids` must be distinct. Received: {class_ids}")
        if any(i < 0 for i in class_ids):
            raise ValueError(f"`class_ids` must be >= 0 (-1 marks masks without a class). Received: {class_ids}")
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)

        # === Weights and metrics ===
        # Created after the functional init, as the temperature is; non-trainable, but saved with the model.
        initial = np.zeros((num_classes, backbone.embedding_dim), "float32")
        if class_embeddings is not None:
            initial = class_embeddings
        self.class_embeddings = self.add_weight(
            name="class_embeddings",
            shape=initial.shape,
            initializer=keras.initializers.Constant(initial),
            dtype="float32",
            trainable=False,
            autocast=False,
        )
        self.classification_loss_tracker = keras.metrics.Mean(name="classification_loss")

        # === Config ===
        self.class_ids = tuple(class_ids)
        self.num_classes = num_classes

    @property
    def metrics(self):
        # No caption grounding here: the inherited `grounding_loss` tracker would log zeros.
        return [metric for metric in super().metrics if metric is not self.grounding_loss_tracker]

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        check_labels(y, type(self).__name__)
        if "mask_classes" not in y:
            raise ValueError(
                f"{type(self).__name__} trains on y = {{'masks', 'mask_valid', 'mask_classes'}}: each label "
                "mask's class. Train with TrainingConfig(supervision='labels') / "
                f"make_training_dataset(mask_classes=True). Received y: {sorted(y)}."
            )
        masks = ops.sigmoid(ops.cast(y_pred["mask_logits"], "float32"))
        dice, assignment = best_match_dice_loss(
            masks,
            y["masks"],
            y.get("mask_valid"),
            smooth=self.dice_smooth,
            matching=self.matching,
            return_assignment=True,
        )
        classification = region_classification_loss(
            y_pred["region_embeddings"],
            assignment,
            self.class_embeddings,
            y["mask_classes"],
            y.get("mask_valid"),
            class_ids=self.class_ids,
            temperature=self.temperature_layer(),
        )
        self.classification_loss_tracker.update_state(classification)
        self.dice_loss_tracker.update_state(dice)
        # Keras sums the replicas' gradients under tf.distribute: each replica reports loss / R.
        return scale_loss_for_replicas(self._add_regularization(classification + self.alpha * dice))

    @classmethod
    def from_architecture(
        cls, name, load_weights=True, text_embedder=None, class_embeddings=None, class_ids=None, **backbone_kwargs
    ):
        """Build a named architecture (as `OpenSegModel.from_architecture`) with the given classes.

        Args:
            name: string. A key of `architectures`.
            load_weights: bool. Load the image encoder's pretrained weights. Defaults to `True`.
            text_embedder: as for `OpenSegModel.from_architecture`. Defaults to `None`.
            class_embeddings: `[K, E]` class-name embeddings (see the class). Required.
            class_ids: list of K ints or None. Defaults to `None` (`1..K`).
            **backbone_kwargs: `OpenSegBackbone` arguments overriding the architecture's.
        """
        base = OpenSegModel.from_architecture(
            name, load_weights=load_weights, text_embedder=text_embedder, **backbone_kwargs
        )
        # The architecture's task options, as `base` took them.
        options = {key: getattr(base, key) for key in _OPENSEG_OPTIONS}
        options["temperature"] = base.temperature_layer.initial_value
        return cls(
            base.backbone,
            base.preprocessor,
            class_embeddings=class_embeddings,
            class_ids=class_ids,
            text_embedder=base.text_embedder,
            **options,
        )

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes, "class_ids": list(self.class_ids)})
        return config
