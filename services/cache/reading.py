"""Pure: read a request's semantic text into what the verifier compares.

Literals (numbers, identifiers with digits, code, quoted strings, URLs, emails), quantities (a number and
its unit), negation, operators, languages, named entities and content words, each in a canonical form:
"#4,411" and "4411" are one number, "100 km" and "100 kilometres" one quantity, "Japan's" the word japan.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum

from services.cache import lexicon as lx
from services.cache.normalise import expand_contractions, protected_spans


class Kind(StrEnum):
    """A literal's kind; the name is the rejection reason when two requests' literals of this kind differ."""

    QUOTED = "quoted"
    CODE = "code"
    URL = "url"
    EMAIL = "email"
    IDENTIFIER = "identifier"
    NUMBER = "number"


_RAW = re.compile(
    r"(?P<lang>(?<!\w)(?:[Cc]\+\+|[CcFf]\#))"
    r"|(?P<word>[#$\u20ac\u00a3\u00a5]?\w+(?:['.,:/_@-]\w+)*)"
    r"|(?P<symbol>\*\*|[<>!=]=|&&|\|\||[-+*/^%<>=\u00d7\u00f7\u2212\u2264\u2265\u2260])")
_SENTENCE_END = re.compile(r"[.!?:;]\s|\n")
_THOUSANDS = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_NUMERIC = re.compile(r"[\d.,:/-]*\d[\d.,:/-]*")
_ORDINAL = re.compile(r"(\d+)(?:st|nd|rd|th)", re.IGNORECASE)
_WITH_UNIT = re.compile(r"(\d+(?:\.\d+)?)([a-zA-Z]{1,3})")
_DOTTED = re.compile(r"\w+(?:\.\w+)+")
_CAMEL_LOWER_FIRST = re.compile(r"[a-z]+[A-Z]\w*")
# A language's role in a translation: "from X" and "the X word" are the source, "to/into/in X" the target.
_ROLE_BEFORE = {"from": "source", "to": "target", "into": "target", "in": "target"}
_SOURCE_AFTER = frozenset({"word", "words", "phrase", "term", "expression", "sentence", "text", "saying"})
_ANCHORING = frozenset({"in", "at", "of", "for"})  # "3pm in Tokyo", "order 5 of Acme"
_CURRENCY = {"$": "usd", "\u20ac": "eur", "\u00a3": "gbp", "\u00a5": "jpy"}


@dataclass(frozen=True, slots=True)
class Reading:
    """One request's text as the verifier sees it."""

    literals: dict[Kind, Counter[str]]
    quantities: Counter[tuple[str, str]]  # (number, unit or "") per number
    numbers: tuple[str, ...]  # in order of appearance
    negated: bool
    asks: frozenset[str]  # what kind of answer a question wants: time, place, person, reason
    operators: frozenset[str]
    languages: frozenset[str]
    entities: tuple[str, ...]  # named things (places, products, acronyms, units without a number), in order
    keys: frozenset[str]  # every token's comparison key: where another request's entities are looked up
    words: tuple[str, ...]  # the words in order, case-folded (stopwords included)
    content: frozenset[str]  # what the sequence names apart from stopwords: lemmas, numbers, literals, units
    sequence: tuple[str, ...]  # every token's key in order (content words as lemmas): what order checks read
    anchored: Counter[tuple[str, str]]  # a literal and the entity it is said of: ("3pm", "tokyo") in "3pm in Tokyo"
    roles: dict[str, str]  # language -> "source" ("from French", "the French word") or "target" ("into French")


def read(text: str) -> Reading:
    builder = _Builder()
    for protected, piece in protected_spans(text):
        if protected:
            builder.protected(piece)
        else:
            builder.plain(expand_contractions(piece))
    return builder.reading()


class _Builder:
    def __init__(self) -> None:
        self.literals: dict[Kind, Counter[str]] = {kind: Counter() for kind in Kind}
        self.quantities: Counter[tuple[str, str]] = Counter()
        self.numbers: list[str] = []
        self.negations = 0
        self.asks: set[str] = set()
        self.operators: set[str] = set()
        self.languages: set[str] = set()
        self.entities: list[str] = []
        self.keys: set[str] = set()
        self.words: list[str] = []
        self.sequence: list[str] = []
        self.anchored: Counter[tuple[str, str]] = Counter()
        self.roles: dict[str, str] = {}
        self._anchor: tuple[str, int] | None = None  # the last literal and its position in the sequence
        self._last_number: str | None = None  # a number waiting for its unit
        self._comparative: tuple[str, str] | None = None  # ("greater", ">") waiting for "than" or a number

    def reading(self) -> Reading:
        self._flush_number()
        return Reading({k: c for k, c in self.literals.items() if c}, self.quantities, tuple(self.numbers),
                       self.negations > 0, frozenset(self.asks), frozenset(self.operators), frozenset(self.languages),
                       tuple(self.entities), frozenset(self.keys), tuple(self.words),
                       frozenset(self.sequence) - lx.STOPWORDS, tuple(self.sequence), self.anchored, self.roles)

    def protected(self, piece: str) -> None:
        self._flush_number()
        if piece.startswith("`"):
            self._literal(Kind.CODE, piece.strip("`").strip())
        elif piece[0] in "\"'":
            self._literal(Kind.QUOTED, piece[1:-1].strip())
        elif "@" in piece and "/" not in piece:
            self._literal(Kind.EMAIL, piece.casefold())
        else:
            self._literal(Kind.URL, piece.rstrip(".,;:!?)]}'\""))

    def plain(self, piece: str) -> None:
        initial = not self.words
        position = 0
        for match in _RAW.finditer(piece):
            if _SENTENCE_END.search(piece, position, match.start()) or piece.startswith("\n", position):
                initial = True
            position = match.end()
            if match.group("lang"):
                self._flush_number()
                self._language(match.group().casefold())
            elif match.group("symbol"):
                self._symbol(match.group())
            else:
                self._word(match.group(), initial)
                initial = False

    def _literal(self, kind: Kind, key: str) -> None:
        self.literals[kind][key] += 1
        self.keys.add(key.casefold())
        self.sequence.append(key)
        self._anchor = (key, len(self.sequence) - 1)

    def _entity(self, key: str) -> None:
        self.entities.append(key)
        if self._anchor is not None:
            literal, position = self._anchor
            between = self.sequence[position + 1:-1]
            if len(between) <= 1 and set(between) <= _ANCHORING:
                self.anchored[(literal, key)] += 1

    def _symbol(self, symbol: str) -> None:
        if symbol == "%" and self._last_number is not None:
            self._unit("%")
            return
        self._flush_number()
        operator = lx.OPERATOR_SYMBOLS.get(symbol)
        if operator is not None:
            self.operators.add(operator)

    def _word(self, text: str, initial: bool) -> None:
        comparative, self._comparative = self._comparative, None
        text = _strip_possessive(text)
        if comparative is not None and (text.casefold() == "than" or (
                comparative[0] in ("above", "over", "below", "under") and _number_key(text) is not None)):
            self.operators.add(comparative[1])
        if text[0] in "#$\u20ac\u00a3\u00a5":
            prefix, text = text[0], text[1:]
            key = _number_key(text)
            if key is not None:
                self._number(key)
                if prefix in _CURRENCY:
                    self._unit(_CURRENCY[prefix])
                return
        if self._numberish(text):
            return
        if "_" in text or _CAMEL_LOWER_FIRST.fullmatch(text) or _is_dotted_name(text):
            self._flush_number()
            self._literal(Kind.CODE, text)
            return
        if any(c.isdigit() for c in text):
            self._flush_number()
            self._literal(Kind.IDENTIFIER, text.casefold())
            return
        self._plain_word(text, initial)

    def _numberish(self, text: str) -> bool:
        """Numbers, ordinals and number-unit runs ("10km"); True when the token was one."""
        key = _number_key(text)
        if key is not None:
            self._number(key)
            return True
        ordinal = _ORDINAL.fullmatch(text)
        if ordinal:
            self._number(ordinal.group(1))
            return True
        joined = _WITH_UNIT.fullmatch(text)
        if joined and joined.group(2).casefold() in lx.UNITS:
            self._number(_number_key(joined.group(1)) or joined.group(1))
            self._unit(lx.UNITS[joined.group(2).casefold()])
            return True
        return False

    def _plain_word(self, text: str, initial: bool) -> None:
        key = text.casefold()
        self.words.append(key)
        self.keys.add(key)
        if key in lx.COMPARATIVES:
            self._comparative = (key, lx.COMPARATIVES[key])
        if key in lx.NUMBER_WORDS and not (key == "second" and self._last_number is not None):
            self._number(lx.NUMBER_WORDS[key])
            return
        if key in ("degree", "degrees") and self._last_number is not None:
            return  # "100 degrees Celsius": the unit that follows is still the number's
        unit = lx.UNITS.get(key)
        if unit is not None and (self._last_number is not None or key not in lx.AMBIGUOUS_UNITS):
            self.keys.add(unit)
            self.sequence.append(unit)
            if self._last_number is not None:
                self._unit(unit)
            else:
                self.entities.append(unit)
            return
        self._flush_number()
        self._meaning(text, key, initial)

    def _meaning(self, text: str, key: str, initial: bool) -> None:
        self._question(key)
        if key in _SOURCE_AFTER and self.sequence and self.sequence[-1] in self.languages:
            self.roles.setdefault(self.sequence[-1], "source")  # "the Japanese word 'arigato'"
        if key in lx.NEGATIONS or (key == "to" and self.words[-2:-1] and self.words[-2] in lx.NEGATING_BEFORE_TO):
            self.negations += 1
        if key in lx.OPERATOR_WORDS:
            self.operators.add(lx.OPERATOR_WORDS[key])
        if key in lx.LANGUAGES or (text in lx.CASED_LANGUAGES and not initial):
            self._language(key)
            return
        if key in lx.STOPWORDS:
            self.sequence.append(key)
            return
        self.sequence.append(lemma(key))
        if key in lx.ENTITIES or _looks_named(text, initial):
            self._entity(key)

    def _question(self, key: str) -> None:
        kind = lx.QUESTION_KINDS.get(key)
        if kind is None and key in lx.TIME_NOUNS and {"what", "which"} & set(self.words[-5:-1]):
            kind = "time"  # "what year", "what is the birth date": asks when
        if kind is not None:
            self.asks.add(kind)

    def _language(self, key: str) -> None:
        before = self.words[:-1] if self.words[-1:] == [key] else self.words  # "C++" never enters words
        role = _ROLE_BEFORE.get(before[-1]) if before else None
        if role is not None:
            self.roles.setdefault(key, role)
        self.languages.add(key)
        self.keys.add(key)
        self.sequence.append(key)
        self._entity(key)

    def _number(self, key: str) -> None:
        self._flush_number()
        self.numbers.append(key)
        self.literals[Kind.NUMBER][key] += 1
        self.keys.add(key)
        self.sequence.append(key)
        self._anchor = (key, len(self.sequence) - 1)
        self._last_number = key

    def _unit(self, unit: str) -> None:
        if self._last_number is not None:
            self.quantities[(self._last_number, unit)] += 1
            self._last_number = None
        self.keys.add(unit)

    def _flush_number(self) -> None:
        if self._last_number is not None:
            self.quantities[(self._last_number, "")] += 1
            self._last_number = None


def _number_key(text: str) -> str | None:
    """A canonical number: thousands separators dropped ("4,411" is 4411), the rest as written: "3.10" is a
    version as often as a decimal, and lists, ranges and times ("1,2", "2-3", "10:30") stay whole."""
    if _THOUSANDS.fullmatch(text):
        return text.replace(",", "")
    return text if _NUMERIC.fullmatch(text) else None


def _is_dotted_name(text: str) -> bool:
    return bool(_DOTTED.fullmatch(text)) and any(len(part) > 1 for part in text.split(".")) and any(
        c.isalpha() for c in text)


def _strip_possessive(key: str) -> str:
    if key.endswith("'s"):
        return key[:-2]
    return key.rstrip("'")


def _looks_named(text: str, initial: bool) -> bool:
    """Capitalised mid-sentence (Docker, Kyoto), an acronym (NASA) or PascalCase (JavaScript)."""
    letters = text.replace("'", "")
    if len(letters) > 1 and letters.isupper():
        return True
    return text[0].isupper() and not initial


def lemma(key: str) -> str:
    """A content word's comparison form: synonyms and words of one scale group folded, plurals crudely singular."""
    key = lx.SYNONYMS.get(key, key)
    if len(key) > 4 and key.endswith("ies"):
        key = key[:-3] + "y"
    elif len(key) > 3 and key.endswith("s") and not key.endswith(("ss", "us", "is")):
        key = key[:-1]
    key = lx.SYNONYMS.get(key, key)
    return lx.SCALE_FOLD.get(key, key)
