"""The Label Studio labeling config for expert review of hard candidates.

Layout (tags from https://labelstud.io/tags): a title and instructions (``<Header>``), the
candidate text (``<Text value="$text">``), the model's view as read-only context (``<Header>``
pairs showing ``$quality``, ``$bar``, ``$learnability``, ``$loss_model``, ``$loss_ref``,
``$reason``), a required single-choice accept/reject (``<Choices>``), an optional corrected
text (``<TextArea>`` prefilled with ``$text``; an unchanged submission counts as no
correction) and an optional rationale (``<TextArea>``).

``annotation/labeling_config.xml`` is this function's output for the default config, for
pasting into the Label Studio UI; a test keeps the two equal.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from annotation.config import CONTEXT_FIELDS, AnnotationConfig

DEFAULT_XML_PATH = Path(__file__).with_name("labeling_config.xml")


def labeling_config(cfg: AnnotationConfig) -> str:
    """The labeling config XML for ``cfg``; checked to parse and to hold the named controls."""
    view = ET.Element("View")
    ET.SubElement(view, "Header", value=cfg.title)
    ET.SubElement(view, "Header", value=cfg.instructions, size="6")
    ET.SubElement(view, "Text", name=cfg.to_name, value="$text")

    context = ET.SubElement(view, "View", style="margin-top: 1em; color: #555")
    ET.SubElement(context, "Header", value="The model's view (read-only)", size="5")
    for field in CONTEXT_FIELDS:
        row = ET.SubElement(context, "View", style="display: flex; gap: 0.5em")
        ET.SubElement(row, "Header", value=f"{field}:", size="6")
        ET.SubElement(row, "Header", value=f"${field}", size="6")

    choices = add_choices(view, cfg.from_name, cfg.to_name)
    for choice in cfg.choices:
        ET.SubElement(choices, "Choice", value=choice)

    add_text_area(
        view,
        "Corrected text (optional: edit, then submit)",
        cfg.corrected_text_name,
        cfg.to_name,
        rows=6,
        value="$text",
    )
    add_text_area(
        view,
        "Rationale (optional)",
        cfg.rationale_name,
        cfg.to_name,
        rows=2,
        placeholder="Why accept or reject?",
    )
    xml = render_view(view)
    expected = {
        cfg.to_name: "Text",
        cfg.from_name: "Choices",
        cfg.corrected_text_name: "TextArea",
        cfg.rationale_name: "TextArea",
    }
    check_controls(ET.fromstring(xml), expected, "labeling config")
    return xml


# The building blocks below are shared with the pairwise job (annotation.pairwise), so both
# views give their controls the same attributes and are checked the same way.


def add_choices(view: ET.Element, name: str, to_name: str) -> ET.Element:
    """A required single-choice ``<Choices>`` control shown inline; add ``<Choice>`` tags."""
    return ET.SubElement(
        view,
        "Choices",
        name=name,
        toName=to_name,
        choice="single",
        required="true",
        showInline="true",
    )


def add_text_area(
    view: ET.Element,
    header: str,
    name: str,
    to_name: str,
    *,
    rows: int,
    value: str | None = None,
    placeholder: str | None = None,
) -> None:
    """An optional one-submission ``<TextArea>`` under a small ``<Header>``.

    ``value`` prefills it (a ``$variable``), ``placeholder`` is the hint shown when empty;
    either is left out of the XML when None.
    """
    ET.SubElement(view, "Header", value=header, size="6")
    attrs = {"name": name, "toName": to_name}
    if value is not None:
        attrs["value"] = value
    attrs |= {"rows": str(rows), "editable": "true", "maxSubmissions": "1"}
    if placeholder is not None:
        attrs["placeholder"] = placeholder
    ET.SubElement(view, "TextArea", attrs)


def render_view(view: ET.Element) -> str:
    """The config XML text: two-space indents and a final newline."""
    ET.indent(view, space="  ")
    return ET.tostring(view, encoding="unicode") + "\n"


def check_controls(root: ET.Element, expected: dict[str, str], what: str) -> dict[str, ET.Element]:
    """Check that ``root`` holds each ``name: tag`` of ``expected``; the named elements.

    The export parser and tasks rely on these names, so a config without them is refused.
    """
    named = {el.get("name"): el for el in root.iter() if el.get("name")}
    for name, tag in expected.items():
        if name not in named or named[name].tag != tag:
            found = {n: el.tag for n, el in named.items()}
            raise ValueError(f"{what} lacks <{tag} name={name!r}>: {found}")
    return named
