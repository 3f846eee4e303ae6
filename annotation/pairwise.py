"""The blind pairwise labeling job for hard prompt/response pairs: its names and its XML.

An expert sees the prompt and two responses, "Response A" and "Response B", side by side.
One is the candidate's response, the other the current model's own answer to the same
prompt, in an order drawn per task (:mod:`annotation.pair_tasks`); nothing on the page says
which is which. The expert picks one required choice ("A is better", "B is better", "Both
bad"), may write a better response, and may give a rationale.

Layout (tags from https://labelstud.io/tags): ``<Header>`` title and instructions, the
prompt (``<Text value="$prompt">``), the two responses in a flex row (``<Text
value="$response_a">``, ``<Text value="$response_b">``), a ``<Choices>`` whose ``<Choice>``
tags show a label and export an ``alias`` (``a``, ``b``, ``both_bad``), and two optional
``<TextArea>``: the rewrite (empty, not prefilled with either side, which would hint at
nothing but invites copying) and the rationale.

``annotation/pairwise_config.xml`` is :func:`pairwise_labeling_config` of the default
config, for pasting into the Label Studio UI; a test keeps the two equal.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from annotation.config import check_choices, check_tag_names
from annotation.labeling import add_choices, add_text_area, check_controls, render_view

DEFAULT_PAIRWISE_XML_PATH = Path(__file__).with_name("pairwise_config.xml")

# The task data fields the view shows; the only ones a pairwise task carries besides
# candidate_id and round (annotation.pair_tasks checks that).
SHOWN_FIELDS = ("prompt", "response_a", "response_b")
_RESPONSE_TAGS = {"response_a", "response_b"}


@dataclass(frozen=True)
class PairwiseConfig:
    """Names and choices of the pairwise job.

    ``choices`` are the exported values (an ``alias`` in the XML) for "A is better", "B is
    better" and "Both bad", in that order; ``labels`` what the expert reads. The attribute
    names ``from_name``, ``to_name``, ``corrected_text_name`` and ``rationale_name`` match
    :class:`annotation.config.AnnotationConfig`, so :class:`annotation.studio.Studio` serves
    either job.
    """

    from_name: str = "preference"
    to_name: str = "prompt"
    choices: tuple[str, str, str] = ("a", "b", "both_bad")
    labels: tuple[str, str, str] = ("A is better", "B is better", "Both bad")
    corrected_text_name: str = "rewrite"
    rationale_name: str = "rationale"
    title: str = "Which response answers the question better?"
    instructions: str = (
        "Read the question and both responses. Pick the better one, or 'Both bad' when "
        "neither is one a careful expert would give. If you can, write a good response in "
        "the box (a rewrite becomes training data of its own)."
    )

    def __post_init__(self) -> None:
        names = {
            "from_name": self.from_name,
            "to_name": self.to_name,
            "corrected_text_name": self.corrected_text_name,
            "rationale_name": self.rationale_name,
        }
        check_tag_names("PairwiseConfig", names)
        if len(set(names.values())) != len(names) or _RESPONSE_TAGS & set(names.values()):
            raise ValueError(
                "PairwiseConfig tag names must be distinct and not response_a/response_b, "
                f"got {names}"
            )
        for field_name in ("choices", "labels"):
            check_choices(
                f"PairwiseConfig.{field_name}",
                getattr(self, field_name),
                ("A better", "B better", "both bad"),
            )

    @property
    def a(self) -> str:
        return self.choices[0]

    @property
    def b(self) -> str:
        return self.choices[1]

    @property
    def both_bad(self) -> str:
        return self.choices[2]

    def side_choice(self, side: str) -> str:
        """The exported choice that prefers side ``"a"`` or ``"b"``."""
        if side not in ("a", "b"):
            raise ValueError(f"side must be 'a' or 'b', got {side!r}")
        return self.a if side == "a" else self.b


def pairwise_labeling_config(cfg: PairwiseConfig) -> str:
    """The pairwise labeling config XML for ``cfg``; checked to parse and hold its controls."""
    view = ET.Element("View")
    ET.SubElement(view, "Header", value=cfg.title)
    ET.SubElement(view, "Header", value=cfg.instructions, size="6")
    ET.SubElement(view, "Header", value="Question", size="5")
    ET.SubElement(view, "Text", name=cfg.to_name, value="$prompt")

    row = ET.SubElement(view, "View", style="display: flex; gap: 1em; margin-top: 1em")
    for side, field in (("A", "response_a"), ("B", "response_b")):
        column = ET.SubElement(row, "View", style="flex: 1; padding: 0.5em; border: 1px solid #ccc")
        ET.SubElement(column, "Header", value=f"Response {side}", size="5")
        ET.SubElement(column, "Text", name=field, value=f"${field}")

    choices = add_choices(view, cfg.from_name, cfg.to_name)
    for label, value in zip(cfg.labels, cfg.choices, strict=True):
        ET.SubElement(choices, "Choice", value=label, alias=value)

    add_text_area(
        view,
        "A better response (optional)",
        cfg.corrected_text_name,
        cfg.to_name,
        rows=6,
        placeholder="Write the response an expert would give",
    )
    add_text_area(
        view,
        "Rationale (optional)",
        cfg.rationale_name,
        cfg.to_name,
        rows=2,
        placeholder="Why is it better, or why are both bad?",
    )
    xml = render_view(view)
    _check(xml, cfg)
    return xml


def _check(xml: str, cfg: PairwiseConfig) -> None:
    """Parse the XML back and check the controls and fields the parser and tasks rely on."""
    root = ET.fromstring(xml)
    expected = {
        cfg.to_name: "Text",
        "response_a": "Text",
        "response_b": "Text",
        cfg.from_name: "Choices",
        cfg.corrected_text_name: "TextArea",
        cfg.rationale_name: "TextArea",
    }
    names = check_controls(root, expected, "pairwise labeling config")
    exported = tuple(c.get("alias") for c in names[cfg.from_name])
    if exported != cfg.choices:
        raise ValueError(f"pairwise choices export {exported}, expected {cfg.choices}")
    variables = {el.get("value") for el in root.iter("Text")}
    if variables != {f"${f}" for f in SHOWN_FIELDS}:
        raise ValueError(f"pairwise view shows {sorted(variables)}, expected {SHOWN_FIELDS}")
