"""Message layouts, the no-template fallback, and model strings."""

from __future__ import annotations

import pytest

from labscale.backends import ALIASES, parse_model_spec
from labscale.errors import InvalidParameter
from labscale.prompts import Shot, build_messages, render_plain

SHOTS = [Shot("q1", "a1"), Shot("q2", "a2"), Shot("q3", "a3")]


def test_chat_layout_puts_instruction_in_first_user_turn():
    msgs = build_messages("Do the task.", "the query", SHOTS[:2], system="sys")
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert msgs[1]["content"] == "Do the task.\n\nq1"
    assert msgs[2]["content"] == "a1" and msgs[3]["content"] == "q2" and msgs[-1]["content"] == "the query"


def test_zero_shot_is_one_user_turn():
    msgs = build_messages("Do the task.", "the query", [])
    assert msgs == [{"role": "user", "content": "Do the task.\n\nthe query"}]


def test_single_layout_inlines_shots_and_transition():
    msgs = build_messages("Do it.", "Q?", SHOTS, style="single", transition="Now this one.")
    assert len(msgs) == 1 and msgs[0]["role"] == "user"
    text = msgs[0]["content"]
    assert text.startswith("Do it.\n\nHere is an example of how to perform the task.\nq1\na1")
    assert text.count("Here is another example") == 2
    assert text.endswith("Now this one.\n\nQ?")


def test_unknown_shot_style_names_valid_ones():
    with pytest.raises(InvalidParameter, match=r"'multi'.*'chat', 'single'"):
        build_messages("i", "q", SHOTS, style="multi")


def test_plain_fallback_adds_roles_without_rewriting_content():
    msgs = build_messages("The user asked.", "assistant text stays", SHOTS[:1], system="A helpful assistant.")
    text = render_plain(msgs)
    assert text == (
        "A helpful assistant.\nUser: The user asked.\n\nq1\nAssistant: a1\nUser: assistant text stays\nAssistant:"
    )


def test_model_strings():
    spec = parse_model_spec("mistral-7b-instruct?load_in_4bit=true")
    assert (spec.backend, spec.model, spec.options) == (
        "hf",
        "mistralai/Mistral-7B-Instruct-v0.1",
        {"load_in_4bit": True},
    )
    spec = parse_model_spec("hf:meta-llama/Llama-2-7b-chat-hf@abc123?adapter=runs/a&batch_size=4")
    assert (spec.model, spec.revision, spec.options, spec.adapter) == (
        "meta-llama/Llama-2-7b-chat-hf",
        "abc123",
        {"batch_size": 4},
        "runs/a",
    )
    # the adapter is a field: added and removed with the right separator, never re-parsed from a glued string
    four_bit = parse_model_spec("mistral-7b-instruct?load_in_4bit=true")
    tuned = four_bit.with_adapter("runs/b")
    assert tuned.text == "mistral-7b-instruct?load_in_4bit=true&adapter=runs/b"
    assert parse_model_spec(tuned.text) == tuned
    assert tuned.base == four_bit and tuned.base.text == four_bit.text
    plain = parse_model_spec("smollm2-135m").with_adapter("runs/c")
    assert (plain.text, plain.adapter, plain.label) == ("smollm2-135m?adapter=runs/c", "runs/c", plain.text)
    assert spec.with_adapter("runs/d").text == "hf:meta-llama/Llama-2-7b-chat-hf@abc123?batch_size=4&adapter=runs/d"
    with pytest.raises(InvalidParameter, match="adapters load onto Hugging Face models only"):
        parse_model_spec("gpt-4-turbo").with_adapter("runs/e")
    spec = parse_model_spec("openai:m?base_url=http://127.0.0.1:8000/v1&concurrency=2")
    assert spec.backend == "openai" and spec.options == {"base_url": "http://127.0.0.1:8000/v1", "concurrency": 2}
    assert parse_model_spec("gpt-4-turbo").model == "gpt-4-1106-preview"
    assert parse_model_spec("smollm2-135m").slug == "smollm2-135m"


@pytest.mark.parametrize(
    "text, pattern",
    [
        ("gpt-5", r"unknown model 'gpt-5'; valid choices: .*'smollm2-135m'"),
        ("vllm:x", r"unknown model backend 'vllm'; valid choices: 'hf', 'openai'"),
        ("hf:m?load_in_3bit=true", r"unknown option for backend 'hf' 'load_in_3bit'; valid choices: .*'load_in_4bit'"),
        ("hf:m?dtype=float8", r"'float8'.*'bfloat16'"),
        ("hf:m?batch_size=0", r"batch_size.*positive"),
        ("openai:m?concurrency=two", r"concurrency.*int"),
        ("", r"non-empty"),
    ],
)
def test_bad_model_strings_name_the_value_and_choices(text, pattern):
    with pytest.raises(InvalidParameter, match=pattern):
        parse_model_spec(text)


def test_aliases_cover_the_study_models():
    assert {
        "mistral-7b-instruct",
        "llama-2-7b-chat",
        "falcon-7b-instruct",
        "gpt-4-turbo",
        "gpt-3.5-turbo",
        "smollm2-135m",
    } <= set(ALIASES)


@pytest.mark.parametrize(
    "text, label",
    [
        ("openai:m?base_url=http://127.0.0.1:8000/v1", "openai:m?base_url=http://127.0.0.1:8000/v1"),
        ("openai:m?base_url=http://127.0.0.1:8000/v1&timeout=120", "openai:m?base_url=http://127.0.0.1:8000/v1"),
        (
            "openai:m?timeout=5&base_url=http://127.0.0.1:8000/v1&concurrency=8&max_retries=2&api_key_env=K",
            "openai:m?base_url=http://127.0.0.1:8000/v1",
        ),
        ("gpt-4-turbo?timeout=300", "gpt-4-turbo"),
        ("smollm2-135m?batch_size=3", "smollm2-135m"),
        ("hf:org/m@abc?batch_size=4&load_in_4bit=true", "hf:org/m@abc?load_in_4bit=true"),
        ("smollm2-135m?adapter=runs/a&batch_size=2", "smollm2-135m?adapter=runs/a"),
    ],
)
def test_label_and_run_folder_leave_out_client_side_options(text, label):
    """Timeout, retries, concurrency, the key's variable and the HF batch size cannot change a reply: one model, one
    label, one run folder (the one a record made without those options already has)."""
    spec = parse_model_spec(text)
    assert spec.label == label and spec.text == text
    assert spec.slug == parse_model_spec(label).slug
    assert parse_model_spec(label).label == label  # a string without client options names its existing folder
