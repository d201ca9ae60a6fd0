"""The word lists the cache verifier reads: negation cues, opposites, operators, languages, units, entities.

Modest by design: the rules veto what these lists name, and the learned verifier uses them as features;
a word missing here falls back on the embedding and the lexical features.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


def _words(block: str) -> frozenset[str]:
    return frozenset(block.split())


NEGATIONS = frozenset({"not", "no", "never", "none", "nothing", "nobody", "nowhere", "neither", "nor", "without",
                       "cannot", "unable", "non", "n't", "except", "excluding"})
# "fail to X" is "not X"; "fail" alone is not a negation ("why does the build fail").
NEGATING_BEFORE_TO = frozenset({"fail", "fails", "failed", "failing"})

STOPWORDS = _words("""
a an the of to in on at by for from with about into onto over under as is are was were be been being am do does
did doing have has had having will would shall should can could may might must i me my we our you your he him his
she her it its they them their this that these those there here what which who whom whose when where why how
and or but if then so than too very just also please tell explain give show let us me know any some much many
way ways thing things kind sort type one ones get got make made really actually exactly basically want need
like would could kindly hey hi hello quick question help describe ok okay
""")

# Scales: words grouped by where they sit on one scale. Two requests that each name a group of a scale the
# other does not ("good" / "harmful", "today" / "tomorrow", "plus" / "minus") ask different questions.
# Format: `reason: group / group [/ group...]`; a trailing * also takes the word's -s, -ed and -ing forms.
# `reason!:` marks a scale where naming it at all is the difference ("sorted descending" vs "sorted").
_SCALES = """
antonym: good better best healthy beneficial benefit* advantage* pro pros helpful safe safely positive
  upside* / bad worse worst unhealthy harmful harm* disadvantage* drawback* con cons dangerous unsafe risk* risky
  negative downside*
antonym: increase* raise* bigger larger largest biggest enlarge* grow* growing more maximum max highest higher greater
  most expand* high / decrease* reduce* lower* smaller smallest shrink* less fewer minimum min lowest least fewest low
antonym: before earlier earliest first start* begin beginning began begun prior / after later latest last end* finish*
antonym: yesterday / today tonight / tomorrow
antonym: spring / summer / autumn fall / winter
antonym: breakfast / lunch / dinner
antonym: morning / afternoon / evening / night
antonym: on enable* activate* / off disable* deactivate*
antonym: read* / write* writing written wrote
antonym: boil* / freeze* freezing frozen melt*
antonym: born birth birthday / die died death dies dying
antonym: gain* / lose losing lost loss
antonym: subscribe* join* / unsubscribe* leave remove* cancel* off
antonym: running / stopped exited
antonym: legal / illegal
antonym: possible / impossible
antonym: rise* / fall* fell
antonym: open* / close* closed
antonym: short shorter shortest / long longer longest
antonym: slow slower slowest slowly / fast faster fastest quick quicker quickest quickly
antonym: cheap cheaper cheapest cheaply / expensive pricier priciest
antonym: hot hotter hottest warm warmer / cold colder coldest cool cooler
antonym: heavy heavier heaviest / light lighter lightest
antonym: young younger youngest new newer newest / old older oldest
antonym: strong stronger strongest / weak weaker weakest
antonym: easy easier easiest / hard harder hardest difficult
antonym: win* winning won / lose* losing lost
antonym: profit* / loss* losses
antonym: buy* bought purchase* / sell* sold
antonym: import* / export*
antonym: encrypt* encryption / decrypt* decryption
antonym: encode* / decode*
antonym: compress* / decompress*
antonym: serialize* serialise* / deserialize* deserialise*
antonym: upload* / download*
antonym: add* adding / remove* removing delete*
antonym: allow* / deny* denied block*
antonym: push* / pull*
antonym: send* sent / receive*
antonym: input* / output*
antonym: client* / server*
antonym: true / false
antonym: above / below
antonym: up / down
antonym: upper uppercase / lower lowercase
antonym: left / right
antonym: north northern / south southern
antonym: east eastern / west western
antonym!: ascending asc / descending desc
antonym: similar similarity similarities alike same / differ* different difference differences
antonym: inner / outer
antonym: internal / external
antonym: public / private
antonym: static / dynamic
antonym: sync synchronous / async asynchronous
antonym: mutable / immutable
antonym: male men boys / female women girls
antonym: adult adults grownup grownups / child children kid kids teen teens teenager teenagers infant infants baby
  babies toddler toddlers
antonym: day / night
antonym: sunrise / sunset
antonym: odd / even
antonym: inside / outside
antonym: include* inclusive / exclude* exclusive
antonym: accept* / reject*
antonym: agree* / disagree*
antonym: like / dislike
antonym: love* / hate*
antonym: success successful succeed* / failure fail*
antonym: rich / poor
antonym: wet / dry
antonym: full / empty
antonym: many / few
antonym: wide / narrow
antonym: thick / thin
antonym: deep / shallow
antonym: top / bottom
antonym: front / back
antonym: forward forwards / backward backwards
antonym: past / future
antonym: ancient / modern
antonym: lock* / unlock*
antonym: mount* / unmount*
antonym: install* / uninstall*
antonym: connect* / disconnect*
antonym: login / logout
antonym: zip* / unzip*
antonym: alive / dead
antonym: visible / invisible
antonym: dark / light bright
antonym: acid acidic / base alkaline basic
antonym: cause* / cure* prevent*
operator: plus add addition sum / minus subtract* subtraction difference / times multiply* multiplied multiplication
  product / divide* divided division quotient
operator: and / or / xor
operator: union / intersection
operator: square squared / cube cubed
operator: squared power exponent / root roots
operator: numerator / denominator
operator: sine sin / cosine cos / tangent tan
operator: integral / derivative
"""


def _inflect(word: str) -> set[str]:
    if not word.endswith("*"):
        return {word}
    stem = word[:-1]
    base = stem[:-1] if stem.endswith("e") else stem
    return {stem, stem + "s", stem + "es", base + "ed", base + "ing", stem + "d"}


def _scales(block: str) -> tuple[Scale, ...]:
    out = []
    for entry in re.split(r"\n(?=\w+!?:)", block.strip()):
        reason, groups = entry.split(":", 1)
        out.append(Scale(reason.rstrip("!"), reason.endswith("!"),
                         tuple(frozenset(w for word in group.split() for w in _inflect(word))
                               for group in " ".join(groups.split()).split(" / "))))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Scale:
    reason: str
    one_sided: bool  # naming any group when the other request names none is already a difference
    groups: tuple[frozenset[str], ...]


SCALES = _scales(_SCALES)
# word -> the (scale index, group index) places it has
SCALE_PLACES: dict[str, tuple[tuple[int, int], ...]] = {}
for _scale, _entry in enumerate(SCALES):
    for _group, _members in enumerate(_entry.groups):
        for _member in _members:
            SCALE_PLACES[_member] = (*SCALE_PLACES.get(_member, ()), (_scale, _group))
# For the learned features, words of one group mean the same: "larger", "bigger", "greater" fold together.
SCALE_FOLD = {word: min(SCALES[s].groups[g]) for word, places in SCALE_PLACES.items() for s, g in places[:1]}
SCALE_WORDS = frozenset(SCALE_PLACES)

# What a question asks for: two requests asking for different kinds of answer differ ("when" / "where").
QUESTION_KINDS = {"when": "time", "where": "place", "who": "person", "whom": "person", "why": "reason"}
TIME_NOUNS = frozenset({"year", "date", "day", "month", "century", "decade"})  # "what year" asks "when"

# Operator symbols and the words that mean them; two requests with different operators ask different sums.
OPERATOR_SYMBOLS = {"+": "+", "-": "-", "\u2212": "-", "*": "*", "\u00d7": "*", "/": "/", "÷": "/", "^": "^",
                    "**": "^", "%": "%", "<": "<", ">": ">", "<=": "<=", ">=": ">=", "≤": "<=", "≥": ">=",
                    "==": "==", "=": "==", "!=": "!=", "≠": "!=", "&&": "and", "||": "or"}
OPERATOR_WORDS = {"plus": "+", "add": "+", "added": "+", "adding": "+", "sum": "+", "addition": "+",
                  "minus": "-", "subtract": "-", "subtracted": "-", "subtracting": "-", "subtraction": "-",
                  "times": "*", "multiply": "*", "multiplied": "*", "multiplying": "*", "product": "*",
                  "multiplication": "*", "divide": "/", "divided": "/", "dividing": "/", "division": "/",
                  "quotient": "/", "modulo": "%", "mod": "%"}
# "greater than 5", "above 5": a comparison operator when followed by "than" (or, for the prepositions, a number).
COMPARATIVES = {"greater": ">", "more": ">", "larger": ">", "bigger": ">", "higher": ">", "older": ">",
                "longer": ">", "above": ">", "over": ">", "exceeds": ">", "less": "<", "fewer": "<", "smaller": "<",
                "lower": "<", "younger": "<", "shorter": "<", "below": "<", "under": "<"}
# Words that make the order of what they join matter ("from X to Y", "X instead of Y", "X than Y"), each
# with the relation it names: "JSON to CSV" and "CSV into JSON" are one relation, swapped.
DIRECTIONAL = {"to": "to", "into": "to", "onto": "to", "toward": "to", "towards": "to", "from": "from",
               "than": "than", "instead": "instead", "minus": "minus", "subtract": "minus", "divided": "divided",
               "over": "divided", "per": "divided", "before": "before", "after": "after", "then": "then",
               "beat": "beat", "beats": "beat"}

NUMBER_WORDS = {"zero": "0", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
                "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "thirteen": "13",
                "fourteen": "14", "fifteen": "15", "sixteen": "16", "seventeen": "17", "eighteen": "18",
                "nineteen": "19", "twenty": "20", "thirty": "30", "forty": "40", "fifty": "50", "sixty": "60",
                "seventy": "70", "eighty": "80", "ninety": "90", "hundred": "100", "thousand": "1000",
                "million": "1000000", "billion": "1000000000", "dozen": "12", "second": "2", "third": "3",
                "fourth": "4", "fifth": "5", "sixth": "6", "seventh": "7", "eighth": "8", "ninth": "9",
                "tenth": "10", "twice": "2", "triple": "3", "double": "2", "half": "0.5", "quarter": "0.25",
                "noon": "12pm", "midday": "12pm", "midnight": "12am"}

LANGUAGES = _words("""
english french spanish german italian portuguese dutch swedish norwegian danish finnish polish czech russian
ukrainian greek turkish arabic hebrew hindi bengali urdu chinese mandarin cantonese japanese korean vietnamese
thai indonesian malay swahili latin persian farsi romanian hungarian
python rust java javascript typescript golang ruby php swift kotlin scala haskell perl lua julia matlab fortran
cobol elixir erlang clojure dart bash powershell sql html css c++ c# cpp csharp objective-c ocaml zig nim
""")
# One-letter or common-word language names count only when written as names (capitalised): "in C", "in Go", "in R".
CASED_LANGUAGES = frozenset({"C", "R", "Go", "D"})

# Units, folded to one spelling so "100 km" and "100 kilometres" agree.
UNITS = {
    "mile": "mile", "miles": "mile", "mi": "mile", "kilometer": "km", "kilometers": "km", "kilometre": "km",
    "kilometres": "km", "km": "km", "meter": "m", "meters": "m", "metre": "m", "metres": "m", "m": "m",
    "centimeter": "cm", "centimeters": "cm", "centimetre": "cm", "centimetres": "cm", "cm": "cm",
    "millimeter": "mm", "millimeters": "mm", "mm": "mm", "foot": "ft", "feet": "ft", "ft": "ft",
    "inch": "in", "inches": "in", "yard": "yd", "yards": "yd", "pound": "lb", "pounds": "lb", "lb": "lb",
    "lbs": "lb", "kilogram": "kg", "kilograms": "kg", "kilo": "kg", "kilos": "kg", "kg": "kg", "gram": "g",
    "grams": "g", "g": "g", "ounce": "oz", "ounces": "oz", "oz": "oz", "stone": "st", "ton": "t", "tons": "t",
    "tonne": "t", "tonnes": "t", "celsius": "c", "centigrade": "c", "fahrenheit": "f", "kelvin": "k",
    "liter": "l", "liters": "l", "litre": "l", "litres": "l", "l": "l", "milliliter": "ml", "milliliters": "ml",
    "ml": "ml", "gallon": "gal", "gallons": "gal", "gal": "gal", "quart": "qt", "quarts": "qt", "pint": "pt",
    "pints": "pt", "cup": "cup", "cups": "cup", "tablespoon": "tbsp", "tablespoons": "tbsp", "tbsp": "tbsp",
    "teaspoon": "tsp", "teaspoons": "tsp", "tsp": "tsp", "hour": "h", "hours": "h", "hr": "h", "hrs": "h",
    "minute": "min", "minutes": "min", "mins": "min", "second": "s", "seconds": "s", "sec": "s", "secs": "s",
    "day": "day", "days": "day", "week": "week", "weeks": "week", "month": "month", "months": "month",
    "year": "year", "years": "year", "mph": "mph", "kph": "kph", "byte": "b", "bytes": "b", "kb": "kb",
    "kilobyte": "kb", "kilobytes": "kb", "mb": "mb", "megabyte": "mb", "megabytes": "mb", "gb": "gb",
    "gigabyte": "gb", "gigabytes": "gb", "tb": "tb", "terabyte": "tb", "terabytes": "tb", "bit": "bit",
    "bits": "bit", "dollar": "usd", "dollars": "usd", "usd": "usd", "euro": "eur", "euros": "eur", "eur": "eur",
    "yen": "jpy", "jpy": "jpy", "gbp": "gbp", "sterling": "gbp", "rupee": "inr", "rupees": "inr", "inr": "inr",
    "yuan": "cny", "cny": "cny", "franc": "chf", "francs": "chf", "chf": "chf", "peso": "mxn", "pesos": "mxn",
    "acre": "acre", "acres": "acre", "hectare": "ha", "hectares": "ha", "calorie": "kcal", "calories": "kcal",
    "kcal": "kcal", "joule": "j", "joules": "j", "watt": "w", "watts": "w", "volt": "v", "volts": "v",
    "percent": "%", "%": "%",
}
# Units so short they are words too: they count as units only right after a number ("5 m", "3 in").
AMBIGUOUS_UNITS = frozenset({"m", "g", "l", "in", "st", "t", "s", "h", "c", "f", "k", "j", "w", "v", "b", "stone",
                             "second", "seconds", "sec", "secs", "minute", "minutes", "min", "mins", "hour", "hours",
                             "hr", "hrs", "day", "week", "month", "year", "days", "weeks", "months", "years", "cup",
                             "cups", "bit", "bits", "pound", "pounds", "franc"})

# Entities a lowercase request still names: countries, big cities, continents, planets, months, weekdays.
ENTITIES = _words("""
afghanistan argentina australia austria belgium brazil canada chile china colombia cuba denmark egypt england
ethiopia finland france germany ghana greece hungary iceland india indonesia iran iraq ireland israel italy
jamaica japan kenya korea mexico morocco nepal netherlands nigeria norway pakistan peru philippines poland
portugal romania russia scotland singapore spain sweden switzerland syria taiwan thailand turkey uganda ukraine
vietnam wales america usa uk
london paris berlin madrid rome lisbon vienna prague warsaw budapest athens dublin amsterdam brussels stockholm
oslo copenhagen helsinki moscow kyiv istanbul cairo nairobi lagos tokyo kyoto osaka beijing shanghai seoul delhi
mumbai bangkok jakarta manila sydney melbourne toronto vancouver montreal chicago boston seattle denver miami
dallas houston atlanta york angeles francisco ottawa canberra lima bogota santiago
africa asia europe antarctica oceania
mercury venus earth mars jupiter saturn uranus neptune pluto moon sun
january february april june july august september october november december
monday tuesday wednesday thursday friday saturday sunday
""")

# Words that mean the same for the lexical features (never for the vetoes): folded to the first one.
_SYNONYM_GROUPS = """
fix repair resolve|big large huge|small little tiny|buy purchase|begin start|end finish|quick fast rapid
car automobile|movie film|house home|job work|error bug issue|function method|picture image photo
dict dictionary|integer int|string str|boolean bool|character char|list array|doctor physician|kid child
kids children|use utilize employ|make create build
show display|find locate|get obtain|answer reply|help assist|choose pick select|speak talk|smart intelligent
error exception|symptom sign|bicycle bike|delete remove erase|stop halt|city town|country nation|cost price
"""
SYNONYMS: dict[str, str] = {}
for _group in _SYNONYM_GROUPS.replace("\n", "|").split("|"):
    _words = _group.split()
    for _word in _words:
        SYNONYMS.setdefault(_word, _words[0])
