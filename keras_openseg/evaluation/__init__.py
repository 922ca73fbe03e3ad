"""Evaluation of open-vocabulary segmentation (paper sec. 4): mIoU, Grounding mIoU, proposal recall, the loop."""

from keras_openseg.lazy_imports import lazy_attributes

# public name -> defining module, imported on first use (the command line loads none of them)
__getattr__, __dir__ = lazy_attributes(
    __name__,
    {
        "PASCAL_CONTEXT_59_CLASS_NAMES": "keras_openseg.evaluation.background_rule",
        "VOC_CLASS_NAMES": "keras_openseg.evaluation.background_rule",
        "background_query_labels": "keras_openseg.evaluation.background_rule",
        "normalize_class_name": "keras_openseg.evaluation.background_rule",
        "voc_background_rule": "keras_openseg.evaluation.background_rule",
        "voc_extended_vocabulary": "keras_openseg.evaluation.background_rule",
        "SYNONYM_VOCABULARIES": "keras_openseg.evaluation.queries",
        "class_queries": "keras_openseg.evaluation.queries",
        "embed_class_queries": "keras_openseg.evaluation.queries",
        "load_synonyms": "keras_openseg.evaluation.queries",
        "resolve_prompt_templates": "keras_openseg.evaluation.queries",
        "evaluate": "keras_openseg.evaluation.evaluator",
        "GroundingMeanIoU": "keras_openseg.evaluation.grounding_mean_iou",
        "grounded_predictions": "keras_openseg.evaluation.grounding_mean_iou",
        "NO_CLASS": "keras_openseg.evaluation.mean_iou",
        "MeanIoU": "keras_openseg.evaluation.mean_iou",
        "ProposalRecall": "keras_openseg.evaluation.proposal_recall",
        "binarize_proposals": "keras_openseg.evaluation.proposal_recall",
        "BENCHMARKS": "keras_openseg.evaluation.tables",
        "benchmark_name": "keras_openseg.evaluation.tables",
        "format_miou_table": "keras_openseg.evaluation.tables",
        "format_per_class_table": "keras_openseg.evaluation.tables",
        "format_recall_table": "keras_openseg.evaluation.tables",
    },
)
