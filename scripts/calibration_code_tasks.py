"""The code-generation families of the calibration prompt set (scripts/calibration_prompts.py).

Each task is a small Python function to write: its signature, what it must do, a reference solution
(written as an answer would be), and an oracle: a second, independent implementation (usually builtins)
that computes the expected value of every test case. The item's tests are `assert` statements built from
the oracle, and the unit tests run the reference against them, so a task whose reference, oracle and
wording disagree cannot ship. Some families draw a parameter (a divisor, a shift, a chunk size) by the seed.
The basic_* and two_numbers families are the easy end (one return statement, builtins allowed): a 135M
drafter writes about four in ten of them correctly, and almost none of the rest.
"""

from __future__ import annotations

import calendar
import copy
import functools
import heapq
import itertools
import math
import operator
import random
import re
import statistics
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from textwrap import dedent
from typing import Any

SHORT = 160  # max_tokens for a few-line function
LONG = 192  # for one that needs a loop with cases or a table


@dataclass(frozen=True, slots=True)
class CodeTask:
    signature: str  # "fib(n)": the entry point and its parameters, as the prompt shows them
    spec: str  # what the function does, a clause that ends with a period
    reference: str  # a solution's source, which must pass the tests
    oracle: Callable[..., Any]  # an independent implementation that computes the expected values
    cases: tuple[tuple[Any, ...], ...]  # the arguments of each test
    max_tokens: int = SHORT

    @property
    def entry_point(self) -> str:
        return self.signature.split("(", 1)[0]

    def tests(self) -> list[str]:
        """One assert per case; floats compared within 1e-6, everything else with ==."""
        out = []
        for args in self.cases:
            call = f"{self.entry_point}({', '.join(repr(a) for a in args)})"
            expected = self.oracle(*copy.deepcopy(args))
            if isinstance(expected, float):
                out.append(f"assert abs({call} - {round(expected, 9)!r}) < 1e-6")
            else:
                out.append(f"assert {call} == {expected!r}")
        return out


def src(text: str) -> str:
    return dedent(text).strip() + "\n"


def fixed(*tasks: CodeTask) -> Callable[[random.Random], list[CodeTask]]:
    """A family without drawn parameters."""
    return lambda _rng: list(tasks)


def _multiple_of(rng: random.Random) -> list[CodeTask]:
    def task(k: int) -> CodeTask:
        return CodeTask(f"is_multiple_of_{k}(n)",
                        f"returns True if the integer n is divisible by {k}, and False otherwise.",
                        src(f"""
                            def is_multiple_of_{k}(n):
                                return n % {k} == 0
                        """), lambda n: (n // k) * k == n,
                        ((0,), (k,), (7 * k,), (k + 1,), (-2 * k,), (13 * k + 2,), (100,)))
    return [task(k) for k in sorted(rng.sample([3, 4, 6, 7, 9, 11, 13], 4))]


def _add_to_each(rng: random.Random) -> list[CodeTask]:
    def task(k: int) -> CodeTask:
        return CodeTask(f"add_{k}(nums)",
                        f"takes a list of numbers and returns a new list with {k} added to every element.",
                        src(f"""
                            def add_{k}(nums):
                                return [x + {k} for x in nums]
                        """), lambda nums: list(map(lambda x: x + k, nums)),
                        (([1, 2, 3],), ([],), ([-k, 0, 7],)))
    return [task(k) for k in sorted(rng.sample([2, 3, 5, 10, 100], 3))]


def _count_above(rng: random.Random) -> list[CodeTask]:
    def task(k: int) -> CodeTask:
        return CodeTask(f"count_above_{k}(nums)",
                        f"returns how many numbers in the list nums are strictly greater than {k}.",
                        src(f"""
                            def count_above_{k}(nums):
                                count = 0
                                for x in nums:
                                    if x > {k}:
                                        count += 1
                                return count
                        """), lambda nums: len([x for x in nums if x > k]),
                        (([1, k, k + 1, k + 10],), ([],), ([k, k, k],), ([-5, 100, k - 1, k + 2],)))
    return [task(k) for k in sorted(rng.sample([0, 5, 10, 50], 3))]


_AGGREGATES = (
    CodeTask("list_sum(nums)", "returns the sum of a list of numbers without using the built-in sum().",
             src("""
                 def list_sum(nums):
                     total = 0
                     for x in nums:
                         total += x
                     return total
             """), sum,
             (([1, 2, 3],), ([],), ([-4, 4, 10],), ([7],))),
    CodeTask("list_product(nums)", "returns the product of a list of numbers, and 1 for an empty list.",
             src("""
                 def list_product(nums):
                     result = 1
                     for x in nums:
                         result *= x
                     return result
             """), math.prod, (([2, 3, 4],), ([],), ([5, -1],), ([0, 9],))),
    CodeTask("largest(nums)", "returns the largest number in a non-empty list without using max().",
             src("""
                 def largest(nums):
                     best = nums[0]
                     for x in nums[1:]:
                         if x > best:
                             best = x
                     return best
             """), max, (([3, 9, 2],), ([-5, -2, -9],), ([4],), ([1, 1, 1],))),
    CodeTask("smallest(nums)", "returns the smallest number in a non-empty list without using min().",
             src("""
                 def smallest(nums):
                     best = nums[0]
                     for x in nums[1:]:
                         if x < best:
                             best = x
                     return best
             """), min, (([3, 9, 2],), ([-5, -2, -9],), ([4],), ([8, 8],))),
)

_REVERSE = (
    CodeTask("reverse_string(s)", "returns the string s reversed.",
             src("""
                 def reverse_string(s):
                     return s[::-1]
             """), lambda s: "".join(reversed(s)), (("hello",), ("",), ("ab c",))),
    CodeTask("reverse_words(sentence)", "returns the words of sentence in reverse order, joined by single spaces.",
             src("""
                 def reverse_words(sentence):
                     return " ".join(sentence.split()[::-1])
             """), lambda s: " ".join(reversed(s.split())), (("one two three",), ("hello",), ("  a  b ",))),
)

_PALINDROMES = (
    CodeTask("is_palindrome(s)", "returns True if the string s reads the same forwards and backwards, "
             "and False otherwise.",
             src("""
                 def is_palindrome(s):
                     return s == s[::-1]
             """), lambda s: all(s[i] == s[-1 - i] for i in range(len(s))),
             (("racecar",), ("abca",), ("",), ("a",), ("abba",))),
    CodeTask("is_clean_palindrome(s)", "returns True if s is a palindrome when case, spaces and punctuation are "
             "ignored (only letters and digits count), and False otherwise.",
             src("""
                 def is_clean_palindrome(s):
                     kept = [c.lower() for c in s if c.isalnum()]
                     return kept == kept[::-1]
             """), lambda s: (t := "".join(filter(str.isalnum, s)).lower()) == "".join(reversed(t)),
             (("A man, a plan, a canal: Panama",), ("No lemon, no melon",), ("Hello",), ("",)), LONG),
)


def _letters(rng: random.Random) -> list[CodeTask]:
    vowels = CodeTask("count_vowels(s)", "returns how many vowels (a, e, i, o, u, in upper or lower case) "
                      "the string s contains.",
                      src("""
                          def count_vowels(s):
                              return sum(1 for c in s.lower() if c in "aeiou")
                      """), lambda s: len([c for c in s if c in "aeiouAEIOU"]),
                      (("hello",), ("AEIOU xyz",), ("",), ("rhythm",)))

    def letter(ch: str) -> CodeTask:
        return CodeTask(f"count_{ch}(s)", f"returns how many times the letter '{ch}' appears in s, ignoring case.",
                        src(f"""
                            def count_{ch}(s):
                                return s.lower().count("{ch}")
                        """), lambda s: sum(c in (ch, ch.upper()) for c in s),
                        ((f"{ch}a{ch.upper()}b{ch}",), ("",), ("xyz",), (f"{ch * 3} {ch.upper()}",)))
    return [vowels, *(letter(ch) for ch in sorted(rng.sample("bdkmnrst", 2)))]


_SUMS = (
    CodeTask("factorial(n)", "returns n! for an integer n >= 0 (0! is 1).",
             src("""
                 def factorial(n):
                     result = 1
                     for i in range(2, n + 1):
                         result *= i
                     return result
             """), math.factorial, ((0,), (1,), (5,), (10,))),
    CodeTask("sum_to(n)", "returns 1 + 2 + ... + n for an integer n >= 1, and 0 when n is 0.",
             src("""
                 def sum_to(n):
                     return sum(range(1, n + 1))
             """), lambda n: n * (n + 1) // 2, ((0,), (1,), (10,), (100,))),
    CodeTask("sum_of_squares(n)", "returns the sum of the squares of the integers from 1 to n (0 when n is 0).",
             src("""
                 def sum_of_squares(n):
                     return sum(i * i for i in range(1, n + 1))
             """), lambda n: n * (n + 1) * (2 * n + 1) // 6, ((0,), (1,), (3,), (10,))),
)


def _fib_oracle(n: int, first: int, second: int) -> int:
    a, b = first, second
    for _ in range(n):
        a, b = b, a + b
    return a


_SEQUENCES = (
    CodeTask("fib(n)", "returns the n-th Fibonacci number, where fib(0) is 0 and fib(1) is 1.",
             src("""
                 def fib(n):
                     if n < 2:
                         return n
                     prev, cur = 0, 1
                     for _ in range(n - 1):
                         prev, cur = cur, prev + cur
                     return cur
             """), lambda n: _fib_oracle(n, 0, 1), ((0,), (1,), (2,), (10,), (20,))),
    CodeTask("lucas(n)", "returns the n-th Lucas number, where lucas(0) is 2, lucas(1) is 1, and every later one is "
             "the sum of the two before it.",
             src("""
                 def lucas(n):
                     values = [2, 1]
                     while len(values) <= n:
                         values.append(values[-1] + values[-2])
                     return values[n]
             """), lambda n: _fib_oracle(n, 2, 1), ((0,), (1,), (2,), (5,), (10,))),
)


def _is_prime_oracle(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, n))


_PRIMES = (
    CodeTask("is_prime(n)", "returns True if n is a prime number and False otherwise (numbers below 2 are not prime).",
             src("""
                 def is_prime(n):
                     if n < 2:
                         return False
                     i = 2
                     while i * i <= n:
                         if n % i == 0:
                             return False
                         i += 1
                     return True
             """), _is_prime_oracle, ((-3,), (0,), (1,), (2,), (9,), (17,), (91,), (97,))),
    CodeTask("count_primes_below(n)", "returns how many prime numbers are smaller than n.",
             src("""
                 def count_primes_below(n):
                     count = 0
                     for m in range(2, n):
                         if all(m % d for d in range(2, int(m ** 0.5) + 1)):
                             count += 1
                     return count
             """), lambda n: sum(map(_is_prime_oracle, range(n))), ((0,), (2,), (3,), (10,), (30,), (100,)), LONG),
    CodeTask("next_prime(n)", "returns the smallest prime number greater than the integer n.",
             src("""
                 def next_prime(n):
                     m = max(n + 1, 2)
                     while any(m % d == 0 for d in range(2, int(m ** 0.5) + 1)):
                         m += 1
                     return m
             """), lambda n: next(m for m in itertools.count(n + 1) if _is_prime_oracle(m)),
             ((0,), (2,), (13,), (24,), (89,)), LONG),
)

_GCD_LCM = (
    CodeTask("gcd(a, b)", "returns the greatest common divisor of two positive integers without using the math module.",
             src("""
                 def gcd(a, b):
                     while b:
                         a, b = b, a % b
                     return a
             """), math.gcd, ((12, 18), (7, 13), (100, 75), (9, 9))),
    CodeTask("lcm(a, b)", "returns the least common multiple of two positive integers.",
             src("""
                 def lcm(a, b):
                     m = max(a, b)
                     while m % a or m % b:
                         m += 1
                     return m
             """), math.lcm, ((4, 6), (7, 3), (10, 10), (12, 18))),
)

_DIGITS = (
    CodeTask("sum_digits(n)", "returns the sum of the decimal digits of an integer n >= 0.",
             src("""
                 def sum_digits(n):
                     return sum(int(d) for d in str(n))
             """), lambda n: sum(n // 10 ** i % 10 for i in range(len(str(n)))), ((0,), (7,), (123,), (9999,))),
    CodeTask("count_digits(n)", "returns how many decimal digits the integer n >= 0 has (count_digits(0) is 1).",
             src("""
                 def count_digits(n):
                     return len(str(n))
             """), lambda n: 1 if n == 0 else math.floor(math.log10(n)) + 1, ((0,), (5,), (10,), (12345,))),
    CodeTask("reverse_number(n)", "returns the integer whose digits are those of the integer n >= 0 in reverse order, "
             "so 1200 gives 21.",
             src("""
                 def reverse_number(n):
                     result = 0
                     while n > 0:
                         result = result * 10 + n % 10
                         n //= 10
                     return result
             """), lambda n: int(str(n)[::-1]), ((123,), (1200,), (7,), (0,))),
    CodeTask("digital_root(n)", "repeatedly sums the decimal digits of the integer n >= 0 until a single digit "
             "remains, and returns that digit.",
             src("""
                 def digital_root(n):
                     while n >= 10:
                         n = sum(int(d) for d in str(n))
                     return n
             """), lambda n: 0 if n == 0 else 1 + (n - 1) % 9, ((0,), (9,), (38,), (123456,), (99999,))),
)

_TEMPERATURE = (
    CodeTask("celsius_to_fahrenheit(c)", "converts a temperature in degrees Celsius to degrees Fahrenheit.",
             src("""
                 def celsius_to_fahrenheit(c):
                     return c * 9 / 5 + 32
             """), lambda c: float(c) * 1.8 + 32.0, ((0,), (100,), (-40,), (37,))),
    CodeTask("fahrenheit_to_celsius(f)", "converts a temperature in degrees Fahrenheit to degrees Celsius.",
             src("""
                 def fahrenheit_to_celsius(f):
                     return (f - 32) * 5 / 9
             """), lambda f: (float(f) - 32.0) / 1.8, ((32,), (212,), (-40,), (98.6,))),
)


def _fizzbuzz(rng: random.Random) -> list[CodeTask]:
    def task(a: int, b: int) -> CodeTask:
        name = "fizzbuzz" if (a, b) == (3, 5) else f"fizzbuzz_{a}_{b}"
        return CodeTask(f"{name}(n)", f"returns 'Fizz' if n is divisible by {a}, 'Buzz' if it is divisible by {b}, "
                        f"'FizzBuzz' if it is divisible by both, and otherwise n as a string.",
                        src(f"""
                            def {name}(n):
                                if n % {a} == 0 and n % {b} == 0:
                                    return "FizzBuzz"
                                if n % {a} == 0:
                                    return "Fizz"
                                if n % {b} == 0:
                                    return "Buzz"
                                return str(n)
                        """), lambda n: ("Fizz" * (n % a == 0) + "Buzz" * (n % b == 0)) or str(n),
                        ((1,), (a,), (b,), (a * b,), (a * b + 1,), (2 * a * b,)), LONG)
    return [task(3, 5), *(task(a, b) for a, b in sorted(rng.sample([(2, 7), (3, 4), (4, 7), (5, 6), (3, 7)], 2)))]


_CALENDAR = (
    CodeTask("is_leap_year(year)",
             "returns True if year is a leap year in the Gregorian calendar, and False otherwise.",
             src("""
                 def is_leap_year(year):
                     return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
             """), calendar.isleap, ((2000,), (1900,), (2024,), (2023,), (2100,), (1996,))),
    CodeTask("days_in_month(month, year)", "returns the number of days in the given month (1 to 12) of the given "
             "year, taking leap years into account.",
             src("""
                 def days_in_month(month, year):
                     if month == 2:
                         leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
                         return 29 if leap else 28
                     return 30 if month in (4, 6, 9, 11) else 31
             """), lambda month, year: calendar.monthrange(year, month)[1],
             ((1, 2023), (2, 2023), (2, 2024), (4, 2023), (2, 1900), (12, 2000)), LONG),
)

_DEDUPE = (
    CodeTask("remove_duplicates(items)", "returns a new list without duplicates, keeping the first occurrence of each "
             "element in its original order.",
             src("""
                 def remove_duplicates(items):
                     seen = set()
                     out = []
                     for x in items:
                         if x not in seen:
                             seen.add(x)
                             out.append(x)
                     return out
             """), lambda items: list(dict.fromkeys(items)), (([1, 2, 1, 3, 2],), ([],), (["a", "a"],), ([3, 2, 1],))),
    CodeTask("count_unique(items)", "returns how many distinct elements the list items contains.",
             src("""
                 def count_unique(items):
                     return len(set(items))
             """), lambda items: len(Counter(items)), (([1, 2, 1, 3, 2],), ([],), (["a", "a"],), ([3, 2, 1],))),
)

_LIST_ORDER = (
    CodeTask("second_largest(nums)", "returns the second largest distinct value in a list of numbers that has at "
             "least two distinct values.",
             src("""
                 def second_largest(nums):
                     values = sorted(set(nums))
                     return values[-2]
             """), lambda nums: max(x for x in nums if x != max(nums)),
             (([1, 2, 3],), ([5, 5, 4],), ([-1, -7, -3],), ([10, 9, 10, 8],))),
    CodeTask("merge_sorted(a, b)", "merges two lists that are each sorted in ascending order into one sorted list.",
             src("""
                 def merge_sorted(a, b):
                     out = []
                     i = j = 0
                     while i < len(a) and j < len(b):
                         if a[i] <= b[j]:
                             out.append(a[i])
                             i += 1
                         else:
                             out.append(b[j])
                             j += 1
                     return out + a[i:] + b[j:]
             """), lambda a, b: sorted(a + b),
             (([1, 3, 5], [2, 4, 6]), ([], [1, 2]), ([1, 1], [1]), ([-2, 0], [-3, 5])), LONG),
    CodeTask("is_sorted(nums)", "returns True if the list nums is in non-decreasing order, and False otherwise.",
             src("""
                 def is_sorted(nums):
                     return nums == sorted(nums)
             """), lambda nums: all(a <= b for a, b in itertools.pairwise(nums)),
             (([1, 2, 2, 3],), ([3, 1],), ([],), ([5],))),
)

_RUNNING = (
    CodeTask("running_sum(nums)", "returns a list whose i-th element is the sum of the first i + 1 elements of nums.",
             src("""
                 def running_sum(nums):
                     out = []
                     total = 0
                     for x in nums:
                         total += x
                         out.append(total)
                     return out
             """), lambda nums: list(itertools.accumulate(nums)), (([1, 2, 3, 4],), ([],), ([5],), ([-1, 1, -1],))),
    CodeTask("differences(nums)", "returns the list of differences between consecutive elements of nums "
             "(nums[1] - nums[0], nums[2] - nums[1], and so on).",
             src("""
                 def differences(nums):
                     return [nums[i + 1] - nums[i] for i in range(len(nums) - 1)]
             """), lambda nums: [b - a for a, b in itertools.pairwise(nums)],
             (([1, 4, 9, 16],), ([5],), ([],), ([3, 3, 1],))),
)

_COUNTING = (
    CodeTask("char_frequency(s)", "returns a dictionary that maps each character of the string s to the number of "
             "times it occurs.",
             src("""
                 def char_frequency(s):
                     counts = {}
                     for c in s:
                         counts[c] = counts.get(c, 0) + 1
                     return counts
             """), lambda s: dict(Counter(s)), (("hello",), ("",), ("aaa",))),
    CodeTask("word_count(text)", "returns a dictionary that maps each word of text, lowercased, to how many times it "
             "occurs; words are separated by whitespace.",
             src("""
                 def word_count(text):
                     counts = {}
                     for word in text.lower().split():
                         counts[word] = counts.get(word, 0) + 1
                     return counts
             """), lambda text: dict(Counter(w.lower() for w in text.split())),
             (("the cat and the hat",), ("",), ("Go go GO",))),
)


def _filter_map(rng: random.Random) -> list[CodeTask]:
    k = rng.choice([3, 4, 5])
    words = ["a", "tree", "elephant", "sun", "planet", "bike"]
    return [
        CodeTask("evens(nums)", "returns a new list with only the even numbers of nums, in their original order.",
                 src("""
                     def evens(nums):
                         return [x for x in nums if x % 2 == 0]
                 """), lambda nums: list(filter(lambda x: not x & 1, nums)),
                 (([1, 2, 3, 4, 6],), ([],), ([1, 3],), ([0, -2, 5],))),
        CodeTask("squares(nums)", "returns a new list with the square of every number in nums.",
                 src("""
                     def squares(nums):
                         return [x * x for x in nums]
                 """), lambda nums: [x ** 2 for x in nums], (([1, 2, 3],), ([],), ([-4, 0],))),
        CodeTask(f"longer_than_{k}(words)", f"returns the words of the list words that have more than {k} letters, "
                 "in their original order.",
                 src(f"""
                     def longer_than_{k}(words):
                         return [w for w in words if len(w) > {k}]
                 """), lambda ws: list(filter(lambda w: len(w) > k, ws)), ((words,), ([],), (["abcde", "abc"],))),
    ]


_NUMBERS_MISC = (
    CodeTask("clamp(x, low, high)", "returns x limited to the range from low to high: low if x is below it, high if "
             "x is above it, and x otherwise.",
             src("""
                 def clamp(x, low, high):
                     if x < low:
                         return low
                     if x > high:
                         return high
                     return x
             """), lambda x, low, high: max(low, min(x, high)), ((5, 0, 10), (-3, 0, 10), (15, 0, 10), (0, 0, 0))),
    CodeTask("median(nums)", "returns the median of a non-empty list of numbers (the mean of the two middle values "
             "when the length is even).",
             src("""
                 def median(nums):
                     s = sorted(nums)
                     mid = len(s) // 2
                     if len(s) % 2:
                         return s[mid]
                     return (s[mid - 1] + s[mid]) / 2
             """), statistics.median, (([3, 1, 2],), ([4, 1, 3, 2],), ([7],), ([1, 2],))),
    CodeTask("average(nums)", "returns the arithmetic mean of a list of numbers, or 0.0 for an empty list.",
             src("""
                 def average(nums):
                     if not nums:
                         return 0.0
                     return sum(nums) / len(nums)
             """), lambda nums: statistics.fmean(nums) if nums else 0.0,
             (([1, 2, 3, 4],), ([],), ([5],), ([-2, 2],))),
    CodeTask("min_max(nums)", "returns a tuple (smallest, largest) of a non-empty list of numbers.",
             src("""
                 def min_max(nums):
                     return (min(nums), max(nums))
             """), lambda nums: (sorted(nums)[0], sorted(nums)[-1]), (([3, 1, 2],), ([5],), ([-1, -9, 4],))),
)

_ANAGRAM = CodeTask(
    "is_anagram(a, b)", "returns True if the strings a and b are anagrams of each other, ignoring case and spaces, "
    "and False otherwise.",
    src("""
        def is_anagram(a, b):
            clean = lambda s: sorted(s.replace(" ", "").lower())
            return clean(a) == clean(b)
    """), lambda a, b: Counter(a.lower().replace(" ", "")) == Counter(b.lower().replace(" ", "")),
    (("listen", "silent"), ("Dormitory", "dirty room"), ("abc", "abd"), ("aab", "abb")))


def _caesar(rng: random.Random) -> list[CodeTask]:
    def task(k: int) -> CodeTask:
        letters = "abcdefghijklmnopqrstuvwxyz"
        table = str.maketrans(letters, letters[k:] + letters[:k])
        return CodeTask(f"shift_{k}(text)", f"shifts every lowercase letter of text {k} places forward in the "
                        "alphabet, wrapping around from 'z' to 'a', and leaves all other characters unchanged.",
                        src(f"""
                            def shift_{k}(text):
                                out = []
                                for c in text:
                                    if "a" <= c <= "z":
                                        c = chr((ord(c) - ord("a") + {k}) % 26 + ord("a"))
                                    out.append(c)
                                return "".join(out)
                        """), lambda text: text.translate(table),
                        (("abc",), ("xyz",), ("hello, world!",), ("ABC z",)), LONG)
    return [task(k) for k in sorted(rng.sample([2, 3, 5, 13], 2))]


def _rotate(rng: random.Random) -> list[CodeTask]:
    def task(k: int) -> CodeTask:
        def oracle(items: list[Any]) -> list[Any]:
            d = deque(items)
            d.rotate(-k)
            return list(d)
        return CodeTask(f"rotate_left_{k}(items)", f"returns the list items rotated {k} positions to the left, as if "
                        f"the first element were moved to the end {k} times; an empty list stays empty.",
                        src(f"""
                            def rotate_left_{k}(items):
                                if not items:
                                    return []
                                k = {k} % len(items)
                                return items[k:] + items[:k]
                        """), oracle, (([1, 2, 3, 4, 5],), ([],), ([1],), (["a", "b", "c"],)))
    return [task(k) for k in sorted(rng.sample([2, 3, 4, 7], 2))]


def _chunks(rng: random.Random) -> list[CodeTask]:
    def task(k: int) -> CodeTask:
        def oracle(items: list[Any]) -> list[list[Any]]:
            it = iter(items)
            return [chunk for chunk in iter(lambda: list(itertools.islice(it, k)), [])]
        return CodeTask(f"chunks_of_{k}(items)", f"splits the list items into consecutive lists of {k} elements each "
                        "(the last one may be shorter) and returns the list of those lists.",
                        src(f"""
                            def chunks_of_{k}(items):
                                out = []
                                for i in range(0, len(items), {k}):
                                    out.append(items[i:i + {k}])
                                return out
                        """), oracle, ((list(range(1, 8)),), ([],), (["x"],)))
    return [task(k) for k in sorted(rng.sample([2, 3, 4], 2))]


_COLLECTIONS = (
    CodeTask("most_common(items)", "returns the element that occurs most often in the non-empty list items; on a "
             "tie, the one that appears first in the list.",
             src("""
                 def most_common(items):
                     best = items[0]
                     for x in items:
                         if items.count(x) > items.count(best):
                             best = x
                     return best
             """), lambda items: max(items, key=lambda x: (items.count(x), -items.index(x))),
             (([1, 2, 2, 3],), (["a", "b", "a", "b"],), ([5],), ([3, 1, 1, 3, 3],))),
    CodeTask("invert(d)", "returns a new dictionary with the keys and values of the dictionary d swapped "
             "(the values of d are all different).",
             src("""
                 def invert(d):
                     return {value: key for key, value in d.items()}
             """), lambda d: dict(zip(d.values(), d.keys(), strict=True)), (({"a": 1, "b": 2},), ({},), ({1: "x"},))),
    CodeTask("flatten(lists)", "flattens a list of lists by one level into a single list.",
             src("""
                 def flatten(lists):
                     out = []
                     for inner in lists:
                         out.extend(inner)
                     return out
             """), lambda lists: list(itertools.chain.from_iterable(lists)),
             (([[1, 2], [3], []],), ([],), ([[[1]], [2]],))),
    CodeTask("pair_up(a, b)", "returns a list of tuples pairing the elements of the lists a and b by position, "
             "stopping at the end of the shorter list.",
             src("""
                 def pair_up(a, b):
                     return [(a[i], b[i]) for i in range(min(len(a), len(b)))]
             """), lambda a, b: list(zip(a, b, strict=False)),
             (([1, 2, 3], ["a", "b", "c"]), ([1, 2], [3]), ([], [1]))),
    CodeTask("first_index(items, x)", "returns the index of the first element equal to x in the list items, or -1 "
             "if there is none, without using the list's index() method.",
             src("""
                 def first_index(items, x):
                     for i, item in enumerate(items):
                         if item == x:
                             return i
                     return -1
             """), lambda items, x: items.index(x) if x in items else -1,
             (([4, 5, 6, 5], 5), ([], 1), (["a", "b"], "c"), ([7], 7))),
)

_TEXT_CASE = (
    CodeTask("count_uppercase(s)", "returns how many uppercase letters the string s contains.",
             src("""
                 def count_uppercase(s):
                     return sum(1 for c in s if c.isupper())
             """), lambda s: len([c for c in s if c != c.lower()]), (("Hello World",), ("",), ("ABC def G",))),
    CodeTask("snake_to_camel(name)", "converts a snake_case name such as 'hello_world' to camelCase ('helloWorld').",
             src("""
                 def snake_to_camel(name):
                     first, *rest = name.split("_")
                     return first + "".join(part.capitalize() for part in rest)
             """), lambda name: "".join(p if i == 0 else p[:1].upper() + p[1:] for i, p in enumerate(name.split("_"))),
             (("hello_world",), ("make_it_work",), ("single",))),
    CodeTask("capitalize_words(s)", "returns s with the first letter of every space-separated word in uppercase and "
             "the rest of each word in lowercase.",
             src("""
                 def capitalize_words(s):
                     return " ".join(word.capitalize() for word in s.split(" "))
             """), lambda s: " ".join(w[:1].upper() + w[1:].lower() for w in s.split(" ")),
             (("hello world",), ("pYTHON is FUN",), ("",))),
    CodeTask("acronym(phrase)", "returns the uppercase first letters of the words of phrase, so 'portable network "
             "graphics' gives 'PNG'.",
             src("""
                 def acronym(phrase):
                     return "".join(word[0].upper() for word in phrase.split())
             """), lambda phrase: "".join(w[:1] for w in phrase.split()).upper(),
             (("portable network graphics",), ("as soon as possible",), ("Hello",))),
    CodeTask("remove_vowels(s)", "returns s with every vowel (a, e, i, o, u, in either case) removed.",
             src("""
                 def remove_vowels(s):
                     return "".join(c for c in s if c.lower() not in "aeiou")
             """), lambda s: s.translate(str.maketrans("", "", "aeiouAEIOU")),
             (("hello world",), ("AEIOUxyz",), ("",))),
)

_ROMAN_VALUES = (("M", 1000), ("CM", 900), ("D", 500), ("CD", 400), ("C", 100), ("XC", 90), ("L", 50), ("XL", 40),
                 ("X", 10), ("IX", 9), ("V", 5), ("IV", 4), ("I", 1))


def _roman_oracle(n: int) -> str:
    out = ""
    for symbol, value in _ROMAN_VALUES:
        count, n = divmod(n, value)
        out += symbol * count
    return out


_ROMAN_NUMBERS = (1, 4, 9, 14, 40, 90, 400, 1994, 2024, 3999)
_ROMAN = (
    CodeTask("to_roman(n)", "converts an integer from 1 to 3999 to a Roman numeral string (4 is 'IV', 9 is 'IX').",
             src("""
                 def to_roman(n):
                     ones = ["", "I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX"]
                     tens = ["", "X", "XX", "XXX", "XL", "L", "LX", "LXX", "LXXX", "XC"]
                     hundreds = ["", "C", "CC", "CCC", "CD", "D", "DC", "DCC", "DCCC", "CM"]
                     return "M" * (n // 1000) + hundreds[n // 100 % 10] + tens[n // 10 % 10] + ones[n % 10]
             """), _roman_oracle, tuple((n,) for n in _ROMAN_NUMBERS), LONG),
    CodeTask("from_roman(s)", "converts a Roman numeral string such as 'XIV' or 'MCMXCIV' to an integer.",
             src("""
                 def from_roman(s):
                     values = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
                     total = 0
                     for i, c in enumerate(s):
                         if i + 1 < len(s) and values[c] < values[s[i + 1]]:
                             total -= values[c]
                         else:
                             total += values[c]
                     return total
             """), lambda s: next(n for n in range(1, 4000) if _roman_oracle(n) == s),
             tuple((_roman_oracle(n),) for n in _ROMAN_NUMBERS), LONG),
)


def _balanced_oracle(s: str) -> bool:
    kept = "".join(c for c in s if c in "()[]{}")
    while any(pair in kept for pair in ("()", "[]", "{}")):
        for pair in ("()", "[]", "{}"):
            kept = kept.replace(pair, "")
    return not kept


_ALGORITHMS = (
    CodeTask("balanced(s)", "returns True if every bracket in s, of the kinds (), [] and {}, is closed in the right "
             "order, and False otherwise; other characters are ignored.",
             src("""
                 def balanced(s):
                     pairs = {")": "(", "]": "[", "}": "{"}
                     stack = []
                     for c in s:
                         if c in "([{":
                             stack.append(c)
                         elif c in pairs:
                             if not stack or stack.pop() != pairs[c]:
                                 return False
                     return not stack
             """), _balanced_oracle, (("([]{})",), ("([)]",), ("((",), ("",), ("a(b)c]",), ("{[()()]}",)), LONG),
    CodeTask("binary_search(nums, target)", "returns the index of target in the ascending list nums of distinct "
             "numbers, or -1 if it is absent, using binary search.",
             src("""
                 def binary_search(nums, target):
                     low, high = 0, len(nums) - 1
                     while low <= high:
                         mid = (low + high) // 2
                         if nums[mid] == target:
                             return mid
                         if nums[mid] < target:
                             low = mid + 1
                         else:
                             high = mid - 1
                     return -1
             """), lambda nums, target: nums.index(target) if target in nums else -1,
             (([1, 3, 5, 7, 9], 7), ([1, 3, 5, 7, 9], 4), ([], 1), ([2], 2), ([1, 3, 5, 7, 9], 1)), LONG),
    CodeTask("two_sum(nums, target)", "returns a tuple (i, j) with i < j such that nums[i] + nums[j] equals target; "
             "exactly one such pair exists.",
             src("""
                 def two_sum(nums, target):
                     seen = {}
                     for j, x in enumerate(nums):
                         if target - x in seen:
                             return (seen[target - x], j)
                         seen[x] = j
             """), lambda nums, target: next((i, j) for i, j in itertools.combinations(range(len(nums)), 2)
                                             if nums[i] + nums[j] == target),
             (([2, 7, 11, 15], 9), ([3, 2, 4], 6), ([1, 5, 3, 8], 11), ([0, 4, 3, 0], 0)), LONG),
    CodeTask("collatz_steps(n)", "returns how many steps the Collatz process takes to reach 1 from an integer n >= 1 "
             "(each step halves n if it is even and replaces it by 3n + 1 otherwise).",
             src("""
                 def collatz_steps(n):
                     steps = 0
                     while n != 1:
                         n = n // 2 if n % 2 == 0 else 3 * n + 1
                         steps += 1
                     return steps
             """), lambda n: 0 if n == 1 else 1 + _collatz(n // 2 if n % 2 == 0 else 3 * n + 1),
             ((1,), (2,), (6,), (7,), (27,))),
    CodeTask("run_length(s)", "compresses the string s by replacing every run of one repeated character with that "
             "character followed by the run's length, so 'aaabcc' becomes 'a3b1c2'.",
             src("""
                 def run_length(s):
                     out = ""
                     i = 0
                     while i < len(s):
                         j = i
                         while j < len(s) and s[j] == s[i]:
                             j += 1
                         out += s[i] + str(j - i)
                         i = j
                     return out
             """), lambda s: "".join(f"{c}{len(list(run))}" for c, run in itertools.groupby(s)),
             (("aaabcc",), ("",), ("abc",), ("zzzzzzzzzzzz",)), LONG),
    CodeTask("longest_common_prefix(words)", "returns the longest string that every word in the list words starts "
             "with ('' when there is none or the list is empty).",
             src("""
                 def longest_common_prefix(words):
                     if not words:
                         return ""
                     prefix = words[0]
                     for word in words[1:]:
                         while not word.startswith(prefix):
                             prefix = prefix[:-1]
                     return prefix
             """), lambda words: "".join(column[0] for column in itertools.takewhile(
                 lambda column: len(set(column)) == 1, zip(*words, strict=False))),
             ((["flower", "flow", "flight"],), (["dog", "racecar", "car"],), ([],), (["same"],)), LONG),
)


def _collatz(n: int) -> int:
    return 0 if n == 1 else 1 + _collatz(n // 2 if n % 2 == 0 else 3 * n + 1)


_MATRICES = (
    CodeTask("transpose(matrix)", "returns the transpose of a matrix given as a list of rows of equal length.",
             src("""
                 def transpose(matrix):
                     if not matrix:
                         return []
                     return [[row[i] for row in matrix] for i in range(len(matrix[0]))]
             """), lambda m: [list(col) for col in zip(*m, strict=True)],
             (([[1, 2, 3], [4, 5, 6]],), ([[1]],), ([[1, 2], [3, 4]],))),
    CodeTask("dot(a, b)", "returns the dot product of two lists of numbers of equal length.",
             src("""
                 def dot(a, b):
                     return sum(x * y for x, y in zip(a, b))
             """), lambda a, b: sum(map(operator.mul, a, b)), (([1, 2, 3], [4, 5, 6]), ([], []), ([-1, 2], [3, 4]))),
)

_NUMBER_TESTS = (
    CodeTask("is_power_of_two(n)", "returns True if the integer n is a power of two (1, 2, 4, 8, ...), and False "
             "otherwise.",
             src("""
                 def is_power_of_two(n):
                     if n < 1:
                         return False
                     while n % 2 == 0:
                         n //= 2
                     return n == 1
             """), lambda n: n > 0 and bin(n).count("1") == 1,
             ((1,), (2,), (6,), (64,), (0,), (-4,), (1024,), (1000,))),
    CodeTask("is_perfect_square(n)", "returns True if the integer n is a perfect square (0, 1, 4, 9, ...), and False "
             "otherwise.",
             src("""
                 def is_perfect_square(n):
                     if n < 0:
                         return False
                     root = int(n ** 0.5)
                     while root * root > n:
                         root -= 1
                     while (root + 1) * (root + 1) <= n:
                         root += 1
                     return root * root == n
             """), lambda n: n >= 0 and math.isqrt(n) ** 2 == n, ((0,), (1,), (15,), (16,), (-4,), (1000000,), (99,))),
)

_DIVISORS = (
    CodeTask("divisors(n)", "returns the ascending list of all positive divisors of the positive integer n.",
             src("""
                 def divisors(n):
                     return [d for d in range(1, n + 1) if n % d == 0]
             """), lambda n: sorted({d for i in range(1, math.isqrt(n) + 1) if n % i == 0 for d in (i, n // i)}),
             ((1,), (12,), (13,), (36,))),
    CodeTask("is_perfect(n)", "returns True if the positive integer n equals the sum of its divisors other than "
             "itself (as 6 = 1 + 2 + 3 does), and False otherwise.",
             src("""
                 def is_perfect(n):
                     return n == sum(d for d in range(1, n) if n % d == 0)
             """), lambda n: n in (6, 28, 496, 8128), ((6,), (28,), (12,), (1,), (496,), (100,))),
)

_BINARY = (
    CodeTask("to_binary(n)", "returns the binary representation of the integer n >= 0 as a string without a prefix "
             "(to_binary(5) is '101' and to_binary(0) is '0').",
             src("""
                 def to_binary(n):
                     if n == 0:
                         return "0"
                     digits = ""
                     while n > 0:
                         digits = str(n % 2) + digits
                         n //= 2
                     return digits
             """), lambda n: format(n, "b"), ((0,), (1,), (5,), (10,), (255,))),
    CodeTask("from_binary(s)", "converts a string of binary digits such as '101' to the integer it represents, "
             "without using int(s, 2).",
             src("""
                 def from_binary(s):
                     value = 0
                     for c in s:
                         value = value * 2 + (c == "1")
                     return value
             """), lambda s: int(s, 2), (("0",), ("1",), ("101",), ("11111111",))),
)

_CLASSIFY = (
    CodeTask("triangle_type(a, b, c)", "returns 'equilateral', 'isosceles' or 'scalene' for a valid triangle with "
             "side lengths a, b and c.",
             src("""
                 def triangle_type(a, b, c):
                     if a == b == c:
                         return "equilateral"
                     if a == b or b == c or a == c:
                         return "isosceles"
                     return "scalene"
             """), lambda a, b, c: {1: "equilateral", 2: "isosceles", 3: "scalene"}[len({a, b, c})],
             ((3, 3, 3), (3, 3, 5), (3, 4, 5), (5, 3, 5))),
    CodeTask("letter_grade(score)", "returns 'A' for a score of 90 or more, 'B' for 80 to 89, 'C' for 70 to 79, "
             "'D' for 60 to 69 and 'F' below 60.",
             src("""
                 def letter_grade(score):
                     if score >= 90:
                         return "A"
                     if score >= 80:
                         return "B"
                     if score >= 70:
                         return "C"
                     if score >= 60:
                         return "D"
                     return "F"
             """), lambda score: "FFFFFFDCBAA"[min(score, 100) // 10],
             ((95,), (90,), (89,), (70,), (65,), (10,), (100,))),
    CodeTask("format_duration(seconds)", "turns a whole number of seconds (0 or more) into a string 'H:MM:SS', so "
             "3725 gives '1:02:05'.",
             src("""
                 def format_duration(seconds):
                     hours, rest = divmod(seconds, 3600)
                     minutes, secs = divmod(rest, 60)
                     return f"{hours}:{minutes:02d}:{secs:02d}"
             """), lambda s: f"{s // 3600}:{s % 3600 // 60:02}:{s % 60:02}",
             ((0,), (59,), (3725,), (86399,), (90000,))),
)


def _top_k(rng: random.Random) -> list[CodeTask]:
    def task(k: int) -> CodeTask:
        return CodeTask(f"top_{k}(nums)", f"returns the {k} largest numbers of the list nums in descending order "
                        f"(nums has at least {k} numbers).",
                        src(f"""
                            def top_{k}(nums):
                                return sorted(nums, reverse=True)[:{k}]
                        """), lambda nums: heapq.nlargest(k, nums),
                        (([5, 1, 9, 3, 7, 2],), ([10, 10, 1, 5, 6],), ([-3, -1, -2, -8],)))
    return [task(k) for k in sorted(rng.sample([2, 3, 4], 2))]


_STRINGS = (
    CodeTask("count_words(s)", "returns the number of words in the string s, where words are separated by any amount "
             "of whitespace.",
             src("""
                 def count_words(s):
                     return len(s.split())
             """), lambda s: len(re.findall(r"\S+", s)),
             (("hello world",), ("",), ("  many   spaces here ",))),
    CodeTask("hamming(a, b)", "returns the number of positions at which the equal-length strings a and b differ.",
             src("""
                 def hamming(a, b):
                     return sum(1 for x, y in zip(a, b) if x != y)
             """), lambda a, b: sum(map(str.__ne__, a, b)),
             (("karolin", "kathrin"), ("", ""), ("abc", "abc"), ("1011101", "1001001"))),
    CodeTask("count_substring(s, sub)", "returns how many times the non-empty string sub occurs in s without "
             "overlapping.",
             src("""
                 def count_substring(s, sub):
                     count = 0
                     i = s.find(sub)
                     while i != -1:
                         count += 1
                         i = s.find(sub, i + len(sub))
                     return count
             """), lambda s, sub: s.count(sub),
             (("banana", "an"), ("aaaa", "aa"), ("abc", "d"), ("hello hello", "hello"))),
    CodeTask("longest_word(sentence)", "returns the longest word of sentence, whose words are separated by spaces; on "
             "a tie, the first one.",
             src("""
                 def longest_word(sentence):
                     best = ""
                     for word in sentence.split():
                         if len(word) > len(best):
                             best = word
                     return best
             """), lambda s: max(s.split(), key=len), (("I love programming",), ("a bb cc",), ("one",))),
)


def _sum_multiples(rng: random.Random) -> list[CodeTask]:
    def task(a: int, b: int) -> CodeTask:
        return CodeTask(f"sum_multiples_{a}_{b}(n)", f"returns the sum of all positive integers below n that are "
                        f"divisible by {a} or by {b}.",
                        src(f"""
                            def sum_multiples_{a}_{b}(n):
                                return sum(i for i in range(1, n) if i % {a} == 0 or i % {b} == 0)
                        """), lambda n: sum(set(range(a, n, a)) | set(range(b, n, b))),
                        ((10,), (1,), (20,), (100,)))
    return [task(a, b) for a, b in sorted(rng.sample([(3, 5), (2, 7), (4, 6), (5, 7)], 2))]


def _replace_spaces(rng: random.Random) -> list[CodeTask]:
    names = {"-": "dashes", "_": "underscores", "+": "plus_signs", "*": "stars"}

    def task(ch: str) -> CodeTask:
        name = f"spaces_to_{names[ch]}"
        return CodeTask(f"{name}(s)", f"returns s with every space replaced by '{ch}'.",
                        src(f"""
                            def {name}(s):
                                return s.replace(" ", "{ch}")
                        """), lambda s: ch.join(s.split(" ")), (("a b c",), ("",), ("no_spaces",), ("two  spaces",)))
    return [task(ch) for ch in sorted(rng.sample(sorted(names), 2))]


def _repeat_chars(_rng: random.Random) -> list[CodeTask]:
    def task(k: int) -> CodeTask:
        return CodeTask(f"repeat_each_{k}(s)", f"returns a string in which every character of s is repeated {k} times, "
                        f"so 'ab' becomes '{'a' * k}{'b' * k}'.",
                        src(f"""
                            def repeat_each_{k}(s):
                                return "".join(c * {k} for c in s)
                        """), lambda s: "".join(map("".join, zip(*([s] * k), strict=True))),
                        (("ab",), ("",), ("xyz",)))
    return [task(k) for k in (2, 3)]


def _every_nth(rng: random.Random) -> list[CodeTask]:
    ordinals = {2: "second", 3: "third", 4: "fourth"}

    def task(k: int) -> CodeTask:
        name = f"every_{ordinals[k]}"
        return CodeTask(f"{name}(items)", f"returns every {ordinals[k]} element of the list items, starting with the "
                        "first one.",
                        src(f"""
                            def {name}(items):
                                return items[::{k}]
                        """), lambda items: [x for i, x in enumerate(items) if i % k == 0],
                        ((list(range(10)),), ([],), (["a", "b", "c", "d", "e"],)))
    return [task(k) for k in sorted(rng.sample(sorted(ordinals), 2))]


def one_liner(signature: str, spec: str, body: str, oracle: Callable[..., Any],
              cases: tuple[tuple[Any, ...], ...]) -> CodeTask:
    """The easy end: a function whose whole body is one return statement, builtins allowed."""
    return CodeTask(signature, spec, f"def {signature}:\n    return {body}\n", oracle, cases)


_BASIC_ARITHMETIC = (
    one_liner("add(a, b)", "returns the sum of a and b.", "a + b", operator.add, ((2, 3), (-1, 1), (0, 0))),
    one_liner("subtract(a, b)", "returns a minus b.", "a - b", operator.sub, ((5, 3), (3, 5), (0, 0))),
    one_liner("multiply(a, b)", "returns the product of a and b.", "a * b", operator.mul, ((4, 5), (-2, 3), (7, 0))),
    one_liner("square(n)", "returns n squared.", "n * n", lambda n: n ** 2, ((3,), (-4,), (0,))),
    one_liner("double(n)", "returns twice the number n.", "2 * n", lambda n: n + n, ((3,), (-4,), (0,))),
    one_liner("cube(n)", "returns n to the power of 3.", "n ** 3", lambda n: n * n * n, ((2,), (-3,), (0,))),
)
_BASIC_PREDICATES = (
    one_liner("is_even(n)", "returns True if the integer n is even, and False otherwise.", "n % 2 == 0",
              lambda n: n / 2 == n // 2, ((4,), (7,), (0,), (-2,))),
    one_liner("is_odd(n)", "returns True if the integer n is odd, and False otherwise.", "n % 2 == 1",
              lambda n: n / 2 != n // 2, ((4,), (7,), (0,), (-3,))),
    one_liner("is_positive(n)", "returns True if the number n is greater than zero, and False otherwise.", "n > 0",
              lambda n: not n <= 0, ((5,), (-2,), (0,))),
    one_liner("is_empty(items)", "returns True if the list items has no elements, and False otherwise.",
              "len(items) == 0", lambda items: not items, (([],), ([1],), ([0, 0],))),
    one_liner("is_adult(age)", "returns True if age is 18 or more, and False otherwise.", "age >= 18",
              lambda age: not age < 18, ((18,), (17,), (40,))),
    one_liner("is_vowel(ch)", "returns True if the single letter ch is a vowel (a, e, i, o or u, in either case).",
              'ch.lower() in "aeiou"', lambda ch: ch in "aeiouAEIOU", (("a",), ("E",), ("b",), ("z",))),
)
_BASIC_STRINGS = (
    one_liner("to_upper(s)", "returns the string s in uppercase.", "s.upper()", lambda s: "".join(map(str.upper, s)),
              (("hello",), ("Hi there",), ("",))),
    one_liner("string_length(s)", "returns the number of characters in the string s.", "len(s)",
              lambda s: sum(1 for _ in s), (("hello",), ("",), ("a b",))),
    one_liner("greet(name)", "returns the greeting 'Hello, ' followed by name and an exclamation mark, so "
              "greet('Ann') is 'Hello, Ann!'.", '"Hello, " + name + "!"', lambda name: f"Hello, {name}!",
              (("Ann",), ("Bob",))),
    one_liner("first_char(s)", "returns the first character of the non-empty string s.", "s[0]",
              lambda s: s[:1], (("hello",), ("x",))),
    one_liner("last_char(s)", "returns the last character of the non-empty string s.", "s[-1]",
              lambda s: s[len(s) - 1], (("hello",), ("x",))),
    one_liner("join_words(a, b)", "returns the strings a and b joined with a single space between them.",
              'a + " " + b', lambda a, b: " ".join((a, b)), (("hello", "world"), ("a", "b"))),
)
_BASIC_LISTS = (
    one_liner("first_element(items)", "returns the first element of the non-empty list items.", "items[0]",
              lambda items: next(iter(items)), (([3, 4, 5],), (["a"],))),
    one_liner("last_element(items)", "returns the last element of the non-empty list items.", "items[-1]",
              lambda items: next(reversed(items)), (([3, 4, 5],), (["a"],))),
    one_liner("list_length(items)", "returns the number of elements in the list items.", "len(items)",
              lambda items: sum(1 for _ in items), (([3, 4, 5],), ([],))),
    one_liner("total(nums)", "returns the sum of the numbers in the list nums (0 for an empty list).", "sum(nums)",
              lambda nums: functools.reduce(operator.add, nums, 0), (([1, 2, 3],), ([],), ([-5, 5, 10],))),
    one_liner("biggest(nums)", "returns the largest number in the non-empty list nums.", "max(nums)",
              lambda nums: sorted(nums)[-1], (([3, 9, 2],), ([-5, -2],), ([7],))),
    one_liner("sorted_copy(nums)", "returns a new list with the numbers of nums in ascending order.", "sorted(nums)",
              lambda nums: heapq.nsmallest(len(nums), nums), (([3, 1, 2],), ([],), ([5, -1, 5],))),
)
_TWO_NUMBERS = (
    one_liner("maximum(a, b)", "returns the larger of the two numbers a and b.", "max(a, b)",
              lambda a, b: a if a >= b else b, ((3, 7), (7, 3), (-1, -5))),
    one_liner("minimum(a, b)", "returns the smaller of the two numbers a and b.", "min(a, b)",
              lambda a, b: a if a <= b else b, ((3, 7), (7, 3), (-1, -5))),
    one_liner("average_of_two(a, b)", "returns the average of the two numbers a and b.", "(a + b) / 2",
              lambda a, b: statistics.fmean((a, b)), ((2, 4), (1, 2), (-3, 3))),
    one_liner("absolute(n)", "returns the absolute value of the number n.", "abs(n)",
              lambda n: n if n >= 0 else -n, ((5,), (-5,), (0,))),
    one_liner("remainder(a, b)", "returns the remainder when the positive integer a is divided by the positive "
              "integer b.", "a % b", lambda a, b: a - b * (a // b), ((10, 3), (9, 3), (2, 5))),
    one_liner("power(base, exponent)", "returns base raised to the power exponent (a whole number 0 or more).",
              "base ** exponent", lambda base, exponent: math.prod([base] * exponent), ((2, 3), (5, 0), (3, 2))),
)


CODE_FAMILIES: dict[str, Callable[[random.Random], list[CodeTask]]] = {
    "basic_arithmetic": fixed(*_BASIC_ARITHMETIC),
    "basic_predicates": fixed(*_BASIC_PREDICATES),
    "basic_strings": fixed(*_BASIC_STRINGS),
    "basic_lists": fixed(*_BASIC_LISTS),
    "two_numbers": fixed(*_TWO_NUMBERS),
    "multiple_of": _multiple_of,
    "add_to_each": _add_to_each,
    "count_above": _count_above,
    "list_aggregate": fixed(*_AGGREGATES),
    "reverse": fixed(*_REVERSE),
    "palindrome": fixed(*_PALINDROMES),
    "count_letters": _letters,
    "sums": fixed(*_SUMS),
    "sequences": fixed(*_SEQUENCES),
    "primes": fixed(*_PRIMES),
    "gcd_lcm": fixed(*_GCD_LCM),
    "digits": fixed(*_DIGITS),
    "temperature_conversion": fixed(*_TEMPERATURE),
    "fizzbuzz": _fizzbuzz,
    "calendar": fixed(*_CALENDAR),
    "dedupe": fixed(*_DEDUPE),
    "list_order": fixed(*_LIST_ORDER),
    "running": fixed(*_RUNNING),
    "counting": fixed(*_COUNTING),
    "filter_map": _filter_map,
    "numbers_misc": fixed(*_NUMBERS_MISC),
    "anagram": fixed(_ANAGRAM),
    "caesar": _caesar,
    "rotate": _rotate,
    "chunks": _chunks,
    "collections": fixed(*_COLLECTIONS),
    "text_case": fixed(*_TEXT_CASE),
    "roman": fixed(*_ROMAN),
    "algorithms": fixed(*_ALGORITHMS),
    "matrices": fixed(*_MATRICES),
    "number_tests": fixed(*_NUMBER_TESTS),
    "divisors": fixed(*_DIVISORS),
    "binary": fixed(*_BINARY),
    "classify": fixed(*_CLASSIFY),
    "top_k": _top_k,
    "strings": fixed(*_STRINGS),
    "sum_multiples": _sum_multiples,
    "replace_spaces": _replace_spaces,
    "repeat_chars": _repeat_chars,
    "every_nth": _every_nth,
}

CODE_WORDINGS = (
    "Write a Python function `{signature}` that {spec}",
    "Implement `{signature}` in Python: a function that {spec}",
    "Write `{signature}`, a Python function that {spec}",
)
CODE_SUFFIX = " Reply with only the code."
