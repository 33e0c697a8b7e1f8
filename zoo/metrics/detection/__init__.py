"""Detection metrics: COCO AP/AR (boxes, masks, keypoints) and Pascal VOC AP.

``coco``: the official COCO evaluation (shared by box, mask and keypoint scoring) and
the results-file writer; ``voc``: the VOC protocols (continuous voc07/voc12 and the
devkit's voc07_devkit) and the ``protocol=`` parser; ``evaluator``: the
``DetectionEvaluator`` that validation and ``evaluate.py`` use; ``coco_files``: COCO
json files checked entry by entry and scored. Every public name is re-exported here.
"""

from zoo.metrics.detection.coco import (
    COCO_KEYPOINT_SIGMAS,
    IOU_TYPES,
    CocoEvaluation,
    coco_evaluate,
    index_results,
    write_coco_results,
)
from zoo.metrics.detection.coco_files import (
    check_coco_gt,
    check_coco_results,
    headline_ap_key,
    score_coco_files,
)
from zoo.metrics.detection.voc import (
    DEVKIT07_RECALL_LEVELS,
    PROTOCOLS,
    VOC07_RECALL_LEVELS,
    VOC_PROTOCOLS,
    VocClassResult,
    VocScores,
    parse_protocols,
    voc_ap,
    voc_evaluate,
    voc_scores,
)

__all__ = [
    "COCO_KEYPOINT_SIGMAS", "DEFAULT_PROTOCOLS", "DEVKIT07_RECALL_LEVELS", "IOU_TYPES", "PROTOCOLS",
    "VOC07_RECALL_LEVELS", "VOC_PROTOCOLS", "CocoEvaluation", "DetectionEvaluator", "VocClassResult",
    "VocScores", "check_coco_gt", "check_coco_results", "coco_evaluate", "headline_ap_key",
    "index_results", "parse_protocols", "score_coco_files", "voc_ap", "voc_evaluate", "voc_scores",
    "write_coco_results",
]


def __getattr__(name: str):  # the evaluator imports torch; scoring json files does not need it
    if name in ("DEFAULT_PROTOCOLS", "DetectionEvaluator"):
        from zoo.metrics.detection import evaluator

        return getattr(evaluator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
