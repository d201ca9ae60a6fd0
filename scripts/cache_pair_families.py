"""The template families behind the cache-pair dataset (scripts/cache_pairs.py).

A family: wordings of one question (the first is the base; each other one is tagged with how it differs
from it), the cases (slot values) it is asked about, and the changes that make it a different question.
Wordings are meant to read like real requests: a paraphrase is what another person would type for the
same need, a near miss is what someone with a different need would type.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Swap:
    """Another case's value for one slot."""

    slot: str
    cls: str


@dataclass(frozen=True, slots=True)
class Reverse:
    """Two slots' values exchanged (a swapped direction or order)."""

    first: str
    second: str
    cls: str = "direction"


@dataclass(frozen=True, slots=True)
class Bump:
    """The last number in a slot's value moved a little (an ID, a quantity, a year)."""

    slot: str
    cls: str
    deltas: tuple[int, ...] = (-7, -1, 1, 2, 10)


@dataclass(frozen=True, slots=True)
class Variant:
    """Other wordings over the same slots that ask something else (negated, opposite, other operator)."""

    cls: str
    templates: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    forms: tuple[tuple[str, str], ...]  # (template, paraphrase class); the first is the base, its tag unused
    cases: tuple[dict[str, str], ...]
    near: tuple[Swap | Reverse | Bump | Variant, ...]


def one(slot: str, *values: str) -> tuple[dict[str, str], ...]:
    return tuple({slot: value} for value in values)


def rows(slots: str, *values: tuple[str, ...]) -> tuple[dict[str, str], ...]:
    names = slots.split()
    return tuple(dict(zip(names, row, strict=True)) for row in values)


def variant(cls: str, *templates: str) -> Variant:
    return Variant(cls, templates)


F = Family
FAMILIES: tuple[Family, ...] = (
    F("capital", (
        ("What is the capital of {country}?", ""),
        ("Which city is {country}'s capital?", "question_form"),
        ("What's the capital city of {country}?", "contractions"),
        ("Tell me the capital of {country}.", "reworded"),
        ("{country}'s capital is which city?", "reordered"),
        ("Name the capital city of {country}", "reworded")),
      one("country", "Japan", "France", "Kenya", "Peru", "Canada", "Australia", "Norway", "Egypt", "Vietnam"),
      (Swap("country", "entity"), variant("attribute", "What is the largest city in {country}?",
                                            "Which city is the biggest in {country}?"))),
    F("order_status", (
        ("Summarize the status of order #{order}.", ""),
        ("What's the current status of order #{order}?", "question_form"),
        ("Give me a status update on order number {order}", "reworded"),
        ("Can you check order {order} and tell me where it stands?", "reworded"),
        ("Order #{order}: what is its status?", "reordered")),
      one("order", "4411", "5120", "7083", "10234", "88812", "3301"),
      (Bump("order", "number"),
       variant("attribute", "Cancel order #{order}.", "When will order #{order} be delivered?"))),
    F("invoice_total", (
        ("What is the total on invoice INV-{inv}?", ""),
        ("How much is invoice INV-{inv} for?", "question_form"),
        ("Show me the amount due on invoice INV-{inv}", "synonyms"),
        ("Invoice INV-{inv}: what's the total?", "reordered"),
        ("what's the total for invoice INV-{inv}", "contractions")),
      one("inv", "20931", "31877", "40012", "55219", "61004"),
      (Bump("inv", "identifier"),)),
    F("drink_health", (
        ("Is {drink} good for your health?", ""),
        ("Is {drink} healthy?", "reworded"),
        ("Is drinking {drink} good for you?", "reworded"),
        ("Does {drink} have health benefits?", "question_form"),
        ("Health-wise, is {drink} good for you?", "reordered")),
      one("drink", "coffee", "green tea", "red wine", "orange juice", "kombucha", "sparkling water"),
      (variant("antonym", "Is {drink} bad for your health?", "Is {drink} unhealthy?",
               "Is drinking {drink} bad for you?", "Is {drink} harmful to your health?"),
       Swap("drink", "entity"))),
    F("unit_conversion", (
        ("Convert {n} {u1} to {u2}.", ""),
        ("How many {u2} are in {n} {u1}?", "question_form"),
        ("What is {n} {u1} in {u2}?", "question_form"),
        ("{n} {u1} is how many {u2}?", "reordered"),
        ("Please change {n} {u1} into {u2}", "reworded")),
      rows("n u1 u2", ("100", "miles", "kilometers"), ("5", "kilograms", "pounds"), ("12", "inches", "centimeters"),
           ("3", "gallons", "liters"), ("250", "grams", "ounces"), ("10", "feet", "meters")),
      (Reverse("u1", "u2"), Bump("n", "number"), Swap("u2", "unit"))),
    F("temperature", (
        ("Convert {t} degrees {s1} to {s2}.", ""),
        ("What is {t} degrees {s1} in {s2}?", "question_form"),
        ("{t} degrees {s1} is how many degrees {s2}?", "reordered"),
        ("How much is {t} degrees {s1} in {s2}?", "question_form"),
        ("Turn {t} degrees {s1} into {s2} for me", "reworded")),
      rows("t s1 s2", ("30", "Celsius", "Fahrenheit"), ("100", "Fahrenheit", "Celsius"), ("20", "Celsius", "Kelvin"),
           ("451", "Fahrenheit", "Celsius")),
      (Reverse("s1", "s2"), Bump("t", "number"))),
    F("currency", (
        ("Convert {n} {c1} to {c2}.", ""),
        ("How many {c2} is {n} {c1}?", "question_form"),
        ("What's {n} {c1} in {c2}?", "contractions"),
        ("How much is {n} {c1} worth in {c2}?", "reworded"),
        ("{n} {c1} to {c2} please", "reworded")),
      rows("n c1 c2", ("50", "dollars", "euros"), ("200", "euros", "yen"), ("1000", "yen", "dollars"),
           ("75", "pounds", "dollars"), ("500", "pesos", "euros")),
      (Reverse("c1", "c2"), Bump("n", "number"))),
    F("translate_phrase", (
        ("Translate '{phrase}' into {lang}.", ""),
        ("How do you say '{phrase}' in {lang}?", "question_form"),
        ("What is '{phrase}' in {lang}?", "question_form"),
        ("What's the {lang} for \"{phrase}\"?", "reworded"),
        ("Give me the {lang} translation of '{phrase}'", "reworded")),
      rows("phrase lang", ("good morning", "French"), ("thank you very much", "Spanish"),
           ("where is the train station", "German"), ("see you tomorrow", "Italian"), ("good night", "Japanese")),
      (Swap("lang", "language"), Swap("phrase", "quoted"))),
    F("translate_direction", (
        ("Translate the word '{word}' from {l1} to {l2}.", ""),
        ("What does the {l1} word '{word}' mean in {l2}?", "question_form"),
        ("How would you translate the {l1} word '{word}' into {l2}?", "reworded"),
        ("'{word}' from {l1} to {l2}: what is the translation?", "reordered")),
      rows("word l1 l2", ("gato", "Spanish", "English"), ("Schmetterling", "German", "English"),
           ("merci", "French", "Italian"), ("arigato", "Japanese", "English")),
      (Reverse("l1", "l2"), Swap("l2", "language"))),
    F("reverse_list", (
        ("How do I reverse a list in {plang}?", ""),
        ("What's the best way to reverse a list in {plang}?", "reworded"),
        ("In {plang}, how can I reverse a list?", "reordered"),
        ("Reversing a list in {plang}: how is it done?", "reordered"),
        ("Show me how to reverse a list using {plang}", "reworded")),
      one("plang", "Python", "Rust", "JavaScript", "Java", "Go", "Ruby", "Kotlin"),
      (Swap("plang", "programming_language"), variant("attribute", "How do I shuffle a list in {plang}?",
                                                         "What is the best way to sort a list in {plang}?"))),
    F("sort_dict", (
        ("How do I sort a dictionary by value in {plang}?", ""),
        ("How can I sort a {plang} dict by its values?", "synonyms"),
        ("In {plang}, what's the way to order a dictionary by its values?", "reordered"),
        ("Sorting a dictionary by value in {plang}: how?", "reordered")),
      one("plang", "Python", "Swift", "C#", "JavaScript"),
      (Swap("plang", "programming_language"),
       variant("antonym", "How do I sort a dictionary by value in descending order in {plang}?",
               "How can I sort a {plang} dict by its values, descending?"),
       variant("attribute", "How do I sort a dictionary by key in {plang}?",
               "How can I sort a {plang} dict by its keys?"))),
    F("read_file", (
        ("How do I read a file line by line in {plang}?", ""),
        ("What's the way to read a text file one line at a time in {plang}?", "reworded"),
        ("In {plang}, how can I go through a file line by line?", "reordered"),
        ("Reading a file line by line with {plang}: how?", "reordered")),
      one("plang", "Python", "Java", "C++", "Bash", "Go"),
      (variant("antonym", "How do I write a file line by line in {plang}?",
               "In {plang}, how can I write to a file one line at a time?"),
       Swap("plang", "programming_language"))),
    F("addition", (
        ("What is {a} plus {b}?", ""),
        ("What's {a} + {b}?", "contractions"),
        ("Add {a} and {b}", "reworded"),
        ("Calculate the sum of {a} and {b}.", "synonyms"),
        ("{a} plus {b} equals what?", "reordered")),
      rows("a b", ("12", "7"), ("345", "678"), ("19", "23"), ("1024", "512"), ("88", "14")),
      (variant("operator", "What is {a} minus {b}?", "What is {a} times {b}?", "What's {a} - {b}?",
               "Calculate {a} divided by {b}."),
       Bump("a", "number"))),
    F("compare_numbers", (
        ("Is {a} greater than {b}?", ""),
        ("Is {a} larger than {b}?", "synonyms"),
        ("Is {a} bigger than {b}?", "synonyms"),
        ("Would you say {a} is greater than {b}?", "reworded")),
      rows("a b", ("7", "5"), ("0.5", "0.45"), ("1000", "999"), ("3.14", "3.1416")),
      (Reverse("a", "b"), variant("antonym", "Is {a} less than {b}?", "Is {a} smaller than {b}?"))),
    F("sql_filter", (
        ("Write a SQL query selecting users with age > {n}.", ""),
        ("Give me a SQL statement that returns users older than {n}", "reworded"),
        ("SQL: select every user whose age is greater than {n}", "reordered"),
        ("How do I query users with an age above {n} in SQL?", "question_form")),
      one("n", "30", "18", "65", "21"),
      (variant("operator", "Write a SQL query selecting users with age < {n}.",
               "Give me a SQL statement that returns users younger than {n}"),
       Bump("n", "number"))),
    F("divisible", (
        ("Which numbers from 1 to {n} are divisible by {a} and {b}?", ""),
        ("List the numbers from 1 to {n} that are divisible by both {a} and {b}", "reworded"),
        ("From 1 to {n}, which numbers can be divided by {a} and {b}?", "reordered")),
      rows("n a b", ("50", "3", "5"), ("100", "4", "6"), ("60", "2", "7")),
      (variant("operator", "Which numbers from 1 to {n} are divisible by {a} or {b}?",
               "List the numbers from 1 to {n} that are divisible by {a} or by {b}"),
       Bump("n", "number"))),
    F("world_cup", (
        ("Who won the World Cup in {year}?", ""),
        ("Which country won the {year} World Cup?", "question_form"),
        ("Who were the World Cup champions in {year}?", "reworded"),
        ("The {year} World Cup was won by which team?", "reordered")),
      one("year", "1998", "2002", "2006", "2010", "2014", "2018"),
      (Swap("year", "year"),)),
    F("country_population", (
        ("What was the population of {country} in {year}?", ""),
        ("How many people lived in {country} in {year}?", "reworded"),
        ("In {year}, what was {country}'s population?", "reordered"),
        ("What was {country}'s population back in {year}?", "reworded")),
      rows("country year", ("Brazil", "1990"), ("India", "2001"), ("Germany", "1975"), ("Nigeria", "2010"),
           ("Mexico", "1985")),
      (Swap("year", "year"), Swap("country", "entity"),
       variant("attribute", "What was the GDP of {country} in {year}?", "How big was {country}'s economy in {year}?"))),
    F("event_start", (
        ("When did the {event} start?", ""),
        ("When did the {event} begin?", "synonyms"),
        ("In what year did the {event} start?", "question_form"),
        ("What year marks the beginning of the {event}?", "reworded")),
      one("event", "French Revolution", "Cold War", "Great Depression", "Apollo program", "Industrial Revolution"),
      (variant("antonym", "When did the {event} end?", "In what year did the {event} end?",
               "What year marks the end of the {event}?"),
       variant("question", "Where did the {event} start?", "Why did the {event} start?"))),
    F("safe_fruits", (
        ("Which fruits are safe for {animals} to eat?", ""),
        ("What fruits can {animals} safely eat?", "reworded"),
        ("Which fruits can I give my {animal}?", "reworded"),
        ("List the fruits that {animals} are allowed to eat", "reworded")),
      rows("animals animal", ("dogs", "dog"), ("cats", "cat"), ("rabbits", "rabbit"), ("hamsters", "hamster")),
      (variant("negation", "Which fruits are not safe for {animals} to eat?", "What fruits should {animals} never eat?",
               "Which fruits can't I give my {animal}?", "List the fruits that {animals} are not allowed to eat"),
       variant("antonym", "Which fruits are dangerous for {animals}?", "Which fruits are bad for {animals}?"))),
    F("pip_install", (
        ("How do I install {pkg} with pip?", ""),
        ("What's the pip command to install {pkg}?", "reworded"),
        ("How can I use pip to install {pkg}?", "reworded"),
        ("Installing {pkg} via pip: how do I do it?", "reordered")),
      one("pkg", "numpy", "pandas", "requests", "flask", "scikit-learn"),
      (variant("negation", "How do I install {pkg} without pip?", "How can I install {pkg} without using pip?"),
       Swap("pkg", "entity"))),
    F("euro_countries", (
        ("Which countries use the {currency}?", ""),
        ("What countries have the {currency} as their currency?", "reworded"),
        ("List the countries that use the {currency}", "reworded"),
        ("Which nations have adopted the {currency}?", "synonyms")),
      one("currency", "euro", "US dollar", "Swiss franc"),
      (variant("negation", "Which countries don't use the {currency}?",
               "List the countries that do not use the {currency}", "Which nations have not adopted the {currency}?"),
       Swap("currency", "entity"))),
    F("tech_advantages", (
        ("What are the advantages of {tech}?", ""),
        ("What are the benefits of using {tech}?", "synonyms"),
        ("Why should I use {tech}?", "question_form"),
        ("What are {tech}'s pros?", "synonyms"),
        ("What's good about {tech}?", "reworded")),
      one("tech", "Kubernetes", "GraphQL", "microservices", "TypeScript", "serverless computing"),
      (variant("antonym", "What are the disadvantages of {tech}?", "What are the drawbacks of using {tech}?",
               "What are {tech}'s cons?", "What's bad about {tech}?"),
       Swap("tech", "entity"))),
    F("font_size", (
        ("How do I increase the font size in {app}?", ""),
        ("How can I make the text bigger in {app}?", "reworded"),
        ("In {app}, how do I increase the font size?", "reordered"),
        ("What's the way to make fonts larger in {app}?", "synonyms")),
      one("app", "VS Code", "Chrome", "Microsoft Word", "Outlook", "Slack"),
      (variant("antonym", "How do I decrease the font size in {app}?", "How can I make the text smaller in {app}?",
               "In {app}, how do I reduce the font size?"),
       Swap("app", "entity"))),
    F("fastest_route", (
        ("What's the fastest way to get from {a} to {b}?", ""),
        ("How do I get from {a} to {b} as quickly as possible?", "reworded"),
        ("Quickest route from {a} to {b}?", "synonyms"),
        ("What is the quickest way to travel from {a} to {b}?", "synonyms")),
      rows("a b", ("Paris", "London"), ("Tokyo", "Osaka"), ("Boston", "New York"), ("Berlin", "Prague"),
           ("Madrid", "Lisbon")),
      (Reverse("a", "b"), variant("attribute", "What's the cheapest way to get from {a} to {b}?",
                                  "How do I get from {a} to {b} as cheaply as possible?"))),
    F("array_max", (
        ("How do I find the maximum value in a {plang} array?", ""),
        ("How can I get the largest element of an array in {plang}?", "synonyms"),
        ("What's the way to get the max of an array in {plang}?", "synonyms"),
        ("In {plang}, how do I find an array's biggest number?", "reordered")),
      one("plang", "JavaScript", "Java", "Python", "C#", "Rust"),
      (variant("antonym", "How do I find the minimum value in a {plang} array?",
               "How can I get the smallest element of an array in {plang}?"),
       Swap("plang", "programming_language"))),
    F("eat_before", (
        ("What should I eat before a {activity}?", ""),
        ("What's a good meal to have before a {activity}?", "reworded"),
        ("Which foods are best to eat before a {activity}?", "reworded"),
        ("Before a {activity}, what should I eat?", "reordered")),
      one("activity", "marathon", "long run", "job interview", "exam", "workout", "swim"),
      (variant("antonym", "What should I eat after a {activity}?", "After a {activity}, what should I eat?"),
       Swap("activity", "attribute"))),
    F("weather_today", (
        ("What's the weather like in {city} today?", ""),
        ("How is the weather in {city} today?", "question_form"),
        ("Today's weather in {city}?", "reordered"),
        ("What is the weather like in {city} today", "contractions")),
      one("city", "Lisbon", "Chicago", "Seoul", "Nairobi", "Vancouver", "Melbourne"),
      (Swap("city", "entity"), variant("antonym", "What will the weather be like in {city} tomorrow?",
                                       "How was the weather in {city} yesterday?"))),
    F("oven_time", (
        ("How long should I bake {food} at {temp} degrees?", ""),
        ("At {temp} degrees, how long do I bake {food}?", "reordered"),
        ("What's the baking time for {food} at {temp} degrees?", "reworded"),
        ("How many minutes does {food} need in the oven at {temp} degrees?", "reworded")),
      rows("food temp", ("chicken thighs", "200"), ("salmon", "180"), ("potatoes", "220"), ("a whole chicken", "190")),
      (Bump("temp", "number", (-20, 10, 20, 30)), Swap("food", "entity"))),
    F("max_dose", (
        ("What is the maximum daily dose of {drug} for adults?", ""),
        ("How much {drug} can an adult take in a day at most?", "reworded"),
        ("For adults, what's the highest safe daily amount of {drug}?", "reordered"),
        ("What's the most {drug} an adult can safely take per day?", "reworded")),
      one("drug", "ibuprofen", "acetaminophen", "aspirin", "naproxen"),
      (variant("attribute", "What is the maximum daily dose of {drug} for children?",
               "How much {drug} can a child take in a day at most?"),
       Swap("drug", "entity"))),
    F("book_author", (
        ("Who wrote {book}?", ""),
        ("Who is the author of {book}?", "question_form"),
        ("{book} was written by whom?", "reordered"),
        ("Which author wrote {book}?", "question_form")),
      one("book", "Pride and Prejudice", "War and Peace", "The Old Man and the Sea", "Crime and Punishment",
          "One Hundred Years of Solitude", "Brave New World"),
      (Swap("book", "entity"),)),
    F("person_born", (
        ("When was {person} born?", ""),
        ("What is {person}'s date of birth?", "question_form"),
        ("In which year was {person} born?", "question_form"),
        ("What's the birth date of {person}?", "reworded")),
      one("person", "Albert Einstein", "Marie Curie", "Nelson Mandela", "Frida Kahlo", "Alan Turing"),
      (variant("question", "Where was {person} born?", "Who was {person} born to?"),
       variant("antonym", "When did {person} die?", "What is {person}'s date of death?"),
       Swap("person", "entity"))),
    F("company_founded", (
        ("When was {company} founded?", ""),
        ("What year was {company} founded?", "question_form"),
        ("In which year was {company} established?", "synonyms"),
        ("{company} was founded in what year?", "reordered")),
      one("company", "Google", "Microsoft", "Netflix", "Tesla", "Nintendo", "Spotify"),
      (variant("question", "Where was {company} founded?", "Who founded {company}?"), Swap("company", "entity"),
       variant("attribute", "How many employees does {company} have?", "How much is {company} worth?"))),
    F("ticket_status", (
        ("What's the status of ticket {ticket}?", ""),
        ("Any update on {ticket}?", "reworded"),
        ("Where are we on ticket {ticket}?", "reworded"),
        ("Give me the latest on ticket {ticket}", "reworded")),
      one("ticket", "PROJ-1423", "OPS-77", "BUG-3091", "API-512"),
      (Bump("ticket", "identifier"),)),
    F("flight_status", (
        ("Is flight {flight} on time?", ""),
        ("What's the current status of flight {flight}?", "question_form"),
        ("Flight {flight}: is it running on time?", "reordered"),
        ("Is flight {flight} departing on schedule?", "synonyms")),
      one("flight", "BA117", "LH400", "UA901", "AF1280", "DL45"),
      (Bump("flight", "identifier"), variant("attribute", "Which gate does flight {flight} leave from?",
                                                   "What terminal does flight {flight} depart from?"))),
    F("function_meaning", (
        ("What does `{fn}` do?", ""),
        ("Explain what {fn} does.", "reworded"),
        ("What is the purpose of `{fn}`?", "question_form"),
        ("Can you tell me what {fn} is for?", "reworded")),
      one("fn", "os.path.join", "os.path.split", "json.loads", "json.dumps", "itertools.chain", "str.split"),
      (Swap("fn", "code"),)),
    F("undefined_variable", (
        ("Why is `{var}` undefined in my JavaScript code?", ""),
        ("My JavaScript says {var} is undefined, why?", "reordered"),
        ("Why does JavaScript tell me that {var} is undefined?", "reworded"),
        ("In my JavaScript, why is {var} undefined?", "reordered")),
      one("var", "userId", "userID", "orderTotal", "cartItems", "isLoggedIn"),
      (Swap("var", "code"),)),
    F("error_meaning", (
        ("What does the error '{err}' mean?", ""),
        ("I'm getting '{err}', what does it mean?", "reworded"),
        ("Explain the error message \"{err}\"", "reworded"),
        ("What is the meaning of the error '{err}'?", "question_form")),
      one("err", "permission denied", "connection refused", "file not found", "segmentation fault",
          "out of memory"),
      (Swap("err", "quoted"), variant("attribute", "How do I fix the error '{err}'?",
                                        "What should I do about the error '{err}'?"))),
    F("summarize_url", (
        ("Summarize the article at {url}", ""),
        ("Give me a summary of {url}", "reworded"),
        ("What is the article at {url} about?", "question_form"),
        ("Can you summarize this page: {url}", "reworded")),
      one("url", "https://example.com/blog/2023/rust-async", "https://news.example.org/a/41827",
          "https://example.com/docs/getting-started", "https://blog.example.net/posts/118"),
      (Swap("url", "url"), Bump("url", "url", (1, 2, 3)))),
    F("reply_email", (
        ("Draft a reply to {email} about the late invoice.", ""),
        ("Write a response to {email} regarding the late invoice", "synonyms"),
        ("Help me reply to {email} about their late invoice", "reworded"),
        ("About the late invoice: draft a reply to {email}", "reordered")),
      one("email", "anna@example.com", "ben.k@example.org", "billing@acme.io", "support@shop.example"),
      (Swap("email", "email"),)),
    F("square_root", (
        ("What is the square root of {n}?", ""),
        ("What's the square root of {n}?", "contractions"),
        ("Calculate the square root of {n}.", "reworded"),
        ("Find the square root of {n} for me", "reworded")),
      one("n", "144", "2", "50", "1764", "0.25"),
      (Bump("n", "number"), variant("operator", "What is the cube root of {n}?", "What is {n} squared?"))),
    F("percent_of", (
        ("What is {p}% of {n}?", ""),
        ("What's {p} percent of {n}?", "synonyms"),
        ("Calculate {p}% of {n}", "reworded"),
        ("How much is {p} percent of {n}?", "question_form")),
      rows("p n", ("15", "80"), ("20", "250"), ("7.5", "1200"), ("33", "900")),
      (Bump("p", "number", (-5, 1, 5)), Bump("n", "number", (-10, 10, 100)))),
    F("weekday_of_date", (
        ("What day of the week was {month} {day}, {year}?", ""),
        ("Which weekday was {month} {day}, {year}?", "synonyms"),
        ("On what day of the week did {month} {day}, {year} fall?", "question_form"),
        ("{month} {day}, {year} was which day of the week?", "reordered")),
      rows("month day year", ("July", "20", "1969"), ("November", "9", "1989"), ("January", "1", "2000"),
           ("March", "14", "2015")),
      (Bump("year", "year", (-1, 1, 10)), Swap("month", "entity"))),
    F("learn_language", (
        ("How long does it take to learn {lang}?", ""),
        ("How much time do I need to learn {lang}?", "reworded"),
        ("What's the typical time it takes to learn {lang}?", "reworded"),
        ("Learning {lang}: how long does it take?", "reordered")),
      one("lang", "Japanese", "Spanish", "Korean", "German", "Arabic", "Portuguese"),
      (Swap("lang", "language"), variant("attribute", "How hard is it to learn {lang}?",
                                           "How difficult is {lang} to learn?"))),
    F("language_speed", (
        ("Is {p1} faster than {p2}?", ""),
        ("Does {p1} run faster than {p2}?", "reworded"),
        ("Is {p1} quicker than {p2}?", "synonyms"),
        ("Would {p1} be faster than {p2}?", "question_form")),
      rows("p1 p2", ("Rust", "Go"), ("Python", "Java"), ("C++", "Java"), ("JavaScript", "Python")),
      (Reverse("p1", "p2"), variant("antonym", "Is {p1} slower than {p2}?", "Does {p1} run slower than {p2}?"))),
    F("list_empty", (
        ("How do I check if a list is empty in {plang}?", ""),
        ("What's the way to test whether a list is empty in {plang}?", "reworded"),
        ("In {plang}, how can I tell if a list is empty?", "reordered"),
        ("In {plang}, how can I tell if a list has no elements?", "reworded")),
      one("plang", "Python", "Java", "Kotlin", "Haskell"),
      (variant("negation", "How do I check if a list is not empty in {plang}?",
               "In {plang}, how can I tell if a list is not empty?"),
       Swap("plang", "programming_language"))),
    F("python_version", (
        ("What's new in Python {ver}?", ""),
        ("What features were added in Python {ver}?", "reworded"),
        ("What changed in Python {ver}?", "reworded"),
        ("Python {ver}: what are the new features?", "reordered")),
      one("ver", "3.10", "3.11", "3.12", "3.13", "2.7"),
      (Swap("ver", "number"),)),
    F("largest_country", (
        ("What is the largest country in {continent}?", ""),
        ("Which country in {continent} is the biggest?", "synonyms"),
        ("What's the biggest country by area in {continent}?", "synonyms"),
        ("In {continent}, which country is the largest?", "reordered")),
      one("continent", "Africa", "Europe", "Asia", "South America", "Oceania"),
      (variant("antonym", "What is the smallest country in {continent}?",
               "Which country in {continent} is the smallest?"),
       Swap("continent", "entity"))),
    F("boiling_point", (
        ("What is the boiling point of {substance}?", ""),
        ("At what temperature does {substance} boil?", "question_form"),
        ("What temperature does {substance} boil at?", "question_form"),
        ("What's {substance}'s boiling point?", "reordered")),
      one("substance", "water", "ethanol", "nitrogen", "acetone", "olive oil"),
      (variant("antonym", "What is the freezing point of {substance}?", "At what temperature does {substance} freeze?"),
       Swap("substance", "entity"))),
    F("animal_legs", (
        ("How many legs does a {animal} have?", ""),
        ("What's the number of legs on a {animal}?", "reworded"),
        ("A {animal} has how many legs?", "reordered"),
        ("How many legs has a {animal} got?", "reworded")),
      one("animal", "spider", "centipede", "crab", "ant", "lobster"),
      (Swap("animal", "entity"), variant("attribute", "How many eyes does a {animal} have?",
                                         "How many eyes has a {animal} got?"))),
    F("baking_substitute", (
        ("Can I use {a} instead of {b} when baking?", ""),
        ("When baking, can I use {a} instead of {b}?", "reordered"),
        ("Is it OK to use {a} instead of {b} in baking?", "reworded"),
        ("Can {a} be used instead of {b} in baking?", "question_form")),
      rows("a b", ("butter", "oil"), ("honey", "sugar"), ("yogurt", "sour cream"), ("baking soda", "baking powder")),
      (Reverse("a", "b"),)),
    F("string_to_int", (
        ("How do I convert a string to an integer in {plang}?", ""),
        ("How can I turn a string into an int in {plang}?", "synonyms"),
        ("In {plang}, how do I convert a string to an integer?", "reordered"),
        ("What's the way to parse a string as an integer in {plang}?", "reworded")),
      one("plang", "Python", "Java", "C#", "Go", "Rust"),
      (variant("direction", "How do I convert an integer to a string in {plang}?",
               "In {plang}, how do I convert an integer to a string?"),
       Swap("plang", "programming_language"))),
    F("file_format", (
        ("How do I convert {f1} to {f2}?", ""),
        ("What's the easiest way to turn {f1} into {f2}?", "reworded"),
        ("How can I change a {f1} file into {f2}?", "reworded"),
        ("{f1} to {f2} conversion: how do I do it?", "reordered")),
      rows("f1 f2", ("JSON", "CSV"), ("XML", "JSON"), ("YAML", "JSON"), ("PDF", "Word"), ("Markdown", "HTML")),
      (Reverse("f1", "f2"), Swap("f2", "entity"))),
    F("encrypt_file", (
        ("How do I encrypt a file with {tool}?", ""),
        ("What's the command to encrypt a file using {tool}?", "reworded"),
        ("Using {tool}, how can I encrypt a file?", "reordered"),
        ("How can I use {tool} to encrypt a file?", "reworded")),
      one("tool", "GPG", "OpenSSL", "7-Zip", "VeraCrypt"),
      (variant("antonym", "How do I decrypt a file with {tool}?", "Using {tool}, how can I decrypt a file?"),
       Swap("tool", "entity"))),
    F("undo_commits", (
        ("How do I undo the last {n} commits in Git?", ""),
        ("How can I revert my last {n} commits with Git?", "synonyms"),
        ("What's the Git command to undo the previous {n} commits?", "reworded"),
        ("In Git, how do I undo my last {n} commits?", "reordered")),
      one("n", "2", "3", "5", "four", "ten"),
      (Swap("n", "number"), variant("attribute", "How do I push my last {n} commits in Git?",
                                    "How can I squash my last {n} commits with Git?"))),
    F("docker_cleanup", (
        ("How do I remove all stopped containers in Docker?", ""),
        ("What's the Docker command to delete every stopped container?", "synonyms"),
        ("How can I clean up stopped Docker containers?", "reworded"),
        ("Docker: how do I get rid of all stopped containers?", "reordered")),
      ({},),
      (variant("antonym", "How do I remove all running containers in Docker?",
               "What's the Docker command to delete every running container?"),
       variant("negation", "How do I remove all containers in Docker except the stopped ones?",
               "How can I clean up Docker containers that are not stopped?"))),
    F("local_time", (
        ("What time is it in {city} right now?", ""),
        ("What's the current time in {city}?", "reworded"),
        ("Current local time in {city}?", "reworded"),
        ("Tell me the time in {city} now", "reworded")),
      one("city", "Tokyo", "Osaka", "Sydney", "Denver", "Cairo", "Dublin"),
      (Swap("city", "entity"), variant("attribute", "What is the weather in {city} right now?",
                                         "What is the current temperature in {city}?"))),
    F("nobel_prize", (
        ("Who won the Nobel Prize in {field} in {year}?", ""),
        ("Who received the {year} Nobel Prize in {field}?", "reordered"),
        ("Which person won the Nobel Prize in {field} in {year}?", "question_form"),
        ("In {year}, who was awarded the Nobel Prize in {field}?", "reordered")),
      rows("field year", ("Physics", "1921"), ("Chemistry", "1911"), ("Literature", "2016"), ("Medicine", "1945")),
      (Swap("field", "entity"), Bump("year", "year", (-1, 1, 2)))),
    F("company_revenue", (
        ("What was {company}'s revenue in {year}?", ""),
        ("How much revenue did {company} make in {year}?", "reworded"),
        ("{company} revenue for {year}?", "reworded"),
        ("In {year}, what were {company}'s total revenues?", "reordered")),
      rows("company year", ("Apple", "2015"), ("Netflix", "2020"), ("Nvidia", "2022"), ("IKEA", "2019")),
      (Bump("year", "year", (-2, -1, 1)), variant("attribute", "What was {company}'s profit in {year}?",
                                                 "How many employees did {company} have in {year}?"))),
    F("calories", (
        ("How many calories are in {n} {food}?", ""),
        ("What's the calorie count of {n} {food}?", "reworded"),
        ("Calories in {n} {food}?", "reworded"),
        ("{n} {food}: how many calories is that?", "reordered")),
      rows("n food", ("2", "eggs"), ("three", "bananas"), ("4", "slices of bread"), ("5", "apples")),
      (Swap("n", "number"), Swap("food", "entity"))),
    F("disease_symptoms", (
        ("What are the symptoms of {disease}?", ""),
        ("What symptoms does {disease} cause?", "reordered"),
        ("What are the signs of {disease}?", "synonyms"),
        ("Which symptoms are typical of {disease}?", "reworded")),
      one("disease", "diabetes", "the flu", "Lyme disease", "anemia", "COVID-19"),
      (variant("attribute", "What are the treatments for {disease}?", "How is {disease} treated?"),
       Swap("disease", "entity"))),
    F("visa_travel", (
        ("Do I need a visa to travel from {c1} to {c2}?", ""),
        ("Is a visa required to go from {c1} to {c2}?", "reworded"),
        ("Traveling from {c1} to {c2}: do I need a visa?", "reordered"),
        ("Will I need a visa for a trip from {c1} to {c2}?", "reworded")),
      rows("c1 c2", ("Canada", "Japan"), ("India", "France"), ("Brazil", "Portugal"), ("Kenya", "Germany")),
      (Reverse("c1", "c2"), Swap("c2", "entity"))),
    F("planet_rings", (
        ("Which planets have rings?", ""),
        ("What planets in our solar system have rings?", "reworded"),
        ("Which of the planets have rings?", "reworded"),
        ("Name the planets that have rings", "reworded")),
      ({},),
      (variant("negation", "Which planets have no rings?", "Which planets do not have rings?",
               "Name the planets without rings"),
       variant("attribute", "Which planets have moons?", "Which planets have an atmosphere?"))),
    F("enable_feature", (
        ("How do I enable {feature} in {app}?", ""),
        ("How can I turn on {feature} in {app}?", "synonyms"),
        ("In {app}, how do I switch on {feature}?", "reordered"),
        ("What are the steps to enable {feature} in {app}?", "reworded")),
      rows("feature app", ("dark mode", "Windows"), ("two-factor authentication", "Gmail"),
           ("autosave", "Excel"), ("spell check", "Chrome")),
      (variant("antonym", "How do I disable {feature} in {app}?", "How can I turn off {feature} in {app}?"),
       Swap("app", "entity"))),
    F("buy_asset", (
        ("Is now a good time to buy {asset}?", ""),
        ("Should I buy {asset} right now?", "reworded"),
        ("Is it smart to purchase {asset} at the moment?", "synonyms"),
        ("Right now, is it a good time to buy {asset}?", "reordered")),
      one("asset", "gold", "Bitcoin", "Tesla stock", "government bonds"),
      (variant("antonym", "Is now a good time to sell {asset}?", "Should I sell {asset} right now?"),
       Swap("asset", "entity"))),
    F("tcp_udp", (
        ("What is the difference between {a} and {b}?", ""),
        ("How does {a} differ from {b}?", "reworded"),
        ("{a} vs {b}: what's the difference?", "reworded"),
        ("How are {a} and {b} different?", "question_form"),
        ("What is the difference between {b} and {a}?", "reordered")),
      rows("a b", ("TCP", "UDP"), ("RAM", "ROM"), ("HTTP", "HTTPS"), ("Git", "GitHub")),
      (Swap("b", "entity"), variant("attribute", "What are the similarities between {a} and {b}?",
                                      "How are {a} and {b} alike?"))),
    F("timezone_meeting", (
        ("If it's {time} in {c1}, what time is it in {c2}?", ""),
        ("When it is {time} in {c1}, what's the time in {c2}?", "reworded"),
        ("What time is it in {c2} when it's {time} in {c1}?", "reordered"),
        ("{time} in {c1} is what time in {c2}?", "reordered")),
      rows("time c1 c2", ("9am", "London", "New York"), ("3pm", "Tokyo", "Paris"), ("noon", "Sydney", "Chicago")),
      (Reverse("c1", "c2"), Swap("c2", "entity"))),
    F("exercise_loss", (
        ("How many calories does {n} minutes of {sport} burn?", ""),
        ("How many calories do I burn doing {sport} for {n} minutes?", "reordered"),
        ("Calories burned by {n} minutes of {sport}?", "reworded"),
        ("If I do {sport} for {n} minutes, how many calories will I burn?", "reordered")),
      rows("n sport", ("30", "running"), ("45", "swimming"), ("60", "cycling"), ("20", "jumping rope")),
      (Bump("n", "number", (-10, 15, 30)), Swap("sport", "entity"))),
    F("rent_vs_buy", (
        ("Is it better to rent or buy a house in {city}?", ""),
        ("Should I rent or buy a home in {city}?", "synonyms"),
        ("In {city}, is renting or buying a house the better choice?", "reordered"),
        ("Renting versus buying a house in {city}: which is better?", "reworded")),
      one("city", "London", "Toronto", "Berlin", "Miami"),
      (Swap("city", "entity"), variant("attribute", "Is it better to rent or buy a car in {city}?",
                                       "Should I rent or buy a car in {city}?"))),
    F("foods_containing", (
        ("Which foods contain {x}?", ""),
        ("What foods have {x} in them?", "reworded"),
        ("List the foods that contain {x}", "reworded"),
        ("Which common foods contain {x}?", "reworded")),
      one("x", "gluten", "lactose", "caffeine", "peanuts", "soy"),
      (variant("negation", "Which foods do not contain {x}?", "List the foods that contain no {x}",
               "What foods don't have {x} in them?"),
       Swap("x", "entity"))),
    F("device_wont_start", (
        ("Why won't my {device} turn on?", ""),
        ("My {device} won't turn on, why?", "reordered"),
        ("Why is my {device} not turning on?", "reworded"),
        ("What could make my {device} not turn on?", "reworded")),
      one("device", "laptop", "iPhone", "TV", "PlayStation", "printer"),
      (variant("antonym", "Why won't my {device} turn off?", "My {device} won't turn off, why?"),
       Swap("device", "entity"))),
    F("pregnancy_food", (
        ("What foods can I eat during pregnancy?", ""),
        ("Which foods are OK to eat while pregnant?", "reworded"),
        ("During pregnancy, what foods am I allowed to eat?", "reordered"),
        ("What's safe to eat when you're pregnant?", "reworded")),
      ({},),
      (variant("negation", "What foods can't I eat during pregnancy?",
               "During pregnancy, what foods am I not allowed to eat?", "What's not safe to eat when you're pregnant?"),
       variant("attribute", "What foods can I eat while breastfeeding?", "What drinks can I have during pregnancy?"))),
    F("sql_null", (
        ("How do I select rows where {col} is null in SQL?", ""),
        ("SQL: how can I get the rows whose {col} is NULL?", "reordered"),
        ("Write a SQL query for the rows with a null {col}", "reworded"),
        ("In SQL, how do I find rows where {col} is null?", "reordered")),
      one("col", "email", "deleted_at", "price", "manager_id"),
      (variant("negation", "How do I select rows where {col} is not null in SQL?",
               "In SQL, how do I find rows where {col} is not null?"),
       Swap("col", "code"))),
    F("multiply", (
        ("What is {a} times {b}?", ""),
        ("What's {a} multiplied by {b}?", "synonyms"),
        ("Multiply {a} by {b}", "reworded"),
        ("Calculate {a} * {b}", "reworded"),
        ("What do you get if you multiply {a} by {b}?", "question_form")),
      rows("a b", ("17", "23"), ("12", "12"), ("250", "4"), ("3.5", "8"), ("99", "11")),
      (variant("operator", "What is {a} divided by {b}?", "What's {a} plus {b}?", "Calculate {a} / {b}",
               "What is {a} minus {b}?"),
       Bump("b", "number", (-1, 1, 3)))),
    F("hotel_search", (
        ("Find hotels in {city} with a pool and free parking.", ""),
        ("Show me {city} hotels that have a pool and free parking", "reordered"),
        ("Which hotels in {city} offer a pool and free parking?", "question_form"),
        ("I'm looking for a hotel in {city} with a pool and free parking", "reworded")),
      one("city", "Lisbon", "Denver", "Bangkok", "Dublin"),
      (variant("operator", "Find hotels in {city} with a pool or free parking.",
               "Which hotels in {city} offer a pool or free parking?"),
       Swap("city", "entity"))),
    F("haiku_language", (
        ("Write a haiku about autumn in {lang}.", ""),
        ("Compose an autumn haiku in {lang}", "reworded"),
        ("Can you write me a haiku in {lang} about autumn?", "reordered"),
        ("I'd like a haiku about autumn, written in {lang}", "reworded")),
      one("lang", "French", "Spanish", "German", "Japanese", "Italian"),
      (Swap("lang", "language"), variant("antonym", "Write a haiku about spring in {lang}.",
                                         "Compose a spring haiku in {lang}"))),
    F("us_inflation", (
        ("What was the US inflation rate in {year}?", ""),
        ("How high was inflation in the US in {year}?", "reworded"),
        ("In {year}, what was the inflation rate in the US?", "reordered"),
        ("US inflation in {year}: what was the rate?", "reordered")),
      one("year", "1980", "2008", "2021", "2022", "1974"),
      (Swap("year", "year"), variant("attribute", "What was the US unemployment rate in {year}?",
                                     "How high was unemployment in the US in {year}?"))),
    F("best_picture", (
        ("Which film won Best Picture at the {year} Oscars?", ""),
        ("What won the Oscar for Best Picture in {year}?", "reworded"),
        ("Best Picture winner at the {year} Oscars?", "reworded"),
        ("At the {year} Oscars, which movie won Best Picture?", "reordered")),
      one("year", "1995", "2004", "2010", "2017", "2020"),
      (Swap("year", "year"),)),
    F("units_in", (
        ("How many {small} are in a {big}?", ""),
        ("How many {small} make up one {big}?", "reworded"),
        ("A {big} is how many {small}?", "reordered"),
        ("What's the number of {small} in a {big}?", "reworded")),
      rows("small big", ("ounces", "pound"), ("inches", "foot"), ("centimeters", "meter"), ("cups", "gallon"),
           ("milliliters", "liter")),
      (Swap("small", "unit"), Swap("big", "unit"))),
    F("pronounce", (
        ("How do I pronounce '{word}'?", ""),
        ("What's the correct pronunciation of \"{word}\"?", "reworded"),
        ("How is '{word}' pronounced?", "question_form"),
        ("Can you tell me how to pronounce '{word}'?", "reworded")),
      one("word", "quinoa", "gnocchi", "Worcestershire", "epitome", "niche"),
      (Swap("word", "quoted"),)),
    F("git_command", (
        ("What does `git {cmd}` do?", ""),
        ("Explain the `git {cmd}` command", "reworded"),
        ("What is `git {cmd}` used for?", "question_form"),
        ("Can you explain what `git {cmd}` does?", "reworded")),
      one("cmd", "rebase", "merge", "stash", "cherry-pick", "reset --hard"),
      (Swap("cmd", "code"),)),
    F("newsletter", (
        ("Unsubscribe {email} from the newsletter.", ""),
        ("Please remove {email} from the newsletter list", "reworded"),
        ("Take {email} off the newsletter mailing list", "reworded"),
        ("Can you unsubscribe {email} from the newsletter?", "question_form")),
      one("email", "dana@example.com", "m.ortiz@example.org", "team@startup.example", "j.doe@mail.example"),
      (Swap("email", "email"), variant("antonym", "Subscribe {email} to the newsletter.",
                                       "Can you subscribe {email} to the newsletter?"))),
    F("site_down", (
        ("Is {url} down right now?", ""),
        ("Is {url} down for everyone or just me?", "reworded"),
        ("Can you check whether {url} is down?", "question_form"),
        ("Right now, is {url} down?", "reordered")),
      one("url", "https://status.example.com", "https://api.example.org/v2/health",
          "http://intranet.example.local:8080", "https://shop.example.net/store/42"),
      (Swap("url", "url"), Bump("url", "url", (1, 2)))),
    F("device_specs", (
        ("What are the specs of the {model}?", ""),
        ("What specifications does the {model} have?", "synonyms"),
        ("Tell me the {model}'s specs", "reworded"),
        ("{model} specs?", "reworded")),
      one("model", "iPhone 15", "Pixel 8", "Galaxy S24", "ThinkPad X1", "MacBook Air M2"),
      (Bump("model", "identifier", (-1, 1, 2)),)),
    F("garbage_collection", (
        ("Which programming languages have garbage collection?", ""),
        ("What programming languages use garbage collection?", "reworded"),
        ("List programming languages with a garbage collector", "reworded"),
        ("Which programming languages manage memory with garbage collection?", "reworded")),
      ({},),
      (variant("negation", "Which programming languages do not have garbage collection?",
               "List programming languages without a garbage collector",
               "What programming languages don't use garbage collection?"),)),
    F("lose_weight", (
        ("How can I lose weight without exercising?", ""),
        ("What's the best way to lose weight without exercise?", "reworded"),
        ("Is it possible to lose weight without working out?", "question_form"),
        ("Tips for losing weight without exercising", "reworded")),
      ({},),
      (variant("negation", "How can I lose weight by exercising?", "What's the best way to lose weight with exercise?"),
       variant("antonym", "How can I gain weight without exercising?", "Tips for gaining weight without exercise"))),
)
