"""The checks a semantic candidate passes before it is served: the configured verifier
(services/cache/verify.py), then, when configured, the drafter (services/cache/drafter_verify.py).

Candidates are tried best first; the first to pass every check is served. A candidate without
its request's text (stored before texts were kept) cannot be checked and is never served.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass

from services.cache.drafter_verify import UNAVAILABLE, DrafterCheck, create_drafter_check
from services.cache.semantic import Candidate
from services.cache.verify import Verdict, Verifier, build_verifier
from shared.config import Config, ConfigError

NO_TEXT = "no_text"


@dataclass(frozen=True, slots=True)
class Served:
    candidate: Candidate
    verified: str  # the checks it passed, e.g. "learned" or "learned+drafter"


@dataclass(frozen=True, slots=True)
class Chain:
    verifier: Verifier
    drafter: DrafterCheck | None = None

    @property
    def verified(self) -> str:
        return self.verifier.name if self.drafter is None else f"{self.verifier.name}+{self.drafter.name}"

    async def first_passing(self, query: str, candidates: Sequence[Candidate],
                            rejected: Callable[[str], None]) -> Served | None:
        """The best candidate that passes; `rejected` hears each rejection's reason.

        An unavailable drafter ends the search: the next candidate would wait for it just the same.
        """
        for candidate in candidates:
            verdict = await self.check(query, candidate)
            if verdict.passed:
                return Served(candidate, self.verified)
            rejected(verdict.reason)
            if verdict.reason == UNAVAILABLE:
                return None
        return None

    async def check(self, query: str, candidate: Candidate) -> Verdict:
        if candidate.text is None:
            return Verdict(False, NO_TEXT)
        verdict = self.verifier.check(query, candidate.text, candidate.similarity)
        if not verdict.passed or self.drafter is None:
            return verdict
        return await self.drafter.check(query, candidate.text)

    async def close(self) -> None:
        if self.drafter is not None:
            await self.drafter.close()


def load_verifier(config: Config) -> Verifier:
    """The configured verifier; a model that cannot be loaded is a configuration error naming the key."""
    try:
        return build_verifier(config.cache.verify, config.cache.verify_model)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cache.verify_model: cannot load {config.cache.verify_model or 'the shipped model'} "
                          f"for cache.verify={config.cache.verify}: {exc}") from None


@contextlib.asynccontextmanager
async def open_chain(config: Config, env: Mapping[str, str]) -> AsyncIterator[Chain]:
    """The configured chain; with cache.verify_drafter, a client for the drafter tier while it is open."""
    verifier = load_verifier(config)
    drafter = None
    if config.cache.verify_drafter:
        drafter = create_drafter_check(config.drafter, config.cache.verify_drafter_min_prob,
                                       config.cache.verify_drafter_timeout_s, env)
    chain = Chain(verifier, drafter)
    try:
        yield chain
    finally:
        await chain.close()
