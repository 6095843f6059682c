"""Turning an instruction, fixed shots and a query into chat messages, and messages into a prompt string.

Two shot layouts, both from the study:

* ``"chat"``: shots as alternating user/assistant turns (the paper's stated protocol, after the Hugging Face
  chat-template and OpenAI documentation). The instruction opens the first user turn, as in the original
  entity-resolution code.
* ``"single"``: everything in one user prompt ("Here is an example of how to perform the task. ..."), the
  layout the original fact-checking code actually ran (its multi-turn switch was dead code) and the one
  Falcon's developers advise.

Models without a chat template (the study's Falcon-7B-Instruct) are rendered with
:func:`render_plain`, a documented ``User:/Assistant:`` fallback, never by rewriting ChatML text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .errors import InvalidParameter, check_choice

SHOT_STYLES = ("chat", "single")


@dataclass(frozen=True)
class Shot:
    """One fixed demonstration: the user text and the expected reply."""

    user: str
    assistant: str


#: the study's separator between the instruction, shot and query blocks of one user turn
BLOCK_SEPARATOR = "\n\n"


def _join(*parts: str, separator: str = BLOCK_SEPARATOR) -> str:
    return separator.join(p.strip("\n") for p in parts if p and p.strip())


DEFAULT_TRANSITION = "Here is the example that needs to be answered. Respond in the same format as the examples."


def build_messages(
    instruction: str,
    query: str,
    shots: Sequence[Shot] = (),
    *,
    system: str | None = None,
    style: str = "chat",
    transition: str | None = None,
    separator: str = BLOCK_SEPARATOR,
) -> list[dict[str, str]]:
    """Chat messages for one query with ``shots`` laid out as ``style`` ("chat" or "single").

    ``transition`` is the sentence that introduces the query after single-prompt shots; ``separator`` joins the
    instruction, shot and query blocks within a user turn (the study's blank line by default).
    """
    check_choice("shot style", style, SHOT_STYLES)
    if not isinstance(separator, str) or not separator:
        raise InvalidParameter(f"separator must be a non-empty string, got {separator!r}")
    messages: list[dict[str, str]] = []
    if system:
        messages.append({"role": "system", "content": system})
    if style == "single" or not shots:
        blocks = [instruction]
        for i, shot in enumerate(shots):
            lead = (
                "Here is an example of how to perform the task."
                if i == 0
                else "Here is another example of how to perform the task."
            )
            blocks.append(f"{lead}\n{shot.user.strip()}\n{shot.assistant.strip()}")
        if shots:
            blocks.append(transition or DEFAULT_TRANSITION)
        blocks.append(query)
        messages.append({"role": "user", "content": _join(*blocks, separator=separator)})
        return messages
    for i, shot in enumerate(shots):
        user = _join(instruction, shot.user, separator=separator) if i == 0 else shot.user
        messages.append({"role": "user", "content": user})
        messages.append({"role": "assistant", "content": shot.assistant})
    messages.append({"role": "user", "content": query})
    return messages


def render_plain(messages: Sequence[dict[str, str]]) -> str:
    """Fallback prompt for models without a chat template: ``System`` text, then ``User:``/``Assistant:`` turns.

    This is the format Falcon-7B-Instruct's model card uses. Only the role labels are added; message
    content is never rewritten (the original code replaced every "user"/"assistant" inside the text).
    """
    lines: list[str] = []
    for message in messages:
        role, content = message["role"], message["content"].strip()
        if role == "system":
            lines.append(content)
        elif role == "user":
            lines.append(f"User: {content}")
        else:
            lines.append(f"Assistant: {content}")
    lines.append("Assistant:")
    return "\n".join(lines)


def render_prompt(tokenizer, messages: Sequence[dict[str, str]]) -> str:
    """Prompt string for a Hugging Face tokenizer: its chat template when it has one, else :func:`render_plain`."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    return render_plain(messages)
