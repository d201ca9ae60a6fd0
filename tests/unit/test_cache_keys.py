"""Cache keys: what shares a partition, what shares an exact entry, what gets embedded."""

from __future__ import annotations

from typing import Any

from services.cache.keys import is_partition_id, request_keys, semantic_form, tenant_hash


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
