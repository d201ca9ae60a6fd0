"""A session's turn is stored by the router in the round trip of the answer's last replies (so the
client's next turn, on any gateway, sees it), from the answer as it was written: a plain completion or
a stream's chunks. An answer that ends in an error stores nothing; a save Redis refuses costs the
answer nothing and is counted as failed. Real Redis, 7.x and 6.2."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from services.router.replies import ReplyWriter
from shared.messages import ReplyBatch, decode
from shared.sessions import SessionSave, Turn

pytestmark = pytest.mark.redis_flavours

REPLIES = "test:session-replies"
KEY = "draftgate:session:test-owner:s1"
MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "old question"},
            {"role": "assistant", "content": "old answer"}, {"role": "user", "content": "new question"}]


@pytest.fixture
async def stream(redis_client: Redis) -> str:
    await redis_client.xadd(REPLIES, {"m": b"opened"})  # a reply stream exists once its gateway reads it
    return REPLIES


def writer(redis: Redis, results: list[str], max_tokens: int = 1000) -> ReplyWriter:
    saving = SessionSave(KEY, own_from=3, history_tokens=(12,), max_tokens=max_tokens, ttl_s=60)
    return ReplyWriter(redis, REPLIES, "r1", maxlen=100, ttl_s=30, session=saving, messages=MESSAGES,
                       turn_saved=results.append)


async def stored(redis: Redis) -> list[Turn | None]:
    return [Turn.decode(raw) for raw in await redis.lrange(KEY, 0, -1)]


async def replies_written(redis: Redis) -> int:
    return sum(len(decode(ReplyBatch, fields[b"m"]).replies) for _, fields in (await redis.xrange(REPLIES))[1:])


async def test_a_plain_answer_s_turn_is_stored_with_its_last_replies(redis_client: Redis, stream: str) -> None:
    history = Turn(MESSAGES[1:3], 12)  # the history the request was sent with (history_tokens)
    await redis_client.rpush(KEY, Turn([{"role": "user", "content": "older"}], 5000).encode(), history.encode())
    results: list[str] = []
    out = writer(redis_client, results)
    completion = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "new answer"}}]}
    await out.finish(out.completion(completion))
    kept, turn = await stored(redis_client)  # the turn that no longer fits any request was trimmed away
    assert kept == history
    assert turn is not None and turn.messages == [{"role": "user", "content": "new question"},
                                                  {"role": "assistant", "content": "new answer"}]
    assert 0 < await redis_client.ttl(KEY) <= 60
    assert results == ["saved"]


async def test_a_stream_s_turn_is_its_chunks_put_together(redis_client: Redis, stream: str) -> None:
    results: list[str] = []
    out = writer(redis_client, results)
    await out.send(out.chunk({"choices": [{"index": 0, "delta": {"role": "assistant", "content": "new "}}]}))
    await out.finish(out.chunk({"choices": [{"index": 0, "delta": {"content": "answer"}, "finish_reason": "stop"}]}))
    (turn,) = await stored(redis_client)
    assert turn is not None and turn.messages[-1] == {"role": "assistant", "content": "new answer"}
    assert results == ["saved"]


async def test_an_answer_that_ends_in_an_error_stores_no_turn(redis_client: Redis, stream: str) -> None:
    results: list[str] = []
    out = writer(redis_client, results)
    await out.send(out.chunk({"choices": [{"index": 0, "delta": {"content": "cut "}}]}))
    await out.finish(out.error(502, {"error": {"message": "upstream failed"}}))
    assert await stored(redis_client) == [] and results == []


async def test_a_save_redis_refuses_costs_the_answer_nothing(redis_client: Redis, stream: str) -> None:
    await redis_client.set(KEY, "not a list")  # WRONGTYPE for the turn's RPUSH
    results: list[str] = []
    out = writer(redis_client, results)
    await out.finish(out.completion({"choices": [{"index": 0, "message": {"role": "assistant", "content": "a"}}]}))
    assert await replies_written(redis_client) == 2  # the completion and END
    assert results == ["failed"]
