"""The LLM judge: grades an answer that has no reference (open-ended and creative items) by a rubric.

The judge is the heavyweight tier, called through the router's upstream code. It scores 1 to 5 and
an answer is acceptable at 3 or more, the scale draft-thinker uses (1 wrong or incoherent, 2 partly
right but missing what matters, 3 acceptable, 4 good, 5 as good as an expert's). It is asked for a
JSON object; a judge that answers in prose is still read when it states a score ("The score is 4."), and one
that states none is asked again for the digit alone (small models that cannot write the JSON can
mostly do that), then left ungraded (never guessed: a wrong label teaches the policy the wrong
thing, a missing one only makes the data set smaller).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from services.router.calibration.graders import Verdict
from services.router.calibration.stream import stream_answer
from services.router.upstream import Tier

ACCEPTABLE = 3
MAX_TOKENS = 200
ATTEMPTS = 2

PROMPT = """\
You are an evaluation judge. Grade the answer to the request below against the rubric.

Respond with ONLY a JSON object, no markdown fences:
{{"score": <1-5>, "reasoning": "<one short sentence>"}}

Score guide:
1 = wrong, off-topic or incoherent
2 = partly right but misses what the rubric requires
3 = acceptable: does what was asked, with minor flaws
4 = good
5 = excellent, as good as an expert's answer

Request:
{request}

Rubric:
{rubric}

Answer:
{answer}"""

AGAIN = "Your reply stated no score. Reply with the score alone: a single digit from 1 to 5."

_SCORE_FIELD = re.compile(r"[\"']?score[\"']?\**\s*(?:[:=]|is|of)\s*\**\s*([1-5])(?!\d|\.\d)", re.IGNORECASE)
_OUT_OF_FIVE = re.compile(r"(?<![\d.])([1-5])\s*(?:/|out of)\s*5(?!\d)", re.IGNORECASE)
_LONE_DIGIT = re.compile(r"^\W*([1-5])\W*$")


class NoScore(Exception):
    """The judge answered, but stated no score we can read."""


@dataclass(frozen=True)
class Judgement:
    score: int
    reasoning: str


def judge_prompt(request: str, rubric: str, answer: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": PROMPT.format(request=request, rubric=rubric, answer=answer)}]


def parse_judgement(text: str) -> Judgement | None:
    """The score (and reasoning) in a judge's answer: its JSON object (fenced or not), else a
    "score: N" or "N/5" in prose, else a lone digit; None when there is no score 1-5."""
    body = re.sub(r"^```(?:json)?|```$", "", text.strip(), flags=re.IGNORECASE).strip()
    start, end = body.find("{"), body.rfind("}")
    if 0 <= start < end:
        try:
            data = json.loads(body[start:end + 1])
        except ValueError:
            data = None
        if isinstance(data, dict) and _valid_score(data.get("score")):
            return Judgement(int(data["score"]), str(data.get("reasoning") or "")[:200])
    for pattern in (_SCORE_FIELD, _OUT_OF_FIVE, _LONE_DIGIT):
        match = pattern.search(body)
        if match:
            return Judgement(int(match.group(1)), body[:200])
    return None


def _valid_score(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float) and value == int(value):
        return 1 <= int(value) <= 5
    return isinstance(value, str) and value.strip() in {"1", "2", "3", "4", "5"}


async def judge(tier: Tier, request: str, rubric: str, answer: str, attempts: int = ATTEMPTS) -> Verdict:
    """Ask the judge tier; a Verdict with its score, or NoScore after `attempts` unreadable answers
    (each retry shows the judge its last reply and asks for the JSON alone). Upstream failures
    propagate: the caller retries them as it retries any call."""
    messages = judge_prompt(request, rubric, answer)
    said = ""
    for _ in range(attempts):
        said = (await stream_answer(tier, {"messages": messages, "max_tokens": MAX_TOKENS, "temperature": 0})).text
        judgement = parse_judgement(said)
        if judgement is not None:
            return Verdict(judgement.score >= ACCEPTABLE, f"judge {judgement.score}/5: {judgement.reasoning}",
                           score=judgement.score)
        messages = [*messages, {"role": "assistant", "content": said}, {"role": "user", "content": AGAIN}]
    raise NoScore(f"the judge stated no score 1-5 in {attempts} answers; last: {said[:120]!r}")
