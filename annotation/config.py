"""AnnotationConfig: the names that tie the labeling config, tasks and exports together.

Label Studio links a control tag (``from_name``) to an object tag (``to_name``); every
annotation result carries both names, so tasks, predictions and the export parser must agree
with the labeling config. One frozen config holds those names for all of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Label Studio tag names end up in XML attributes and in ``$variables``; keep them plain.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_COUNT_WORDS = {2: "two", 3: "three"}

# Data fields shown to the annotator as read-only context, in display order.
CONTEXT_FIELDS = ("quality", "bar", "learnability", "loss_model", "loss_ref", "reason")


def check_tag_names(owner: str, names: dict[str, str]) -> None:
    """Raise ValueError naming ``owner.field`` when a tag name is not a plain identifier.

    Shared by every labeling job's config (:class:`AnnotationConfig`,
    :class:`annotation.pairwise.PairwiseConfig`): the names go into XML attributes and
    ``$variables`` alike.
    """
    for field_name, value in names.items():
        if not isinstance(value, str) or not _NAME.fullmatch(value):
            raise ValueError(f"{owner}.{field_name} must be a plain identifier, got {value!r}")


def check_choices(where: str, value: object, meanings: tuple[str, ...]) -> None:
    """Raise ValueError unless ``value`` is a tuple of distinct, non-empty, trimmed strings,
    one per entry of ``meanings`` (what each position means, for the message)."""
    if (
        not isinstance(value, tuple)
        or len(value) != len(meanings)
        or not all(isinstance(c, str) and c and c.strip() == c for c in value)
        or len(set(value)) != len(value)
    ):
        count = _COUNT_WORDS.get(len(meanings), str(len(meanings)))
        raise ValueError(
            f"{where} must be {count} distinct non-empty strings without surrounding spaces "
            f"({', '.join(meanings)}), got {value!r}"
        )


@dataclass(frozen=True)
class AnnotationConfig:
    """Names and choices of the accept/reject labeling job.

    ``choices[0]`` means "keep the text" (accept) and ``choices[1]`` "drop it" (reject); the
    strings are what annotators see and what the export contains.
    """

    from_name: str = "decision"
    to_name: str = "text"
    choices: tuple[str, str] = ("accept", "reject")
    corrected_text_name: str = "corrected_text"
    rationale_name: str = "rationale"
    title: str = "Is this text worth training on?"
    instructions: str = (
        "Accept text a careful expert would be glad to learn from; reject junk, duplicates, "
        "broken encodings and boilerplate. If a small edit would make it good, put the fixed "
        "text in the box and accept."
    )

    def __post_init__(self) -> None:
        names = {
            "from_name": self.from_name,
            "to_name": self.to_name,
            "corrected_text_name": self.corrected_text_name,
            "rationale_name": self.rationale_name,
        }
        check_tag_names("AnnotationConfig", names)
        if len(set(names.values())) != len(names):
            raise ValueError(f"AnnotationConfig tag names must be distinct, got {names}")
        check_choices("AnnotationConfig.choices", self.choices, ("accept", "reject"))

    @property
    def accept(self) -> str:
        return self.choices[0]

    @property
    def reject(self) -> str:
        return self.choices[1]
