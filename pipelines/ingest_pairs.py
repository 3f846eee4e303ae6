"""Prompt/response pairs at ingest: read them from a row, validate them, render chat messages.

A pair comes from two fields (``--prompt-field P --response-field R``) or from one list of
chat messages (``--messages-field M``: ``[{"role": "system"|"user"|"assistant", "content":
str}, ...]``, as in Hugging Face chat datasets). For messages, the last message must be an
assistant's: its content is the response; the earlier messages are the prompt, rendered one
per line as ``System: ...`` / ``User: ...`` / ``Assistant: ...``; a lone user message is
its content alone, so ``messages`` and ``prompt``/``response`` sources of the same data
agree. In a CSV file (no nested values) the messages field holds the list as a JSON string.

Both sides are normalised like a plain text (:func:`pipelines.ingest.normalise`). Every
problem is a :class:`PairProblem` with a reason code for the quarantine and a detail that
names the field and, for messages, the message's index.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipelines.config import PairFields

ROLE_LABELS = {"system": "System", "user": "User", "assistant": "Assistant"}


@dataclass(frozen=True)
class PairProblem:
    reason: str
    detail: str


def read_pair(
    fields: dict[str, Any],
    spec: PairFields,
    max_chars: int,
    normalise: Callable[[str], str],
) -> tuple[str, str] | PairProblem:
    """``(prompt, response)``, both normalised and non-empty, or the row's problem."""
    if spec.messages_field is not None:
        split = _split_messages(fields, spec.messages_field, max_chars)
        if isinstance(split, PairProblem):
            return split
        turns, response = split
        prompt = _render(turns, normalise)
        response = normalise(response)
        where = f"messages field {spec.messages_field!r}"
        if not prompt:
            return PairProblem("empty_prompt", f"{where}: no non-empty message before the answer")
        if not response:
            return PairProblem("empty_response", f"{where}: the final assistant message is empty")
        return prompt, response
    assert spec.prompt_field is not None and spec.response_field is not None
    out = []
    for side, name in (("prompt", spec.prompt_field), ("response", spec.response_field)):
        value = _string_field(fields, name, side, max_chars)
        if isinstance(value, PairProblem):
            return value
        value = normalise(value)
        if not value:
            return PairProblem(f"empty_{side}", f"field {name!r} is empty after normalisation")
        out.append(value)
    return out[0], out[1]


def render_messages(turns: list[tuple[str, str]]) -> str:
    """The prompt text of ``(role, content)`` turns (module docstring); not normalised."""
    if len(turns) == 1 and turns[0][0] == "user":
        return turns[0][1]
    return "\n".join(f"{ROLE_LABELS[role]}: {content}" for role, content in turns)


def _render(turns: list[tuple[str, str]], normalise: Callable[[str], str]) -> str:
    kept = [(role, normalise(content)) for role, content in turns]
    return normalise(render_messages([(r, c) for r, c in kept if c]))


def _string_field(
    fields: dict[str, Any], name: str, side: str, max_chars: int
) -> str | PairProblem:
    if name not in fields:
        return PairProblem(f"missing_{side}", f"no field {name!r}")
    value = fields[name]
    if value is None:
        return PairProblem(f"missing_{side}", f"field {name!r} is null")
    if not isinstance(value, str):
        return PairProblem(f"non_string_{side}", f"field {name!r} is {type(value).__name__}")
    if "\x00" in value:
        return PairProblem("nul_byte", f"field {name!r} contains a NUL byte")
    if len(value) > max_chars:
        return PairProblem(
            "too_long", f"field {name!r}: {len(value)} characters > max_chars={max_chars}"
        )
    return value


def _split_messages(
    fields: dict[str, Any], name: str, max_chars: int
) -> tuple[list[tuple[str, str]], str] | PairProblem:
    """The turns before the answer and the answer, checked message by message."""
    if name not in fields or fields[name] is None:
        return PairProblem("missing_messages", f"no field {name!r}")
    messages = fields[name]
    if isinstance(messages, str):  # CSV, or a JSON column stored as text
        try:
            messages = json.loads(messages)
        except json.JSONDecodeError:
            return PairProblem(
                "messages_not_list", f"field {name!r} is a string that is not a JSON list"
            )
    if isinstance(messages, tuple):
        messages = list(messages)
    if not isinstance(messages, list):
        return PairProblem(
            "messages_not_list", f"field {name!r} is {type(messages).__name__}, not a list"
        )
    turns: list[tuple[str, str]] = []
    total = 0
    for i, message in enumerate(messages):
        where = f"field {name!r} message {i}"
        if not isinstance(message, dict):
            return PairProblem("bad_message", f"{where} is {type(message).__name__}, not an object")
        for key in ("role", "content"):
            if message.get(key) is None:
                return PairProblem("bad_message", f"{where} has no {key!r}")
        role, content = message["role"], message["content"]
        if not isinstance(role, str) or role not in ROLE_LABELS:
            return PairProblem(
                "unknown_role", f"{where} has role {role!r}; expected one of {sorted(ROLE_LABELS)}"
            )
        if not isinstance(content, str):
            return PairProblem(
                "bad_message", f"{where} content is {type(content).__name__}, not a string"
            )
        if "\x00" in content:
            return PairProblem("nul_byte", f"{where} contains a NUL byte")
        total += len(content)
        if total > max_chars:
            return PairProblem(
                "too_long", f"field {name!r}: over max_chars={max_chars} characters by message {i}"
            )
        turns.append((role, content))
    if not turns or turns[-1][0] != "assistant":
        last = f"ends with a {turns[-1][0]!r} message" if turns else "is an empty list"
        return PairProblem(
            "no_final_assistant", f"field {name!r} {last}; the last must be the assistant's answer"
        )
    return turns[:-1], turns[-1][1]
