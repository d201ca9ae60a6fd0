"""The template families of the calibration prompt set (scripts/calibration_prompts.py); the code tasks
themselves are in scripts/calibration_code_tasks.py.

A family is one kind of question in one category; the seed draws which facts it asks about, its wordings
and its numbers. Factual families carry every accepted spelling of the answer (only facts that are settled
and well known: no "longest river", no capital that is moving); reasoning families compute their answer
from the numbers they drew; creative families carry checks a program can verify, or a rubric for the judge
when nothing is checkable. Easy and hard items sit side by side in each category (7 times 8 and 67 times
89; Paris and Canberra), as a 135M drafter is right on some and wrong on others.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from scripts.calibration_code_tasks import CODE_FAMILIES, CODE_SUFFIX, CODE_WORDINGS, CodeTask

FACT = 48  # max_tokens: a short factual answer
SUM = 48  # a sum or a product, said in a sentence
STEPS = 96  # a word problem worked in a few steps
WORD = 32  # a one-word reply


@dataclass(frozen=True, slots=True)
class Draft:
    """One item before it gets an id and a split."""

    prompt: str
    max_tokens: int
    grader: dict[str, Any]
    reference: str | None = None  # code items: a solution that passes the tests


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    category: str
    build: Callable[[random.Random], list[Draft]] = field(repr=False)


# --- factual: (what is asked about, accepted answers), asked in one of a few wordings ---

Facts = tuple[tuple[str, tuple[str, ...]], ...]


def facts(templates: tuple[str, ...], rows: Facts, count: int, max_tokens: int = FACT
          ) -> Callable[[random.Random], list[Draft]]:
    """count rows drawn by the seed, each asked in a wording drawn by the seed, graded by its aliases."""
    def build(rng: random.Random) -> list[Draft]:
        return [Draft(rng.choice(templates).format(x=x), max_tokens, {"kind": "aliases", "answers": list(answers)})
                for x, answers in rng.sample(rows, min(count, len(rows)))]
    return build


CAPITALS: Facts = (
    ("France", ("Paris",)), ("Germany", ("Berlin",)), ("Italy", ("Rome",)), ("Spain", ("Madrid",)),
    ("Portugal", ("Lisbon", "Lisboa")), ("Japan", ("Tokyo",)), ("China", ("Beijing", "Peking")),
    ("Russia", ("Moscow",)), ("Egypt", ("Cairo",)), ("Kenya", ("Nairobi",)), ("Canada", ("Ottawa",)),
    ("Australia", ("Canberra",)), ("Brazil", ("Brasília", "Brasilia")), ("Argentina", ("Buenos Aires",)),
    ("Peru", ("Lima",)), ("Chile", ("Santiago",)), ("Norway", ("Oslo",)), ("Sweden", ("Stockholm",)),
    ("Finland", ("Helsinki",)), ("Poland", ("Warsaw", "Warszawa")), ("Greece", ("Athens",)),
    ("Turkey", ("Ankara",)), ("Iran", ("Tehran", "Teheran")), ("Thailand", ("Bangkok",)), ("Vietnam", ("Hanoi",)),
    ("South Korea", ("Seoul",)), ("Nigeria", ("Abuja",)), ("New Zealand", ("Wellington",)),
    ("Switzerland", ("Bern", "Berne")), ("Ukraine", ("Kyiv", "Kiev")), ("Cuba", ("Havana",)),
    ("Nepal", ("Kathmandu",)), ("Hungary", ("Budapest",)), ("Austria", ("Vienna", "Wien")),
    ("Ireland", ("Dublin",)), ("Pakistan", ("Islamabad",)), ("Morocco", ("Rabat",)),
    ("Mongolia", ("Ulaanbaatar", "Ulan Bator")), ("Ethiopia", ("Addis Ababa",)), ("Colombia", ("Bogotá", "Bogota")),
)
CAPITAL_COUNTRIES: Facts = (
    ("Copenhagen", ("Denmark",)), ("Prague", ("Czech Republic", "Czechia")), ("Bucharest", ("Romania",)),
    ("Brussels", ("Belgium",)), ("Amsterdam", ("Netherlands", "Holland")), ("Baghdad", ("Iraq",)),
    ("Riyadh", ("Saudi Arabia",)), ("Manila", ("Philippines",)), ("Accra", ("Ghana",)), ("Caracas", ("Venezuela",)),
    ("Dhaka", ("Bangladesh",)), ("Reykjavík", ("Iceland",)),
)
ELEMENT_SYMBOLS: Facts = (  # two-letter symbols only: "He" or "As" would match ordinary words
    ("gold", ("Au",)), ("silver", ("Ag",)), ("iron", ("Fe",)), ("copper", ("Cu",)), ("lead", ("Pb",)),
    ("sodium", ("Na",)), ("tin", ("Sn",)), ("mercury", ("Hg",)), ("zinc", ("Zn",)), ("calcium", ("Ca",)),
    ("magnesium", ("Mg",)), ("chlorine", ("Cl",)), ("neon", ("Ne",)), ("platinum", ("Pt",)), ("nickel", ("Ni",)),
    ("lithium", ("Li",)),
)
SYMBOL_ELEMENTS: Facts = (
    ("K", ("potassium",)), ("W", ("tungsten", "wolfram")), ("He", ("helium",)), ("O", ("oxygen",)),
    ("N", ("nitrogen",)), ("H", ("hydrogen",)), ("C", ("carbon",)), ("S", ("sulfur", "sulphur")),
    ("P", ("phosphorus",)), ("Si", ("silicon",)), ("Al", ("aluminium", "aluminum")), ("U", ("uranium",)),
    ("I", ("iodine",)), ("Kr", ("krypton",)),
)
AUTHORS: Facts = (
    ("Pride and Prejudice", ("Austen",)), ("War and Peace", ("Tolstoy",)),
    ("Crime and Punishment", ("Dostoevsky", "Dostoyevsky")), ("Don Quixote", ("Cervantes",)),
    ("Moby-Dick", ("Melville",)), ("The Great Gatsby", ("Fitzgerald",)), ("To Kill a Mockingbird", ("Harper Lee",)),
    ("Adventures of Huckleberry Finn", ("Mark Twain", "Twain")), ("Oliver Twist", ("Dickens",)),
    ("Frankenstein", ("Mary Shelley", "Mary Wollstonecraft Shelley")), ("Dracula", ("Bram Stoker", "Stoker")),
    ("Les Misérables", ("Victor Hugo", "Hugo")), ("The Hobbit", ("Tolkien",)),
    ("The Old Man and the Sea", ("Hemingway",)),
    ("Brave New World", ("Huxley",)), ("Jane Eyre", ("Charlotte Brontë", "Charlotte Bronte")),
    ("Wuthering Heights", ("Emily Brontë", "Emily Bronte")), ("The Catcher in the Rye", ("Salinger",)),
    ("One Hundred Years of Solitude", ("Márquez", "Marquez")), ("The Metamorphosis", ("Kafka",)),
    ("Animal Farm", ("Orwell",)), ("Alice's Adventures in Wonderland", ("Lewis Carroll", "Carroll")),
    ("Treasure Island", ("Stevenson",)), ("Robinson Crusoe", ("Defoe",)), ("Madame Bovary", ("Flaubert",)),
    ("The Little Prince", ("Saint-Exupéry", "Saint-Exupery", "Saint Exupery", "Exupéry", "Exupery")),
    ("Of Mice and Men", ("Steinbeck",)), ("Things Fall Apart", ("Achebe",)), ("Hamlet", ("Shakespeare",)),
    ("The Canterbury Tales", ("Chaucer",)),
)
PAINTINGS: Facts = (
    ("the Mona Lisa", ("Leonardo", "da Vinci")), ("The Starry Night", ("Van Gogh",)), ("Guernica", ("Picasso",)),
    ("The Last Supper", ("Leonardo", "da Vinci")), ("the ceiling of the Sistine Chapel", ("Michelangelo",)),
    ("The Persistence of Memory", ("Dalí", "Dali")), ("The Scream", ("Munch",)),
    ("Girl with a Pearl Earring", ("Vermeer",)), ("The Birth of Venus", ("Botticelli",)),
    ("The Night Watch", ("Rembrandt",)),
)
COMPOSITIONS: Facts = (
    ("the Moonlight Sonata", ("Beethoven",)), ("the opera The Magic Flute", ("Mozart",)),
    ("The Four Seasons", ("Vivaldi",)), ("the ballet Swan Lake", ("Tchaikovsky", "Tchaikovski")),
    ("the Brandenburg Concertos", ("Bach",)), ("the opera Carmen", ("Bizet",)),
    ("the waltz The Blue Danube", ("Strauss",)), ("the opera La traviata", ("Verdi",)),
    ("the oratorio Messiah", ("Handel", "Händel")), ("Boléro", ("Ravel",)), ("Clair de lune", ("Debussy",)),
)
SCIENTISTS: Facts = (
    ("developed the theory of general relativity", ("Einstein",)),
    ("formulated the three laws of motion", ("Newton",)), ("discovered penicillin", ("Fleming",)),
    ("was the first to walk on the Moon", ("Armstrong",)), ("was the first to travel into space", ("Gagarin",)),
    ("created the first widely recognized periodic table of the elements", ("Mendeleev", "Mendeleyev")),
    ("proposed that the Earth and the planets orbit the Sun, in a book published in 1543", ("Copernicus",)),
    ("proposed the theory of evolution by natural selection", ("Darwin", "Wallace")),
    ("won Nobel Prizes in both physics and chemistry", ("Curie",)),
    ("described the three laws of planetary motion", ("Kepler",)),
    ("invented the World Wide Web", ("Berners-Lee", "Berners Lee")),
    ("discovered the electron in 1897", ("Thomson",)),
)
ASTRONOMY: Facts = (
    ("Which planet is closest to the Sun?", ("Mercury",)),
    ("Which planet is the largest in our solar system?", ("Jupiter",)),
    ("Which planet is known as the Red Planet?", ("Mars",)),
    ("Which planet is the hottest in our solar system?", ("Venus",)),
    ("Which planet is the farthest from the Sun?", ("Neptune",)),
    ("What is the sixth planet from the Sun?", ("Saturn",)),
    ("What is the seventh planet from the Sun?", ("Uranus",)),
    ("What is the second planet from the Sun?", ("Venus",)),
    ("What is the largest moon of Saturn?", ("Titan",)),
    ("What is the largest moon in the solar system?", ("Ganymede",)),
    ("How many planets are in our solar system?", ("8", "eight")),
    ("What is the name of the galaxy that contains our solar system?", ("Milky Way",)),
    ("Which planet has a Great Red Spot, a storm larger than Earth?", ("Jupiter",)),
    ("Which is the smallest planet in our solar system?", ("Mercury",)),
)
CURRENCIES: Facts = (
    ("Japan", ("yen",)), ("India", ("rupee", "rupees")), ("Mexico", ("peso", "pesos")),
    ("Switzerland", ("franc", "francs")), ("Russia", ("ruble", "rubles", "rouble", "roubles")),
    ("China", ("yuan", "renminbi")), ("the United Kingdom", ("pound", "pounds", "sterling")),
    ("South Africa", ("rand",)), ("Thailand", ("baht",)), ("Poland", ("złoty", "zloty", "zlotys")),
    ("Sweden", ("krona", "kronor")), ("Turkey", ("lira", "liras")), ("Israel", ("shekel", "shekels", "sheqel")),
    ("Germany", ("euro", "euros")), ("the United States", ("dollar", "dollars")),
)
SI_UNITS: Facts = (
    ("force", ("newton", "newtons")), ("energy", ("joule", "joules")), ("power", ("watt", "watts")),
    ("electric current", ("ampere", "amperes", "amp", "amps")), ("electrical resistance", ("ohm", "ohms")),
    ("frequency", ("hertz",)), ("pressure", ("pascal", "pascals")), ("electric charge", ("coulomb", "coulombs")),
    ("electric potential difference", ("volt", "volts")), ("thermodynamic temperature", ("kelvin", "kelvins")),
    ("amount of substance", ("mole", "moles")), ("magnetic flux density", ("tesla", "teslas")),
    ("capacitance", ("farad", "farads")), ("luminous intensity", ("candela", "candelas")),
)
COUNTS: Facts = (
    ("How many centimeters are in a meter?", ("100", "a hundred", "one hundred")),
    ("How many grams are in a kilogram?", ("1000", "1,000", "a thousand", "one thousand")),
    ("How many minutes are in an hour?", ("60", "sixty")),
    ("How many hours are in a day?", ("24", "twenty-four", "twenty four")),
    ("How many days are in a leap year?", ("366",)),
    ("How many inches are in a foot?", ("12", "twelve")), ("How many feet are in a yard?", ("3", "three")),
    ("How many ounces are in a pound?", ("16", "sixteen")),
    ("How many years are in a century?", ("100", "a hundred", "one hundred")),
    ("How many sides does a hexagon have?", ("6", "six")), ("How many sides does an octagon have?", ("8", "eight")),
    ("How many legs does a spider have?", ("8", "eight")), ("How many legs does an insect have?", ("6", "six")),
    ("How many seconds are in an hour?", ("3600", "3,600")),
    ("How many players does a soccer team have on the field at once?", ("11", "eleven")),
    ("How many degrees are in a right angle?", ("90", "ninety")),
    ("How many degrees do the angles of a triangle add up to?", ("180",)),
    ("How many strings does a standard violin have?", ("4", "four")),
    ("How many keys does a standard piano have?", ("88", "eighty-eight")),
)
EVENT_YEARS: Facts = (
    ("did World War II end", ("1945",)),
    ("did the Berlin Wall fall", ("1989",)),
    ("did humans first land on the Moon", ("1969",)),
    ("did Columbus first reach the Americas", ("1492",)),
    ("was the Bastille stormed in Paris", ("1789",)),
    ("was the United States Declaration of Independence adopted", ("1776",)),
    ("did World War I begin", ("1914",)),
    ("did the Titanic sink", ("1912",)),
    ("did the Soviet Union dissolve", ("1991",)),
    ("was the Battle of Hastings fought", ("1066",)),
    ("was the Magna Carta sealed", ("1215",)),
    ("did the Wright brothers make their first powered flight", ("1903",)),
    ("did Constantinople fall to the Ottomans", ("1453",)),
    ("did Japan attack Pearl Harbor", ("1941",)),
    ("did the Chernobyl nuclear disaster happen", ("1986",)),
    ("was Sputnik 1 launched", ("1957",)),
    ("did Yuri Gagarin fly into space", ("1961",)),
    ("was John F. Kennedy assassinated", ("1963",)),
    ("did the D-Day landings in Normandy take place", ("1944",)),
    ("did the American Civil War end", ("1865",)),
    ("was the Battle of Waterloo fought", ("1815",)),
    ("did East and West Germany reunify", ("1990",)),
    ("did the Great Fire of London happen", ("1666",)),
    ("did Darwin publish On the Origin of Species", ("1859",)),
    ("were the first modern Olympic Games held", ("1896",)),
    ("was the Eiffel Tower completed", ("1889",)),
    ("did India gain independence from Britain", ("1947",)),
    ("was Nelson Mandela released from prison", ("1990",)),
    ("was Hong Kong handed over to China", ("1997",)),
    ("did euro banknotes and coins enter circulation", ("2002",)),
)
PLACES: Facts = (
    ("On which continent is Egypt?", ("Africa",)),
    ("On which continent is Peru?", ("South America",)),
    ("On which continent is Thailand?", ("Asia",)),
    ("On which continent is Norway?", ("Europe",)),
    ("What is the official language of Brazil?", ("Portuguese",)),
    ("Which language do most people in Mexico speak?", ("Spanish",)),
    ("What is the official language of Austria?", ("German",)),
    ("What is the official language of Egypt?", ("Arabic",)),
    ("What is the official language of Iran?", ("Persian", "Farsi")),
    ("Which river flows through Paris?", ("Seine",)),
    ("Which river flows through London?", ("Thames",)),
    ("Which river flows through Cairo?", ("Nile",)),
    ("Which river flows through Rome?", ("Tiber", "Tevere")),
    ("Which river flows through Vienna?", ("Danube", "Donau")),
)
EARTH_RECORDS: Facts = (
    ("What is the largest ocean on Earth?", ("Pacific",)),
    ("What is the largest continent by area?", ("Asia",)),
    ("What is the largest hot desert in the world?", ("Sahara",)),
    ("What is the highest mountain above sea level?", ("Everest",)),
    ("What is the largest country in the world by area?", ("Russia",)),
    ("What is the smallest country in the world by area?", ("Vatican", "Holy See")),
    ("Which ocean lies between Africa and Australia?", ("Indian",)),
    ("What is the largest mammal?", ("blue whale", "blue whales")),
    ("What is the fastest land animal?", ("cheetah", "cheetahs")),
    ("What is the tallest animal?", ("giraffe", "giraffes")),
    ("Which bird lays the largest eggs?", ("ostrich", "ostriches")),
)
SCIENCE: Facts = (
    ("Which gas do plants take in from the air for photosynthesis?", ("carbon dioxide", "CO2")),
    ("What is the chemical formula of water?", ("H2O",)),
    ("At what temperature in degrees Celsius does water boil at sea level?", ("100",)),
    ("At what temperature in degrees Fahrenheit does water freeze?", ("32",)),
    ("What is the hardest natural material?", ("diamond", "diamonds")),
    ("What is the largest organ of the human body?", ("skin",)),
    ("How many bones are in the adult human body?", ("206",)),
    ("Which part of a cell is known as its powerhouse?", ("mitochondria", "mitochondrion")),
    ("How many chambers does the human heart have?", ("4", "four")),
    ("Which gas makes up most of Earth's atmosphere?", ("nitrogen",)),
    ("What force keeps the planets in orbit around the Sun?", ("gravity", "gravitation", "gravitational")),
    ("What do bees make from nectar?", ("honey",)),
    ("Which gas do plants give off during photosynthesis?", ("oxygen",)),
    ("Which blood cells carry oxygen around the body?", ("red blood cells", "red blood cell", "erythrocytes")),
)
YES_NO: tuple[tuple[str, bool], ...] = (
    ("Is the Sun a star?", True), ("Is a whale a fish?", False), ("Is a tomato a fruit in botany?", True),
    ("Do spiders have six legs?", False), ("Is Sydney the capital of Australia?", False),
    ("Is water made of hydrogen and oxygen?", True), ("Is the Pacific the largest ocean on Earth?", True),
    ("Is Venus farther from the Sun than Earth is?", False), ("Is a bat a bird?", False),
    ("Is zero an even number?", True), ("Is 1 a prime number?", False), ("Is sound faster than light?", False),
    ("Does the Earth orbit the Sun?", True), ("Is a dolphin a mammal?", True),
    ("Is the Amazon rainforest in Africa?", False), ("Is Mount Everest the highest mountain above sea level?", True),
)


def yes_no_grader(yes: bool) -> dict[str, Any]:
    """The first "yes" or "no" in the reply is the answer ("Sure! Yes, ..." and "No, 91 is 7 x 13" both count)."""
    return {"kind": "regex", "pattern": rf"(?s)^(?:(?!\b(?:yes|no)\b).)*\b{'yes' if yes else 'no'}\b"}


def _yes_no_facts(rng: random.Random) -> list[Draft]:
    return [Draft(f"{question} Answer yes or no.", WORD, yes_no_grader(yes))
            for question, yes in rng.sample(YES_NO, 12)]


def _primes(rng: random.Random) -> list[Draft]:
    """Odd numbers that are not multiples of 5, half prime, half not: no shortcut from the last digit."""
    candidates = [n for n in range(31, 250, 2) if n % 5 and n % 3]
    primes = [n for n in candidates if all(n % d for d in range(3, math.isqrt(n) + 1, 2))]
    composites = [n for n in candidates if n not in primes]
    chosen = rng.sample(primes, 5) + rng.sample(composites, 5)
    rng.shuffle(chosen)
    return [Draft(f"Is {n} a prime number? Answer yes or no.", WORD, yes_no_grader(n in primes)) for n in chosen]


def arithmetic(template: str, draw: Callable[[random.Random], tuple[int, int]], solve: Callable[[int, int], int],
               count: int = 6) -> Callable[[random.Random], list[Draft]]:
    def build(rng: random.Random) -> list[Draft]:
        pairs: dict[tuple[int, int], None] = {}
        while len(pairs) < count:
            pairs[draw(rng)] = None
        return [Draft(template.format(a=a, b=b), SUM, number_grader(solve(a, b))) for a, b in pairs]
    return build


def number_grader(value: int | float) -> dict[str, Any]:
    return {"kind": "number", "value": value, "tolerance": 0}


def _quotient(rng: random.Random) -> tuple[int, int]:
    divisor = rng.randint(3, 19)
    return divisor * rng.randint(4, 60), divisor


FACTUAL = (
    Family("capital", "factual", facts(("What is the capital of {x}?", "Which city is the capital of {x}?",
                                        "Name the capital city of {x}."), CAPITALS, 18)),
    Family("capital_country", "factual", facts(("{x} is the capital of which country?",
                                                "Which country has {x} as its capital?"), CAPITAL_COUNTRIES, 8)),
    Family("element_symbol", "factual", facts(("What is the chemical symbol for {x}?",
                                               "Which chemical symbol stands for {x}?"), ELEMENT_SYMBOLS, 10)),
    Family("symbol_element", "factual", facts(("Which chemical element has the symbol {x}?",
                                               "What element does the chemical symbol {x} stand for?"),
                                              SYMBOL_ELEMENTS, 8)),
    Family("author", "factual", facts(("Who wrote {x}?", "Who is the author of {x}?", "Which writer wrote {x}?"),
                                      AUTHORS, 16)),
    Family("painter", "factual", facts(("Who painted {x}?", "Which artist painted {x}?"), PAINTINGS, 8)),
    Family("composer", "factual", facts(("Who composed {x}?", "Which composer wrote {x}?"), COMPOSITIONS, 8)),
    Family("scientist", "factual", facts(("Who {x}?", "Name the person who {x}."), SCIENTISTS, 10)),
    Family("astronomy", "factual", facts(("{x}",), ASTRONOMY, 10)),
    Family("currency", "factual", facts(("What is the currency of {x}?", "Which currency is used in {x}?"),
                                        CURRENCIES, 10)),
    Family("si_unit", "factual", facts(("What is the SI unit of {x}?", "Which SI unit measures {x}?"), SI_UNITS, 10)),
    Family("unit_count", "factual", facts(("{x}",), COUNTS, 12)),
    Family("event_year", "factual", facts(("In what year {x}?", "In which year {x}?"), EVENT_YEARS, 16)),
    Family("places", "factual", facts(("{x}",), PLACES, 10)),
    Family("earth_records", "factual", facts(("{x}",), EARTH_RECORDS, 8)),
    Family("science", "factual", facts(("{x}",), SCIENCE, 10)),
    Family("yes_no", "factual", _yes_no_facts),
    Family("prime_or_not", "factual", _primes),
    Family("times_table", "factual", arithmetic("What is {a} times {b}?",
                                                lambda r: (r.randint(2, 12), r.randint(2, 12)), lambda a, b: a * b)),
    Family("multiply_two_digits", "factual", arithmetic("What is {a} multiplied by {b}?",
                                                        lambda r: (r.randint(11, 99), r.randint(11, 99)),
                                                        lambda a, b: a * b)),
    Family("add_three_digits", "factual", arithmetic("What is {a} plus {b}?",
                                                     lambda r: (r.randint(100, 999), r.randint(100, 999)),
                                                     lambda a, b: a + b)),
    Family("subtract", "factual", arithmetic("What is {a} minus {b}?",
                                             lambda r: (r.randint(200, 999), r.randint(10, 199)), lambda a, b: a - b)),
    Family("divide", "factual", arithmetic("What is {a} divided by {b}?", _quotient, lambda a, b: a // b)),
    Family("square", "factual", arithmetic("What is {a} squared?", lambda r: (r.randint(4, 40), 0),
                                           lambda a, _b: a * a)),
)


# --- reasoning: word problems over drawn numbers; the answer is what the numbers make ---

NAMES = ("Maria", "Tom", "Aisha", "Kenji", "Lena", "Omar", "Sofia", "Ravi", "Emma", "Lucas", "Nadia", "Ben")
REASONING_SUFFIX = " Give the final answer as a number at the end."


@dataclass(frozen=True, slots=True)
class Problem:
    template: str  # str.format over the drawn values; every number in the text is a drawn value
    draw: Callable[[random.Random], dict[str, int]]
    solve: Callable[[dict[str, int]], int]
    count: int = 5
    max_tokens: int = STEPS

    def build(self, rng: random.Random) -> list[Draft]:
        out: dict[str, int] = {}
        while len(out) < self.count:
            values = self.draw(rng)
            answer = self.solve(values)
            out.setdefault(self.template.format(name=rng.choice(NAMES), **values) + REASONING_SUFFIX, answer)
        return [Draft(prompt, self.max_tokens, number_grader(answer)) for prompt, answer in out.items()]


def _change(r: random.Random) -> dict[str, int]:
    v = {"a": r.randint(2, 6), "p": r.randint(2, 9), "b": r.randint(2, 5), "q": r.randint(2, 4)}
    cost = v["a"] * v["p"] + v["b"] * v["q"]
    return {**v, "x": next(bill for bill in (20, 50, 100) if bill > cost)}


def _marbles(r: random.Random) -> dict[str, int]:
    a = r.randint(20, 90)
    return {"a": a, "b": r.randint(3, a - 5), "c": r.randint(2, 30)}


def _trip(r: random.Random) -> dict[str, int]:
    return {"t1": r.randint(2, 5), "v1": 5 * r.randint(6, 22), "t2": r.randint(2, 5), "v2": 5 * r.randint(6, 22)}


def _ages(r: random.Random) -> dict[str, int]:
    a = r.randint(12, 60)
    return {"a": a, "b": r.randint(2, min(10, a - 2)), "c": r.randint(2, 15)}


def _garden(r: random.Random) -> dict[str, int]:
    rows, per = r.randint(3, 12), r.randint(4, 15)
    return {"r": rows, "p": per, "d": r.randint(2, rows * per // 3), "g": r.randint(2, 20)}


def _factory(r: random.Random) -> dict[str, int]:
    return {"p": r.randint(12, 60), "h": r.randint(4, 10), "d": r.randint(2, 7)}


def _discount(r: random.Random) -> dict[str, int]:
    return {"P": 20 * r.randint(2, 10), "d": r.choice((10, 20, 25, 30, 40, 50)), "k": r.randint(2, 4)}


def _savings(r: random.Random) -> dict[str, int]:
    s, w = r.randint(5, 40), r.randint(4, 20)
    return {"s": s, "w": w, "x": r.randint(s, s * w - 1)}


def _cookies(r: random.Random) -> dict[str, int]:
    t, c = r.randint(2, 8), r.randint(6, 24)
    b = r.randint(4, min(12, t * c - 1))
    boxes = r.randint(1, (t * c - 1) // b)
    return {"t": t, "c": c, "s": t * c - boxes * b, "b": b}


def _book(r: random.Random) -> dict[str, int]:
    p, d = r.randint(8, 40), r.randint(2, 10)
    return {"P": r.randint(p * d + 1, p * d + 300), "p": p, "d": d}


def _fuel(r: random.Random) -> dict[str, int]:
    return {"f": r.randint(4, 12), "D": 100 * r.randint(2, 15)}


def _average(r: random.Random) -> dict[str, int]:
    a, b, c = (r.randint(50, 100) for _ in range(3))
    return {"a": a, "b": b, "c": c, "d": r.choice([d for d in range(40, 101) if (a + b + c + d) % 4 == 0])}


def _consecutive(r: random.Random) -> dict[str, int]:
    return {"S": 3 * r.randint(5, 300) + 3}


def _tank(r: random.Random) -> dict[str, int]:
    a = r.randint(5, 20)
    b = r.randint(2, a - 1)
    return {"C": (a - b) * r.randint(4, 30), "a": a, "b": b}


def _tickets(r: random.Random) -> dict[str, int]:
    return {"A": r.randint(8, 25), "c": r.randint(3, 12), "na": r.randint(2, 4), "nc": r.randint(2, 5)}


def _equation(r: random.Random) -> dict[str, int]:
    x, k = r.randint(2, 60), r.randint(1, 30)
    return {"k": k, "m": 2 * x + k}


def _flour(r: random.Random) -> dict[str, int]:
    return {"g": 50 * r.randint(3, 9), "B": r.choice((500, 1000)), "n": r.randint(2, 9)}


def _temperature(r: random.Random) -> dict[str, int]:
    t, rise = r.randint(2, 20), r.randint(2, 15)
    return {"t": t, "r": rise, "f": r.randint(2, t + rise - 1)}


def _pens(r: random.Random) -> dict[str, int]:
    p, k, e = r.randint(6, 24), r.randint(2, 6), r.randint(2, 3)
    return {"p": p, "k": k, "e": e, "s": r.randint(2, min(30, (k * p - 1) // e))}


def _duration(r: random.Random) -> dict[str, int]:
    return {"h": r.randint(2, 9), "m": r.randint(5, 55)}


_PIPE_PAIRS = ((3, 6), (4, 12), (6, 12), (5, 20), (10, 15), (12, 24), (8, 24), (20, 30), (6, 30), (10, 40), (18, 36))


def _pipes(r: random.Random) -> dict[str, int]:
    a, b = r.choice(_PIPE_PAIRS)
    return {"a": a, "b": b} if r.random() < 0.5 else {"a": b, "b": a}


def _bus(r: random.Random) -> dict[str, int]:
    return {"N": 20 * r.randint(10, 60), "p": r.choice((10, 15, 20, 25, 30, 35, 40, 45, 60, 75))}


# The easy end: one step, small numbers.
def _more(r: random.Random) -> dict[str, int]:
    return {"a": r.randint(2, 15), "b": r.randint(2, 10)}


def _fly_away(r: random.Random) -> dict[str, int]:
    a = r.randint(6, 20)
    return {"a": a, "b": r.randint(2, a - 1)}


def _packs(r: random.Random) -> dict[str, int]:
    return {"a": r.randint(2, 12), "b": r.randint(2, 9)}


def _share(r: random.Random) -> dict[str, int]:
    b = r.randint(2, 6)
    return {"a": b * r.randint(2, 8), "b": b}


def _older(r: random.Random) -> dict[str, int]:
    return {"a": r.randint(5, 40), "b": r.randint(2, 10)}


ONE_STEP = 64  # max_tokens
EASY = 7  # items per one-step family (a 135M drafter gets about one in ten right; several steps, almost none)


PROBLEMS: dict[str, Problem] = {
    "more": Problem("{name} has {a} apples and buys {b} more. How many apples does {name} have now?", _more,
                    lambda v: v["a"] + v["b"], EASY, ONE_STEP),
    "fly_away": Problem("There are {a} birds on a tree. {b} of them fly away. How many birds are left on the tree?",
                        _fly_away, lambda v: v["a"] - v["b"], EASY, ONE_STEP),
    "packs": Problem("A pack holds {a} eggs. How many eggs are in {b} packs?", _packs, lambda v: v["a"] * v["b"],
                     EASY, ONE_STEP),
    "share": Problem("{name} shares {a} candies equally among {b} friends. How many candies does each friend get?",
                     _share, lambda v: v["a"] // v["b"], EASY, ONE_STEP),
    "older": Problem("{name} is {a} years old. How old will {name} be in {b} years?", _older,
                     lambda v: v["a"] + v["b"], EASY, ONE_STEP),
    "change": Problem("{name} buys {a} notebooks at {p} dollars each and {b} pens at {q} dollars each, and pays with "
                      "a {x}-dollar bill. How much change does {name} get, in dollars?", _change,
                      lambda v: v["x"] - (v["a"] * v["p"] + v["b"] * v["q"])),
    "marbles": Problem("{name} has {a} marbles, gives {b} of them to a friend, and then wins {c} more in a game. "
                       "How many marbles does {name} have now?", _marbles, lambda v: v["a"] - v["b"] + v["c"]),
    "trip": Problem("A car drives for {t1} hours at {v1} kilometers per hour and then for {t2} hours at {v2} "
                    "kilometers per hour. How many kilometers does it travel in total?", _trip,
                    lambda v: v["t1"] * v["v1"] + v["t2"] * v["v2"]),
    "ages": Problem("{name} is {a} years old, and {name}'s brother is {b} years younger. What will the sum of their "
                    "ages be in {c} years?", _ages, lambda v: v["a"] + (v["a"] - v["b"]) + 2 * v["c"]),
    "garden": Problem("A garden has {r} rows of {p} plants each. After a storm, {d} plants die, and the gardener "
                      "plants {g} new ones. How many plants are in the garden now?", _garden,
                      lambda v: v["r"] * v["p"] - v["d"] + v["g"]),
    "factory": Problem("A machine makes {p} parts every hour and runs for {h} hours a day. How many parts does it make "
                       "in {d} days?", _factory, lambda v: v["p"] * v["h"] * v["d"]),
    "discount": Problem("A jacket costs {P} dollars and is sold at {d} percent off. {name} buys {k} of these jackets "
                        "at the sale price. How much does {name} pay in total, in dollars?", _discount,
                        lambda v: v["k"] * v["P"] * (100 - v["d"]) // 100),
    "savings": Problem("{name} saves {s} dollars every week for {w} weeks and then spends {x} dollars on a bike. "
                       "How many dollars does {name} have left?", _savings, lambda v: v["s"] * v["w"] - v["x"]),
    "cookies": Problem("A baker bakes {t} trays with {c} cookies on each tray, sells {s} cookies, and packs the rest "
                       "into boxes of {b}. How many boxes does the baker fill?", _cookies,
                       lambda v: (v["t"] * v["c"] - v["s"]) // v["b"]),
    "book": Problem("A book has {P} pages. {name} reads {p} pages every day for {d} days. How many pages are left "
                    "to read?", _book, lambda v: v["P"] - v["p"] * v["d"]),
    "fuel": Problem("A car uses {f} liters of fuel per 100 kilometers. How many liters does it need for a trip of {D} "
                    "kilometers?", _fuel, lambda v: v["f"] * v["D"] // 100),
    "average": Problem("Four students scored {a}, {b}, {c} and {d} points on a test. What is their average score?",
                       _average, lambda v: (v["a"] + v["b"] + v["c"] + v["d"]) // 4),
    "consecutive": Problem("The sum of three consecutive whole numbers is {S}. What is the largest of the three "
                           "numbers?", _consecutive, lambda v: v["S"] // 3 + 1),
    "tank": Problem("A tank holds {C} liters. A pipe fills it with {a} liters per minute while a leak drains {b} "
                    "liters per minute. If the tank starts empty, how many minutes does it take to fill?", _tank,
                    lambda v: v["C"] // (v["a"] - v["b"])),
    "tickets": Problem("Adult tickets cost {A} dollars and child tickets cost {c} dollars. A family buys {na} adult "
                       "tickets and {nc} child tickets. How many dollars do they pay?", _tickets,
                       lambda v: v["na"] * v["A"] + v["nc"] * v["c"]),
    "equation": Problem("If you double a number and then add {k}, you get {m}. What is the number?", _equation,
                        lambda v: (v["m"] - v["k"]) // 2),
    "flour": Problem("A cake needs {g} grams of flour, and flour is sold in bags of {B} grams. How many bags must you "
                     "buy to bake {n} cakes?", _flour, lambda v: -(-v["n"] * v["g"] // v["B"])),
    "temperature": Problem("In the morning it is {t} degrees. By noon the temperature has risen by {r} degrees, and by "
                           "night it has fallen by {f} degrees from the noon temperature. What is the temperature at "
                           "night, in degrees?", _temperature, lambda v: v["t"] + v["r"] - v["f"]),
    "pens": Problem("A box holds {p} pens. A teacher buys {k} boxes and gives {e} pens to each of {s} students. "
                    "How many pens are left over?", _pens, lambda v: v["p"] * v["k"] - v["e"] * v["s"]),
    "duration": Problem("A train journey takes {h} hours and {m} minutes. How many minutes is that in total?",
                        _duration, lambda v: 60 * v["h"] + v["m"]),
    "pipes": Problem("Pipe A fills a pool in {a} hours and pipe B fills it in {b} hours. Working together, how many "
                     "hours do they take to fill the pool?", _pipes, lambda v: v["a"] * v["b"] // (v["a"] + v["b"])),
    "bus": Problem("A school has {N} students. {p} percent of them walk to school and the rest come by bus. How many "
                   "students come by bus?", _bus, lambda v: v["N"] * (100 - v["p"]) // 100),
}

BACKWARDS_WORDS = ("table", "garden", "planet", "silver", "window", "dragon", "pencil", "rocket", "monkey", "basket")
ORDINALS = {1: "first", 3: "third", 5: "fifth", 8: "eighth", 10: "tenth", 12: "twelfth", 15: "fifteenth",
            19: "nineteenth", 20: "twentieth", 24: "twenty-fourth", 26: "last"}


def _backwards(rng: random.Random) -> list[Draft]:
    return [Draft(f"Write the word '{word}' backwards, letter by letter. Reply with only the reversed word.", WORD,
                  {"kind": "exact", "answer": word[::-1]}) for word in rng.sample(BACKWARDS_WORDS, 6)]


def _alphabet(rng: random.Random) -> list[Draft]:
    return [Draft(f"What is the {ORDINALS[n]} letter of the English alphabet? Reply with only the letter.", WORD,
                  {"kind": "exact", "answer": chr(ord("a") + n - 1)}) for n in rng.sample(sorted(ORDINALS), 6)]


REASONING = (
    *(Family(name, "reasoning", problem.build) for name, problem in PROBLEMS.items()),
    Family("backwards", "reasoning", _backwards),
    Family("alphabet_position", "reasoning", _alphabet),
)


# --- creative and ambiguous: checkable constraints where there are any, else the judge's rubric ---

TOPICS = ("the sea", "autumn leaves", "a city at night", "a lost key", "morning coffee", "a thunderstorm",
          "an old dog", "the first snow", "a train journey", "a quiet library", "the moon", "a garden in spring",
          "a lighthouse", "a busy market")
SCENES = ("a rainy afternoon", "your ideal breakfast", "a forest at dawn", "the end of a long race", "a crowded train",
          "an old bookshop", "the smell of fresh bread", "a winter morning", "a mountain lake", "a street market",
          "a cat asleep in the sun", "rain on a roof", "a summer festival", "an empty beach")
ODD_WORDS = (("a birthday party", "umbrella"), ("the ocean", "library"), ("a dog", "telescope"),
             ("breakfast", "volcano"), ("a school day", "pineapple"), ("winter", "guitar"), ("a train ride", "honey"),
             ("a football match", "moonlight"), ("a garden", "bicycle"), ("a rainy day", "elephant"),
             ("cooking dinner", "rocket"), ("a museum", "sandwich"), ("a forest walk", "calendar"),
             ("a city street", "feather"))
AVOIDED = (("the ocean", "water"), ("the sun", "sun"), ("a cat", "cat"), ("winter", "cold"), ("a car", "car"),
           ("coffee", "coffee"), ("a bicycle", "wheels"), ("rain", "wet"), ("a library", "books"),
           ("the moon", "night"), ("a birthday", "cake"), ("a piano", "music"))
LISTS = ("fruits", "colors", "animals that live in the ocean", "countries in Europe", "musical instruments",
         "vegetables", "sports played with a ball", "kitchen tools", "jobs", "things you can find in a classroom",
         "flowers", "board games", "birds", "cities in Asia", "things that are cold")
OPENINGS = ("The door was already open", "Nobody expected the rain", "On the last day of summer",
            "My grandmother kept a secret", "The robot blinked twice", "It was the quietest town",
            "Every morning before sunrise", "The letter arrived without a stamp", "Under the old bridge",
            "When the lights went out")
QUESTION_TOPICS = ("space travel", "learning to cook", "city gardens", "the history of tea", "working from home",
                   "electric cars", "rainy days", "board games", "learning a new language", "night trains")
SLOGANS = (("a bakery", "fresh"), ("a bike shop", "ride"), ("a library", "stories"), ("a coffee shop", "morning"),
           ("a gym", "strong"), ("a bookstore", "pages"), ("an ice cream stand", "cool"),
           ("a travel agency", "journey"), ("a flower shop", "bloom"), ("a pet hotel", "paws"))
PREMISES = ("a girl who finds a map in her attic", "a robot that learns to paint", "two rivals stuck in a lift",
            "a town where it never stops snowing", "a detective who is afraid of the dark",
            "a dragon who runs a bakery", "the last tree on a city street", "a boy who can talk to birds",
            "a ship that sails without a crew", "a clock that runs backwards")
ESSAYS = ("why sleep matters", "your favourite season", "the invention of the wheel", "life in a small village",
          "the benefits of reading", "a day at the zoo", "how bridges are built", "a walk in the mountains")


def constraints(*checks: tuple[str, int | str]) -> dict[str, Any]:
    return {"kind": "constraints", "checks": [{"kind": kind, "value": value} for kind, value in checks]}


def _poem_lines(rng: random.Random) -> list[Draft]:
    return [Draft(f"Write a poem about {topic} in exactly {n} lines. Reply with the poem only.", 96,
                  constraints(("lines", n))) for topic in rng.sample(TOPICS, 12) for n in [rng.randint(2, 6)]]


def _haiku(rng: random.Random) -> list[Draft]:
    return [Draft(f"Write a haiku about {topic}. Reply with only its three lines.", 64, constraints(("lines", 3)))
            for topic in rng.sample(TOPICS, 8)]


def _word_limit(rng: random.Random) -> list[Draft]:
    return [Draft(f"Describe {scene} in no more than {n} words.", 96, constraints(("max_words", n)))
            for scene in rng.sample(SCENES, 14) for n in [rng.choice((8, 10, 12, 15, 20, 25, 30))]]


def _must_use(rng: random.Random) -> list[Draft]:
    return [Draft(f"Write one sentence about {topic} that uses the word '{word}'.", 64,
                  constraints(("contains", word), ("max_words", 40))) for topic, word in rng.sample(ODD_WORDS, 14)]


def _avoid(rng: random.Random) -> list[Draft]:
    return [Draft(f"Describe {thing} in two or three sentences without using the word '{word}'.", 96,
                  constraints(("excludes", word), ("max_words", 80))) for thing, word in rng.sample(AVOIDED, 12)]


def _list_n(rng: random.Random) -> list[Draft]:
    out = []
    for things in rng.sample(LISTS, 14):
        n = rng.randint(3, 7)
        out.append(Draft(f"List exactly {n} {things}, one per line, with nothing else.", 96, constraints(("items", n))))
    return out


def _starts_with(rng: random.Random) -> list[Draft]:
    return [Draft(f'Write the opening of a short story, two or three sentences long, that begins with the words '
                  f'"{opening}".', 112, constraints(("starts_with", opening), ("max_words", 80)))
            for opening in rng.sample(OPENINGS, 10)]


def _ends_with_question(rng: random.Random) -> list[Draft]:
    return [Draft(f"Write a short paragraph about {topic} that ends with a question.", 112,
                  constraints(("ends_with", "?"))) for topic in rng.sample(QUESTION_TOPICS, 8)]


def _slogan(rng: random.Random) -> list[Draft]:
    return [Draft(f"Write a slogan of at most {n} words for {business} that includes the word '{word}'.", 64,
                  constraints(("max_words", n), ("contains", word)))
            for business, word in rng.sample(SLOGANS, 10) for n in [rng.choice((6, 8, 10))]]


def _title(rng: random.Random) -> list[Draft]:
    return [Draft(f"Suggest a title for a story about {premise}. Reply with the title only, in at most {n} words.", 48,
                  constraints(("max_words", n), ("lines", 1)))
            for premise in rng.sample(PREMISES, 8) for n in [rng.choice((4, 5, 6))]]


def _min_words(rng: random.Random) -> list[Draft]:
    return [Draft(f"Write a paragraph of at least {n} words about {topic}.", 128, constraints(("min_words", n)))
            for topic in rng.sample(ESSAYS, 8) for n in [rng.choice((40, 50, 60))]]


ADVICE = (
    ("What is a good way to start learning to play the guitar?",
     "Practical first steps a beginner can follow (for example learning a few basic chords, practising a little "
     "every day, using lessons, videos or a teacher); coherent and on topic."),
    ("How can I get better at remembering people's names?",
     "Concrete, usable techniques (for example repeating the name, associating it with something, writing it down, "
     "using it in conversation); coherent and on topic."),
    ("What should I pack for a weekend hiking trip?",
     "A sensible packing list covering water, food, clothing layers or rain gear, navigation and basic safety or first "
     "aid; no dangerous advice."),
    ("How do I make my small apartment feel bigger?",
     "Several practical ideas (for example light colours, mirrors, less clutter, multi-purpose furniture, good "
     "lighting); coherent and on topic."),
    ("How can I stay focused while studying at home?",
     "Practical techniques (for example removing distractions such as the phone, planned breaks, a fixed place and "
     "schedule, clear goals); coherent and on topic."),
    ("What is a good way to save money on groceries?",
     "Concrete tips (for example planning meals, making a list, comparing prices, buying in season or in bulk, "
     "avoiding waste); coherent and on topic."),
    ("How should I prepare for a job interview?",
     "Useful preparation steps (for example researching the company, practising answers to common questions, "
     "preparing questions to ask, planning clothes and arrival); coherent and on topic."),
    ("How do I keep a houseplant alive?",
     "Basic care advice: appropriate light, not overwatering (water when the soil is dry), drainage, and adjusting "
     "to the plant's type; coherent and on topic."),
    ("What can I do to sleep better at night?",
     "Sensible sleep-hygiene advice (for example a regular schedule, less screen time and caffeine late in the day, "
     "a dark quiet room); no harmful advice."),
    ("How can I make a long car trip with children easier?",
     "Practical ideas (for example planned breaks, snacks, games, audiobooks or music, comfortable seating); "
     "coherent and on topic."),
)
AMBIGUOUS = (
    ("Which is better, Python or JavaScript?",
     "Says it depends on the purpose and gives at least one concrete situation where each one fits (for example "
     "JavaScript in web browsers, Python for data work or scripting); a one-sided verdict without reasons is poor."),
    ("Is it better to rent or buy a home?",
     "Says it depends on circumstances and names real factors (for example how long one stays, savings for a "
     "deposit, interest rates, flexibility, maintenance costs); a one-sided verdict without reasons is poor."),
    ("How long should a presentation be?",
     "Says it depends on the audience, purpose and setting, and gives a reasonable range or rule of thumb; a single "
     "number with no reasoning is poor."),
    ("Should I study in the morning or at night?",
     "Says it depends on the person and their schedule, names factors (energy, sleep, distractions, consistency) "
     "and suggests trying both; a one-sided verdict without reasons is poor."),
    ("What is a good gift for a friend?",
     "Notes that it depends on the friend's interests and suggests several concrete, sensible ideas or a way to "
     "choose; coherent and on topic."),
    ("Is coffee good or bad for you?",
     "Balanced: moderate coffee is fine for most adults, with possible downsides (sleep, anxiety, high doses, "
     "pregnancy or some conditions); no false or extreme claims."),
    ("What is the best age to learn a second language?",
     "Says people can learn at any age, noting that children often pick up pronunciation more easily while adults "
     "can learn efficiently too; no false or absolute claims."),
    ("Should I use a paper planner or an app?",
     "Compares the two with real pros and cons (for example reminders and syncing against writing by hand and no "
     "screen) and says the choice depends on the person; coherent and on topic."),
)
EXPLAIN = (
    ("Explain to a ten-year-old why the sky is blue.",
     "Sunlight contains all colours and air scatters blue light more than red, so blue comes from all over the sky; "
     "simple words; wrong explanations (for example reflection of the ocean) score 1."),
    ("Explain why we have seasons on Earth.",
     "The tilt of Earth's axis, so each hemisphere gets more direct sunlight and longer days for part of the year; "
     "claiming the seasons come from Earth's changing distance to the Sun scores 1."),
    ("Explain how a rainbow forms.",
     "Sunlight is refracted and reflected inside raindrops and split into its colours (dispersion), seen with the "
     "Sun behind the viewer; wrong physics scores 1."),
    ("Explain what inflation means in economics.",
     "A general rise in prices over time, so the same money buys less; may mention causes or measures; a wrong "
     "definition scores 1."),
    ("Explain what a vaccine does.",
     "It trains the immune system to recognise a germ (with a weakened, inactivated or partial form, or "
     "instructions to make a piece of it) so the body can fight the real infection; false claims score 1."),
    ("Explain why ice floats on water.",
     "Ice is less dense than liquid water because its molecules form an open crystal structure as it freezes; a "
     "wrong reason scores 1."),
    ("Explain why leaves change colour in autumn.",
     "Trees stop making chlorophyll, the green fades and other pigments (yellows and oranges, and reds in some "
     "trees) show; a wrong reason scores 1."),
    ("Explain what a computer virus is in simple terms.",
     "A program that copies itself or spreads to other computers or files, usually without the owner's permission, "
     "and can cause harm; simple words; coherent."),
)


def judged(rows: tuple[tuple[str, str], ...], max_tokens: int = 128) -> Callable[[random.Random], list[Draft]]:
    return lambda _rng: [Draft(prompt, max_tokens, {"kind": "judge", "rubric": rubric}) for prompt, rubric in rows]


CREATIVE = (
    Family("poem_lines", "creative", _poem_lines),
    Family("haiku", "creative", _haiku),
    Family("word_limit", "creative", _word_limit),
    Family("must_use_word", "creative", _must_use),
    Family("avoid_word", "creative", _avoid),
    Family("list_n", "creative", _list_n),
    Family("story_opening", "creative", _starts_with),
    Family("ends_with_question", "creative", _ends_with_question),
    Family("slogan", "creative", _slogan),
    Family("title", "creative", _title),
    Family("min_words", "creative", _min_words),
    Family("advice", "creative", judged(ADVICE)),
    Family("ambiguous", "creative", judged(AMBIGUOUS)),
    Family("explain", "creative", judged(EXPLAIN)),
)


# --- code: scripts/calibration_code_tasks.py, each task asked in a wording drawn by the seed ---

def _code(tasks: Callable[[random.Random], list[CodeTask]]) -> Callable[[random.Random], list[Draft]]:
    def build(rng: random.Random) -> list[Draft]:
        return [Draft(rng.choice(CODE_WORDINGS).format(signature=t.signature, spec=t.spec) + CODE_SUFFIX,
                      t.max_tokens, {"kind": "code", "entry_point": t.entry_point, "tests": t.tests()}, t.reference)
                for t in tasks(rng)]
    return build


CODE = tuple(Family(name, "code", _code(tasks)) for name, tasks in CODE_FAMILIES.items())

FAMILIES: tuple[Family, ...] = (*FACTUAL, *REASONING, *CODE, *CREATIVE)
