"""Labeling config: valid XML, the named controls, accepted by label-studio-sdk's parser."""

import xml.etree.ElementTree as ET

import pytest
from label_studio_sdk.label_interface import LabelInterface

from annotation.config import CONTEXT_FIELDS, AnnotationConfig
from annotation.labeling import DEFAULT_XML_PATH, labeling_config


def test_shipped_xml_is_the_default_config():
    assert DEFAULT_XML_PATH.read_text(encoding="utf-8") == labeling_config(AnnotationConfig())


def test_controls_and_context():
    cfg = AnnotationConfig()
    root = ET.fromstring(labeling_config(cfg))
    by_name = {el.get("name"): el for el in root.iter() if el.get("name")}
    assert by_name["text"].tag == "Text" and by_name["text"].get("value") == "$text"
    choices = by_name["decision"]
    assert choices.tag == "Choices"
    assert choices.get("toName") == "text"
    assert choices.get("choice") == "single" and choices.get("required") == "true"
    assert [c.get("value") for c in choices] == ["accept", "reject"]
    for name in ("corrected_text", "rationale"):
        assert by_name[name].tag == "TextArea" and by_name[name].get("toName") == "text"
        assert by_name[name].get("required") is None  # optional
    shown = {el.get("value") for el in root.iter("Header")}
    assert {f"${f}" for f in CONTEXT_FIELDS} <= shown


def test_label_studio_sdk_accepts_config():
    li = LabelInterface(labeling_config(AnnotationConfig()))
    li.validate()
    assert {c.name for c in li.controls} == {"decision", "corrected_text", "rationale"}
    assert li.get_control("decision").labels == ["accept", "reject"]


def test_custom_names_flow_into_xml():
    cfg = AnnotationConfig(
        from_name="verdict",
        to_name="doc",
        choices=("keep", "drop"),
        corrected_text_name="fixed",
        rationale_name="why",
    )
    li = LabelInterface(labeling_config(cfg))
    li.validate()
    assert li.get_control("verdict").labels == ["keep", "drop"]
    assert li.get_control("fixed").to_name == ["doc"]
    assert cfg.accept == "keep" and cfg.reject == "drop"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"from_name": ""},
        {"from_name": "has space"},
        {"to_name": 'x"y'},
        {"rationale_name": "decision"},
        {"choices": ("accept",)},
        {"choices": ("accept", "accept")},
        {"choices": ("accept", " reject")},
        {"choices": ["accept", "reject"]},
    ],
)
def test_config_validation(kwargs):
    with pytest.raises(ValueError):
        AnnotationConfig(**kwargs)
