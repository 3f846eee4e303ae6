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

    choices = ET.SubElement(
        view,
        "Choices",
        name=cfg.from_name,
        toName=cfg.to_name,
        choice="single",
        required="true",
        showInline="true",
    )
    for choice in cfg.choices:
        ET.SubElement(choices, "Choice", value=choice)

    ET.SubElement(view, "Header", value="Corrected text (optional: edit, then submit)", size="6")
    ET.SubElement(
        view,
        "TextArea",
        name=cfg.corrected_text_name,
        toName=cfg.to_name,
        value="$text",
        rows="6",
        editable="true",
        maxSubmissions="1",
    )
    ET.SubElement(view, "Header", value="Rationale (optional)", size="6")
    ET.SubElement(
        view,
        "TextArea",
        name=cfg.rationale_name,
        toName=cfg.to_name,
        rows="2",
        editable="true",
        maxSubmissions="1",
        placeholder="Why accept or reject?",
    )
    ET.indent(view, space="  ")
    xml = ET.tostring(view, encoding="unicode") + "\n"
    _check(xml, cfg)
    return xml


def _check(xml: str, cfg: AnnotationConfig) -> None:
    """Parse the XML back and check the controls the export parser relies on."""
    root = ET.fromstring(xml)
    names = {el.get("name"): el.tag for el in root.iter() if el.get("name")}
    expected = {
        cfg.to_name: "Text",
        cfg.from_name: "Choices",
        cfg.corrected_text_name: "TextArea",
        cfg.rationale_name: "TextArea",
    }
    for name, tag in expected.items():
        if names.get(name) != tag:
            raise ValueError(f"labeling config lacks <{tag} name={name!r}>: {names}")
