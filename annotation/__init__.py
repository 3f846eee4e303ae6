"""Label Studio annotation of hard candidates: labeling config, tasks, file queue, consensus;
and the blind pairwise view of hard prompt/response pairs (``pairwise``, ``pair_tasks``,
``pair_simulate``).

Everything here is offline and takes and returns plain data; the live server client comes
later. Imports only the standard library, pyarrow, numpy and label-studio-sdk.
"""

from annotation.config import AnnotationConfig
from annotation.consensus import Consensus, annotator_agreement, consensus
from annotation.labeling import labeling_config
from annotation.pair_simulate import simulate_pair_answers
from annotation.pair_tasks import build_pair_tasks, draw_side, map_choice, parse_pair_export
from annotation.pairwise import PairwiseConfig, pairwise_labeling_config
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
    "PairwiseConfig",
    "ParseResult",
    "annotator_agreement",
    "build_pair_tasks",
    "build_tasks",
    "consensus",
    "draw_side",
    "labeling_config",
    "map_choice",
    "model_confidence",
    "pairwise_labeling_config",
    "parse_export",
    "parse_pair_export",
    "read_queue",
    "simulate_answers",
    "simulate_pair_answers",
    "write_queue",
]
