"""Pure: the canonical wording of a request's last user message, for both cache tiers.

Two forms, one built from the other:
- semantic_form: what is embedded, stored with the entry and read by the verifier. NFKC, curly quotes
  straightened, whitespace collapsed, no space before punctuation, common contractions spelled out
  ("what's" -> "what is", "don't" -> "do not"), trailing punctuation dropped. Case is kept: the verifier
  reads literals from this text (identifiers' case, quoted strings), and MiniLM is uncased anyway.
- key_form: what the exact key hashes: the semantic form with plain words case-folded and commas
  between words dropped, so trivially different wordings share the exact tier.
Protected spans are copied verbatim by both: ```code```, `code`, "quoted" and 'quoted' strings, URLs
and emails, and key_form keeps the case of every token whose case can carry meaning (camelCase,
ALLCAPS, snake_case, A320): only all-lowercase or Capitalised alphabetic words fold.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator

PROTECTED = re.compile(
    r"```.*?```"                               # fenced code
    r"|`[^`\n]+`"                              # inline code
    r"|\"[^\"\n]*\""                           # double-quoted strings
    r"|(?<!\w)'[^'\n]*'(?!\w)"                 # single-quoted strings (an apostrophe inside a word is no quote)
    r"|(?:https?://|www\.)\S+"                 # URLs
    r"|[\w.+-]+@[\w-]+(?:\.[\w-]+)+",          # emails
    re.DOTALL)
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
                         "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"'})
_SPACES = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,;:!?.](?!\w))")
_TRAILING = re.compile(r"[\s?!.,;:\u3002]+$")  # applied after NFKC, which folds fullwidth ?! to ASCII
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
_WORD_COMMA = re.compile(r"(?<=[^\W\d_]),(?=\s)")
_TOKEN = re.compile(r"\S+")

# "n't" forms whose stem is not the auxiliary spelled out.
_IRREGULAR_NOT = {"won't": "will not", "can't": "cannot", "shan't": "shall not", "ain't": "is not"}
# "'s" is "is" only after these; elsewhere it is a possessive ("Japan's capital").
_IS_AFTER = frozenset({"what", "where", "who", "how", "when", "why", "it", "that", "there", "here", "he", "she"})
_SUFFIXES = {"'re": " are", "'ve": " have", "'ll": " will", "'m": " am"}


def semantic_form(content: object) -> str | None:
    """The text to embed and verify, or None for content that is not plain text (images, audio) or empty.

    A trailing "?" moves MiniLM far more than it changes meaning (0.87 vs 0.96 for a paraphrase),
    so trailing punctuation is dropped.
    """
    if not isinstance(content, str):
        return None
    text = unicodedata.normalize("NFKC", content).translate(_QUOTES)
    text = _map_unprotected(text, _plain_wording)
    text = _TRAILING.sub("", text.strip()).strip()
    return text or None


def key_form(text: str) -> str:
    """The semantic form as the exact key sees it: plain words case-folded, commas between words dropped."""
    return _map_unprotected(text, _fold)


def protected_spans(text: str) -> Iterator[tuple[bool, str]]:
    """The text in order as (is_protected, piece): literals that must survive verbatim, and the rest."""
    position = 0
    for match in PROTECTED.finditer(text):
        if match.start() > position:
            yield False, text[position:match.start()]
        yield True, match.group()
        position = match.end()
    if position < len(text):
        yield False, text[position:]


def expand_contractions(text: str) -> str:
    return _WORD.sub(lambda m: _expand(m.group()), text)


def _map_unprotected(text: str, change: Callable[[str], str]) -> str:
    return "".join(piece if protected else change(piece) for protected, piece in protected_spans(text))


def _plain_wording(piece: str) -> str:
    piece = _SPACES.sub(" ", piece)
    piece = _SPACE_BEFORE_PUNCT.sub(r"\1", piece)
    return expand_contractions(piece)


def _expand(word: str) -> str:
    if "'" not in word:
        return word
    lower = word.lower()
    if lower in _IRREGULAR_NOT:
        expanded = _IRREGULAR_NOT[lower]
    elif lower.endswith("n't"):
        expanded = f"{lower[:-3]} not"
    elif lower == "let's":
        expanded = "let us"
    elif lower.endswith("'s") and lower[:-2] in _IS_AFTER:
        expanded = f"{lower[:-2]} is"
    elif lower[lower.index("'"):] in _SUFFIXES:
        cut = lower.index("'")
        expanded = lower[:cut] + _SUFFIXES[lower[cut:]]
    else:
        return word
    return _match_case(word, expanded)


def _match_case(original: str, expanded: str) -> str:
    if original.isupper() and len(original) > 2:
        return expanded.upper()
    if original[0].isupper():
        return expanded[0].upper() + expanded[1:]
    return expanded


def _fold(piece: str) -> str:
    piece = _WORD_COMMA.sub("", piece)
    return _TOKEN.sub(lambda m: _fold_token(m.group()), piece)


def _fold_token(token: str) -> str:
    """Fold a word whose case says nothing (word, Word, Japan's); keep camelCase, ALLCAPS, anything with digits."""
    letters = token.strip(",;:!?.()[]{}").replace("'", "")
    if letters.isalpha() and (letters.islower() or (letters[0].isupper() and letters[1:] == letters[1:].lower())):
        return token.casefold()
    return token
