"""Label Studio annotation of hard candidates: labeling config, tasks, file queue, consensus.

Everything here is offline and takes and returns plain data; the live server client comes
later. Imports only the standard library, pyarrow, numpy and label-studio-sdk.
"""

from annotation.config import AnnotationConfig
from annotation.consensus import Consensus, annotator_agreement, consensus
from annotation.labeling import labeling_config
from annotation.queue import (
    AnnotationError,
    AnnotationFormatError,
    AnnotationRecord,
    ParseResult,
    parse_export,
    read_queue,
    write_queue,
)
from annotation.simulate import simulate_answers
from annotation.tasks import build_tasks, model_confidence

__all__ = [
    "AnnotationConfig",
    "AnnotationError",
    "AnnotationFormatError",
    "AnnotationRecord",
    "Consensus",
    "ParseResult",
    "annotator_agreement",
    "build_tasks",
    "consensus",
    "labeling_config",
    "model_confidence",
    "parse_export",
    "read_queue",
    "simulate_answers",
    "write_queue",
]
