"""Pairwise labeling config: valid XML, the named controls, accepted by label-studio-sdk."""

import xml.etree.ElementTree as ET

import pytest
from label_studio_sdk.label_interface import LabelInterface

from annotation.pairwise import (
    DEFAULT_PAIRWISE_XML_PATH,
    SHOWN_FIELDS,
    PairwiseConfig,
    pairwise_labeling_config,
)


def test_shipped_xml_is_the_default_config():
    assert DEFAULT_PAIRWISE_XML_PATH.read_text(encoding="utf-8") == pairwise_labeling_config(
        PairwiseConfig()
    )


def test_layout_and_controls():
    root = ET.fromstring(pairwise_labeling_config(PairwiseConfig()))
    by_name = {el.get("name"): el for el in root.iter() if el.get("name")}
    assert [el.get("value") for el in root.iter("Text")] == [f"${f}" for f in SHOWN_FIELDS]
    headers = [el.get("value") for el in root.iter("Header")]
    assert headers.index("Response A") < headers.index("Response B")
    # the two responses sit side by side in one flex row
    row = next(v for v in root.iter("View") if "flex" in (v.get("style") or "") and len(v) == 2)
    assert [col.find("Text").get("name") for col in row] == ["response_a", "response_b"]
    choices = by_name["preference"]
    assert choices.tag == "Choices" and choices.get("toName") == "prompt"
    assert choices.get("choice") == "single" and choices.get("required") == "true"
    assert [(c.get("value"), c.get("alias")) for c in choices] == [
        ("A is better", "a"),
        ("B is better", "b"),
        ("Both bad", "both_bad"),
    ]
    for name in ("rewrite", "rationale"):
        area = by_name[name]
        assert area.tag == "TextArea" and area.get("required") is None  # optional
        assert area.get("value") is None  # not prefilled with either side


def test_nothing_in_the_view_tells_the_sides_apart():
    xml = pairwise_labeling_config(PairwiseConfig()).lower()
    for word in ("model", "candidate", "$score", "$gap"):
        assert word not in xml


def test_label_studio_sdk_accepts_config_and_exports_aliases():
    li = LabelInterface(pairwise_labeling_config(PairwiseConfig()))
    li.validate()
    assert {c.name for c in li.controls} == {"preference", "rewrite", "rationale"}
    assert li.get_control("preference").labels == ["a", "b", "both_bad"]


def test_custom_names_flow_into_xml():
    cfg = PairwiseConfig(
        from_name="better",
        to_name="question",
        choices=("left", "right", "neither"),
        corrected_text_name="fixed",
        rationale_name="why",
    )
    li = LabelInterface(pairwise_labeling_config(cfg))
    li.validate()
    assert li.get_control("better").labels == ["left", "right", "neither"]
    assert li.get_control("fixed").to_name == ["question"]
    assert (cfg.side_choice("a"), cfg.side_choice("b"), cfg.both_bad) == (
        "left",
        "right",
        "neither",
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"from_name": ""},
        {"from_name": "has space"},
        {"to_name": 'x"y'},
        {"corrected_text_name": "preference"},
        {"rationale_name": "response_a"},
        {"choices": ("a", "a", "both_bad")},
        {"choices": ("a", "b")},
        {"choices": ("a", " b", "c")},
        {"labels": ("A", "B", "")},
    ],
)
def test_bad_config_is_refused(kwargs):
    with pytest.raises(ValueError, match="PairwiseConfig"):
        PairwiseConfig(**kwargs)


def test_side_choice_rejects_unknown_side():
    with pytest.raises(ValueError, match="side must be"):
        PairwiseConfig().side_choice("c")
