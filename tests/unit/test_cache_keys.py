"""Cache keys: what shares a partition, what shares an exact entry, what gets embedded."""

from __future__ import annotations

from typing import Any

import pytest

from services.cache.keys import KEY_VERSION, is_partition_id, request_keys, semantic_form, tenant_hash
from services.cache.normalise import key_form


def chat(question: str = "What is the capital of France?", system: str = "You are terse.",
         **params: Any) -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "system", "content": system},
                                          {"role": "user", "content": question}], **params}


def test_same_request_gives_same_keys() -> None:
    assert request_keys(chat(), "t1") == request_keys(chat(), "t1")


def test_another_last_question_keeps_the_partition_but_not_the_exact_key() -> None:
    a, b = request_keys(chat("Capital of France?"), "t"), request_keys(chat("Capital of Spain?"), "t")
    assert a.partition == b.partition
    assert a.exact != b.exact


def test_system_prompt_tenant_tier_and_sampling_each_change_the_partition() -> None:
    base = request_keys(chat(), "t").partition
    variants = [
        request_keys(chat(system="You are verbose."), "t"),
        request_keys(chat(), "other-tenant"),
        request_keys({**chat(), "model": "heavyweight"}, "t"),
        request_keys(chat(temperature=0.2), "t"),
        request_keys(chat(tools=[{"type": "function", "function": {"name": "f"}}]), "t"),
        request_keys(chat(response_format={"type": "json_object"}), "t"),
        request_keys(chat(max_tokens=10), "t"),
    ]
    assert all(v.partition != base for v in variants)
    assert len({v.partition for v in variants}) == len(variants)


def test_earlier_turns_are_part_of_the_partition() -> None:
    one_turn = chat()
    two_turns = {**one_turn, "messages": [one_turn["messages"][0], {"role": "user", "content": "Hi"},
                                          {"role": "assistant", "content": "Hello"}, one_turn["messages"][1]]}
    assert request_keys(one_turn, "t").partition != request_keys(two_turns, "t").partition


def test_delivery_fields_and_spelled_out_defaults_do_not_change_keys() -> None:
    plain = request_keys(chat(), "t")
    dressed = request_keys(chat(stream=True, stream_options={"include_usage": True}, user="u1", temperature=1,
                                top_p=1.0, n=1, presence_penalty=0, metadata={"a": "b"}), "t")
    assert dressed == plain


def test_model_names_are_normalised_and_absent_model_means_auto() -> None:
    base = request_keys(chat(), "t")
    assert request_keys({**chat(), "model": " AUTO "}, "t") == base
    assert request_keys({k: v for k, v in chat().items() if k != "model"}, "t") == base


def test_key_order_and_surrounding_whitespace_do_not_matter() -> None:
    reordered = {"messages": [{"content": "You are terse. ", "role": "system"},
                              {"content": "  What is the capital of France?\n", "role": "user"}], "model": "auto"}
    assert request_keys(reordered, "t") == request_keys(chat(), "t")


def test_text_parts_equal_the_same_plain_string() -> None:
    parts = chat()
    parts["messages"][1]["content"] = [{"type": "text", "text": "What is the capital of France?"}]
    assert request_keys(parts, "t") == request_keys(chat(), "t")


def test_semantic_text_is_the_last_user_message_without_trailing_punctuation() -> None:
    body = chat("  What is   the capital of France?! ")
    body["messages"].append({"role": "assistant", "content": "Paris"})
    assert request_keys(body, "t").semantic_text == "What is the capital of France"


def test_no_user_message_or_non_text_content_has_no_semantic_tier() -> None:
    assert request_keys({"messages": [{"role": "system", "content": "hi"}]}, "t").semantic_text is None
    image = chat()
    image["messages"][1]["content"] = [{"type": "text", "text": "What is this?"},
                                       {"type": "image_url", "image_url": {"url": "data:,"}}]
    assert request_keys(image, "t").semantic_text is None


def test_semantic_form_folds_fullwidth_punctuation_and_empties_to_none() -> None:
    assert semantic_form("What is it\uff1f")  # fullwidth question mark == "What is it"
    assert semantic_form(" ?? ") is None
    assert semantic_form(None) is None


def test_partition_ids_and_tenant_tags_are_safe_inside_redis_keys() -> None:
    keys = request_keys(chat(), "tenant:with*glob?chars")
    assert is_partition_id(keys.partition)
    assert keys.tenant == tenant_hash("tenant:with*glob?chars")
    assert keys.redis_key.count(":") == 5
    assert not is_partition_id("*")


def exact(question: str) -> str:
    return request_keys(chat(question), "t").exact


def test_trivially_different_wordings_share_the_exact_key() -> None:
    variants = ["What's the capital of France?", "what is the capital of france", "What  is the capital of France ?",
                "What is the capital of France.", "WHAT's the capital of France!?", "What\u2019s the capital of France"]
    assert len({exact(v) for v in variants}) == 1
    assert exact("Why don't cats like water?") == exact("why do not cats like water")
    assert exact("I can't log in, we're stuck") == exact("i cannot log in we are stuck")
    assert exact("Hello , world") == exact("hello, world")


@pytest.mark.parametrize(("one", "other"), [
    ('Translate "Hello World" to French', 'Translate "hello world" to French'),  # quoted strings verbatim
    ("What does `userId` hold?", "What does `userid` hold?"),  # code
    ("Why is userId undefined?", "Why is userid undefined?"),  # camelCase outside backticks
    ("Is the US in NATO?", "Is the us in NATO?"),  # acronyms keep their case
    ("Status of order 4411", "Status of order 4412"),
    ("Status of order 4411", "Status of order 44.11"),
    ('What does "don\'t panic" mean?', 'What does "do not panic" mean?'),  # no expansion inside quotes
    ("Fetch https://example.com/Report", "Fetch https://example.com/report"),  # URL paths
    ("Email Bob@Example.com", "Email bob@example.com, now"),
    ("What is John's car?", "What is John car?"),  # possessive 's is no "is"
    ("Why is the build not failing?", "Why is the build failing?"),
])
def test_wordings_that_need_different_answers_never_share_the_exact_key(one: str, other: str) -> None:
    assert exact(one) != exact(other)


def test_semantic_text_is_normalised_but_keeps_case_and_literals() -> None:
    assert request_keys(chat("What's  the capital of Japan?"), "t").semantic_text == "What is the capital of Japan"
    assert semantic_form('Why doesn\'t `fooBar` print "don\'t"?') == 'Why does not `fooBar` print "don\'t"'
    assert semantic_form("Where\u2019s order #4,411 ?") == "Where is order #4,411"


def test_key_form_folds_plain_words_only() -> None:
    assert key_form("What is JavaScript's Map in iOS?") == "what is JavaScript's map in iOS?"
    assert key_form("Compare Python, Rust and Go") == "compare python rust and go"
    assert key_form("sum 1,000 and 2, then 3") == "sum 1,000 and 2, then 3"  # commas between numbers stay


def test_the_key_version_moved_with_the_normalisation() -> None:
    assert KEY_VERSION == 2
