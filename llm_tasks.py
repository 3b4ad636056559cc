"""The data side of the LLM demo: math word problems, answer extraction, and the 0/1 reward.

In sppo.py's vocabulary a problem's question is the initial state s0 (the prompt), the model's whole
response is the action, and `reward` is the episode outcome R: 1.0 if the response's final number is
the right answer, else 0.0. The reward is *verifiable* -- a string comparison, no reward model -- so
every bit of learning signal comes from the problem, and nothing can be gamed but the answer itself.

Why the task is built this way:
  * Generated problems by default, GSM8K optionally. SmolLM2-135M-Instruct solves almost no real
    GSM8K problem; with all-zero rewards every advantage is zero (GRPO, RLOO) or V(s0) simply learns 0
    (SPPO) and nothing is learned. `difficulty` 1-5 lets you pick a level where the base model is right
    5-40% of the time: the variance p(1-p) of a 0/1 reward is the signal, and it vanishes at p = 0 and
    p = 1. Level 1: one small sum or difference (numbers 2-20, answers 0-30); level 2: the same with
    2-digit numbers (already hard for the 135M model: ~1% sampled at temperature 1, ~8% greedy);
    level 3 adds small products; levels 4 and 5 take two and three steps.
  * A fixed held-out split. It is drawn from its own derived seed, so changing the training budget
    never changes the evaluation set (runs with different budgets are scored on the same questions),
    and no held-out question appears in training (accuracy measures generalisation, not memorisation).
  * Lenient about format, strict about value. `extract_answer` accepts GSM8K's "#### N", "\\boxed{N}",
    "The answer is N." and falls back to the last number, so the reward judges the arithmetic and the
    model does not first have to learn one exact output format. After a cue, N may be an equation and
    its value counts ("The answer is 34 + 25 = 59." reads 59; "5 (since 2 + 3 = 5)" reads 5); an
    expression no "=" closes ("34 + 25") is no answer, never evaluated, or copying the question's
    numbers would pay. Numbers compare after normalisation ("12.0" == "12", "$1,234" == "1234").
    Fractions ("3/4", "\\frac{3}{4}") are NOT supported, wherever they stand: normalize_number returns
    None for them and extract_answer reads no number out of one. Every answer here and in GSM8K is a
    plain number, and a wrong "3/4" -> "3" or "4" reading could reward a wrong response.

Standard library only (the `datasets` package is imported inside load_gsm8k, and only there).

Usage:
    python -c "import llm_tasks as t; [print(p) for p in t.make_problems(3, seed=0, difficulty=3)]"
    python -c "import llm_tasks as t; print(t.reward('So 34 + 25 = 59. The answer is 59.', '59'))"
"""
from __future__ import annotations

import itertools
import json
import math
import os
import random
import re
import string
from dataclasses import dataclass
from decimal import Decimal


class DataError(ValueError):
    """A data file or data set that cannot be used: reported as one line."""


@dataclass(frozen=True)
class Problem:
    question: str   # the word problem, as the user turn of the chat (the prompt s0)
    answer: str     # the canonical final number, e.g. "42", "3.5", "-7" (see normalize_number)


# ================================================================================================
# Generated word problems: a question template with number placeholders beside the formula for its
# answer. Many names, objects and phrasings, so the model must read the numbers, not memorise strings.
# ================================================================================================
PEOPLE = [("Mia", "she"), ("Liam", "he"), ("Ava", "she"), ("Noah", "he"), ("Zoe", "she"), ("Omar", "he"),
          ("Lena", "she"), ("Ravi", "he"), ("Sofia", "she"), ("Ben", "he"), ("Nora", "she"), ("Kai", "he")]
OBJECTS = ["stickers", "marbles", "apples", "pencils", "books", "cards", "shells", "stamps", "cookies",
           "balloons", "crayons", "toy cars"]
# What a number placeholder draws: {a}..{d} two-digit counts, {x} {y} small factors, {p} {q} prices/sizes.
RANGES = {"a": (10, 99), "b": (10, 99), "c": (10, 99), "d": (10, 99), "x": (2, 9), "y": (2, 9),
          "p": (2, 20), "q": (2, 20)}
SMALL_RANGES = {**RANGES, "a": (2, 20), "b": (2, 20)}   # level 1: the same stories with small counts

# (question, answer as a function of the drawn numbers); {name} {she} {She} {friend} {obj} are words.
ADD_SUB = [   # one addition or subtraction of two counts
    ("{name} has {a} {obj}. {She} buys {b} more. How many {obj} does {she} have now?", lambda a, b: a + b),
    ("{name} has {a} {obj}. {She} gives {b} to {friend}. How many {obj} does {she} have left?", lambda a, b: a - b),
    ("There are {a} {obj} in a box. {name} puts in {b} more. How many {obj} are in the box now?", lambda a, b: a + b),
    ("{name} had {a} {obj}. {She} lost {b} of them. How many {obj} does {she} have now?", lambda a, b: a - b),
    ("{name} has {a} {obj} and {friend} has {b} {obj}. How many {obj} do they have together?", lambda a, b: a + b),
    ("{name} has {a} {obj}. {friend} has {b} {obj}. How many more {obj} does {name} have than {friend}?",
     lambda a, b: a - b),
    ("A shop had {a} {obj}. It sold {b} of them. How many {obj} does the shop have left?", lambda a, b: a - b),
    ("{name} read {a} pages on Monday and {b} pages on Tuesday. How many pages did {she} read in all?",
     lambda a, b: a + b),
]
MULTIPLY = [  # one multiplication of two small factors
    ("A box holds {x} {obj}. How many {obj} are in {y} boxes?", lambda x, y: x * y),
    ("{name} buys {x} packs of {obj}. Each pack has {y} {obj}. How many {obj} does {she} buy?", lambda x, y: x * y),
    ("{name} saves ${x} every week. How many dollars does {she} save in {y} weeks?", lambda x, y: x * y),
    ("A room has {x} rows of chairs with {y} chairs in each row. How many chairs are there?", lambda x, y: x * y),
    ("{name} walks {x} miles every day. How many miles does {she} walk in {y} days?", lambda x, y: x * y),
]
TWO_STEPS = [
    ("{name} has {a} {obj}. {She} buys {b} more and then gives {c} to {friend}. How many {obj} does {she} have "
     "now?", lambda a, b, c: a + b - c),
    ("{name} buys {x} {obj} for ${p} each and pays with a $50 bill. How many dollars of change does {she} get?",
     lambda x, p: 50 - x * p),
    ("A box holds {x} {obj}. {name} has {y} full boxes and {a} loose {obj}. How many {obj} does {she} have in all?",
     lambda x, y, a: x * y + a),
    ("{name} had {a} {obj}. {She} gave {b} to {friend} and {c} to a neighbour. How many {obj} does {she} have "
     "left?", lambda a, b, c: a - b - c),
    ("{name} bakes {x} trays of cookies with {p} cookies on each tray. {She} eats {q} of them. How many cookies "
     "are left?", lambda x, p, q: x * p - q),
    ("{name} reads {p} pages every morning and {q} pages every night. How many pages does {she} read in {x} days?",
     lambda p, q, x: (p + q) * x),
]
THREE_STEPS = [
    ("{name} has {a} {obj}. {She} buys {x} packs with {y} {obj} in each pack, then gives {b} {obj} to {friend}. "
     "How many {obj} does {she} have now?", lambda a, x, y, b: a + x * y - b),
    ("{name} buys {x} notebooks for ${p} each and {y} pens for ${q} each. {She} pays with a $100 bill. How many "
     "dollars of change does {she} get?", lambda x, p, y, q: 100 - x * p - y * q),
    ("{name} had {a} {obj}. {She} bought {b} more, gave {c} to {friend}, and then lost {d}. How many {obj} does "
     "{she} have now?", lambda a, b, c, d: a + b - c - d),
    ("A farm has {x} pens with {p} sheep in each pen. The farmer buys {a} more sheep and then sells {b}. How many "
     "sheep are on the farm now?", lambda x, p, a, b: x * p + a - b),
    ("{name} earns ${p} an hour and works {x} hours a day for {y} days. {She} spends ${a}. How many dollars does "
     "{she} have left?", lambda p, x, y, a: p * x * y - a),
]
# level -> (templates, number ranges, largest answer); draws outside 0..largest are redrawn. Steps run
# in the order the story tells them, subtractions last, so a final answer >= 0 also means no step ever
# goes negative (no farmer sells sheep the farm does not have yet).
LEVELS = {1: (ADD_SUB, SMALL_RANGES, 30),                     # one small sum or difference
          2: (ADD_SUB, RANGES, math.inf),                     # the same with 2-digit numbers
          3: (ADD_SUB + MULTIPLY, RANGES, math.inf),          # 5 of 13 templates multiply
          4: (TWO_STEPS, RANGES, math.inf),
          5: (THREE_STEPS, RANGES, math.inf)}
DIFFICULTIES = tuple(LEVELS)   # (1, 2, 3, 4, 5): for argparse choices in the demo


def fill(template: tuple, rng: random.Random, ranges: dict = RANGES) -> tuple[str, int]:
    """One (question, answer) from a template, numbers from `ranges` (placeholder -> inclusive (lo, hi)).
    Only the placeholders in the text are drawn, so every number the answer uses is in the question."""
    text, formula = template
    (name, she), obj = rng.choice(PEOPLE), rng.choice(OBJECTS)
    friend = rng.choice([other for other, _ in PEOPLE if other != name])
    fields = dict.fromkeys(field for _, field, _, _ in string.Formatter().parse(text) if field in ranges)
    numbers = {field: rng.randint(*ranges[field]) for field in fields}
    question = text.format(name=name, she=she, She=she.capitalize(), friend=friend, obj=obj, **numbers)
    return question, formula(**numbers)


def _problem_stream(rng: random.Random, difficulty: int):
    """An endless, reproducible stream of Problems. Draws whose answer is negative or above the
    level's largest answer are redrawn (from the same rng, so the stream stays a pure function of the
    seed): "how many are left" must be >= 0."""
    if difficulty not in LEVELS:
        raise ValueError(f"difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
    templates, ranges, largest = LEVELS[difficulty]
    draws = (fill(rng.choice(templates), rng, ranges) for _ in itertools.count())
    return (Problem(question, str(answer)) for question, answer in draws
            if isinstance(answer, int) and 0 <= answer <= largest)


def make_problems(n: int, seed: int, difficulty: int = 1) -> list[Problem]:
    """n problems, a pure function of (n, seed, difficulty); a larger n extends a smaller one."""
    return list(itertools.islice(_problem_stream(random.Random(seed), difficulty), n))


def train_and_heldout(n_train: int, n_eval: int, seed: int, difficulty: int) -> tuple[list[Problem], list[Problem]]:
    """(train, heldout): disjoint by question text, each reproducible from the seed.

    The held-out split comes from its own derived seed (a string: it can never equal an int seed used
    for training) and does not depend on n_train, so every training budget is evaluated on the same
    questions. It holds no repeated question (each counts once in the accuracy). Train skips anything
    in held-out and keeps drawing until it has n_train problems; repeats within train are allowed.
    """
    heldout, seen = [], set()
    for problem in _problem_stream(random.Random(f"heldout:{seed}"), difficulty):
        if len(heldout) >= n_eval:
            break
        if problem.question not in seen:
            seen.add(problem.question)
            heldout.append(problem)
    train = (p for p in _problem_stream(random.Random(seed), difficulty) if p.question not in seen)
    return list(itertools.islice(train, n_train)), heldout


# ================================================================================================
# Answer extraction and the reward.
# ================================================================================================
# A number as models write it: optional sign and "$", thousands commas only in groups of three
# ("1,234", while "3,4" is two numbers), an optional decimal part ("12." at a sentence end stays 12).
# Not preceded by a letter, digit or "." ("SmolLM2" holds no number; ".5" is not read as 5), nor by "/"
# alone or with one of " (-+" between: the 4 of "3/4", "3 / 4", "x/-4" or "\frac{3}{4}" (written "(3)/(4)"
# below) is a denominator, not an answer.
DIGITS = r"[-+\u2212]?\$?[ \t]?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?"
_STARTS_A_NUMBER = r"(?<![\w./])(?<!/[ (\-+\u2212])"
NUMBER = _STARTS_A_NUMBER + DIGITS
_CANONICAL = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
# What a cue ("####", \boxed{}, "the answer is") is followed by may be an expression or an equation:
# "34 + 25 = 59", "3 apples + 4 apples = 7 apples", "(3 + 4) * 2 = 14", "7 \times 8 = 56". A term is
# a number in optional brackets with an optional unit word or "%"; operators ("of" after a fraction
# or "%": "1/2 of 10 = 5") and "=" join terms on one line.
# The chain stops at anything else, so "5 (since 2 + 3 = 5)" is the term 5 and its explanation.
_OPERATOR_WORDS = r"(?i:plus|minus|times|divided[ \t]+by|multiplied[ \t]+by|x)"
_TERM = (r"(?:[(\[]+[ \t]*)?" + DIGITS + r"%?(?:[ \t]*[)\]])*"
         r"(?:[ \t]+(?!(?:" + _OPERATOR_WORDS + r"|(?i:of|equals|which|that))(?![A-Za-z]))[A-Za-z]+)?")
_OPERATOR = (r"[ \t]*(?:\*\*|[-+*/^\u2212\u00d7\u00f7\u00b7]|\\times|\\cdot|\\div"
             r"|(?<![A-Za-z])(?:" + _OPERATOR_WORDS + r")(?![A-Za-z])"
             r"|(?:(?<=[%)] )|(?<=/\d )|(?<=/\d\d ))(?i:of)(?=[ \t]))[ \t]*")
_EQUALS = r"(?<![ \t])[ \t]*(?:=|(?<![A-Za-z])(?i:equals)(?![A-Za-z]))[ \t]*(?:\*+[ \t]*)?"   # "= **59**": bold
_EQUATION = _TERM + r"(?:(?:" + _OPERATOR + "|" + _EQUALS + ")" + _TERM + ")*"
_WHICH_IS = r"(?<![ \t]),?[ \t]*(?i:which|that)[ \t]+(?i:is|equals|makes|gives)[ \t]+"   # "34 + 25, which is 59"
CHAIN = _EQUATION + r"(?:" + _WHICH_IS + _EQUATION + ")*"
# One side of an equation that is a lone number: "59", " $59", "(59)", "12 apples"; "34 + 25" is not.
_LONE_NUMBER = re.compile(r"[ \t(\[]*(" + DIGITS + r")%?(?:[ \t]*[)\]])*(?:[ \t]+[A-Za-z]+)?")
_HASHES = re.compile(r"####\s*(" + CHAIN + ")")                    # "#### 72"; a markdown "#### Step 1" is not it
_ANSWER_IS = re.compile(r"\banswer\s*(?:is|:|=)?[\s:*$\\{]*(?<![\w.])(" + CHAIN + ")", re.IGNORECASE)
_FIRST_CHAIN = re.compile(_STARTS_A_NUMBER + r"(?<![(\[])" + CHAIN)  # in a box: from its first number on
_NUMBER_OR_FRACTION = re.compile(NUMBER + r"(?:[ \t]*(?:\)[ \t]*)?/[ \t]*(?:\([ \t]*)?" + DIGITS + ")?")
_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")   # LaTeX \frac{a}{b} -> (a)/(b)


def normalize_number(s: str) -> str | None:
    """"$1,234.50" -> "1234.5", "12.0" -> "12", "+4" -> "4", "-0" -> "0"; None for anything else
    (words, "3/4", "50%", "1e5"). Two strings are the same number iff their normal forms are equal."""
    s = re.sub(r"\s+", "", s).replace("$", "").replace("\u2212", "-").rstrip(".")
    if not _CANONICAL.fullmatch(s):
        return None
    value = Decimal(s.replace(",", ""))
    return "0" if value == 0 else format(value.normalize(), "f")   # "f": 100 stays "100", not "1E+2"


def _boxed(text: str) -> str | None:
    """Content of the last \\boxed{...}, braces matched (so \\boxed{\\text{12}} works), or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 0, start + len("\\boxed")
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1:j]
    return text[i + 1:]                        # unclosed: take the rest, as a lenient reader would


def _final_value(chain: str) -> str | None:
    """The value an expression or equation states: its last side that is a lone number ("34 + 25 = 59"
    -> "59", "59 = 34 + 25" -> "59", "12 apples" -> "12"), or None when no side is one ("34 + 25",
    "3/4"). An expression is not evaluated: a reward for restating "34 + 25" would pay a model for
    copying the question's numbers without doing the arithmetic the reward is there to judge."""
    for equation in re.split(_WHICH_IS, chain):   # "..., which is 59" only values what has no value
        for side in reversed(re.split(_EQUALS, equation)):
            if lone := _LONE_NUMBER.fullmatch(side):
                return normalize_number(lone.group(1))
    return None


def extract_answer(text: str) -> str | None:
    """The response's final answer as a canonical number string, or None. First rule that applies:
    the last "#### N"; the last \\boxed{...}; the last "the answer is N" / "answer: N"; the last number.
    After a cue, N may be an equation whose value is read ("The answer is 34 + 25 = 59." -> "59");
    an expression left unequal ("34 + 25") or a fraction ("3/4", anywhere) is no whole answer: None."""
    # LaTeX spellings of a number, anywhere: "1{,}000", "\\$12", "1\\,000", "\\frac{3}{4}" -> "(3)/(4)"
    text = text.replace("{,}", ",").replace("\\$", "$").replace("\\,", "").replace("\\!", "")
    text = _FRAC.sub(r"(\1)/(\2)", text)
    if found := _HASHES.findall(text):
        return _final_value(found[-1])
    if (boxed := _boxed(text)) is not None:
        # the model committed to this box: a fraction or no number in it is no answer (no fallback)
        chain = _FIRST_CHAIN.search(boxed)
        return _final_value(chain.group()) if chain else None
    if found := _ANSWER_IS.findall(text):
        return _final_value(found[-1])
    numbers = _NUMBER_OR_FRACTION.findall(text)
    return normalize_number(numbers[-1]) if numbers else None   # "3/4" last: normalize_number says None


def reward(response: str, answer: str) -> float:
    """The outcome R of one response: 1.0 if its final number equals the answer, else 0.0."""
    target = normalize_number(answer)
    return 1.0 if target is not None and extract_answer(response) == target else 0.0


# ================================================================================================
# GSM8K files (one JSON object per line, "answer" ends in "#### N") and the hub copy.
# ================================================================================================
def _problem(record, where: str) -> Problem:
    """One GSM8K record -> Problem, or a DataError naming `where` (file:line) and what is expected."""
    expected = "expected an object with string fields 'question' and 'answer' (ending in '#### N')"
    if not isinstance(record, dict):
        raise DataError(f"{where}: a JSON {type(record).__name__}, not an object; {expected}")
    for key in ("question", "answer"):
        if key not in record:
            raise DataError(f"{where}: no '{key}' field; {expected}")
        if not isinstance(record[key], str):
            raise DataError(f"{where}: '{key}' must be a string, not {type(record[key]).__name__}; {expected}")
    if "####" not in record["answer"]:
        raise DataError(f"{where}: the answer has no '####'; expected it to end in '#### N' with the final number N")
    final = record["answer"].rsplit("####", 1)[1].strip()
    if (number := normalize_number(final)) is None:
        raise DataError(f"{where}: the final answer after '####' is {final[:40]!r}, not a number; "
                        "expected e.g. '#### 72'")
    return Problem(record["question"].strip(), number)


def load_jsonl(path: str) -> list[Problem]:
    """Problems from a GSM8K-format JSONL file. Blank lines are skipped; anything else unusable is a
    DataError naming the file and the line."""
    if not os.path.isfile(path):
        raise DataError(f"data file not found: {path}; pass a GSM8K-format JSONL file "
                        "(one {\"question\": ..., \"answer\": \"... #### N\"} per line)")
    problems = []
    try:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg.removesuffix(' at')} at column {e.colno}); "
                                    "expected one JSON object per line") from None
                problems.append(_problem(record, f"{path}:{lineno}"))
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text; expected a GSM8K-format JSONL file") from None
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from None
    if not problems:
        raise DataError(f"{path}: no problems in the file (it is empty or blank); expected GSM8K-format JSONL, one "
                        "{\"question\": ..., \"answer\": \"... #### N\"} per line")
    return problems


def write_jsonl(problems: list[Problem], path: str) -> None:
    """The same format load_jsonl reads (answer field "#### N"), e.g. to export a generated task."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for p in problems:
            f.write(json.dumps({"question": p.question, "answer": f"#### {p.answer}"}) + "\n")


def load_gsm8k(split: str) -> list[Problem]:
    """GSM8K ("openai/gsm8k", config "main") from the Hugging Face hub; split is "train" or "test"."""
    offline_hint = "pass a local GSM8K-format JSONL file with --data-file/--eval-file"
    if split not in ("train", "test"):
        raise DataError(f"GSM8K has splits 'train' and 'test', not {split!r}")
    try:
        import datasets
    except ImportError:
        raise DataError(f"loading GSM8K needs the datasets package: pip install datasets (or {offline_hint})") from None
    try:
        rows = datasets.load_dataset("openai/gsm8k", "main", split=split)
    except Exception as e:   # no network, no cache, hub errors: all mean "not available here"
        raise DataError(f"could not reach openai/gsm8k ({type(e).__name__}): offline or not cached; "
                        f"{offline_hint}") from None
    return [_problem(dict(row), f"openai/gsm8k {split} row {i}") for i, row in enumerate(rows)]


# ================================================================================================
# Prompts. The chat template is applied by the demo; these are the words inside it. Short on purpose:
# every prompt token is paid for on every rollout, and the default model sees ~50 of them.
# ================================================================================================
SYSTEM_PROMPT = "You are a careful math tutor."
# The format hint after the question, by style. "answer" (the default) asks for the bare number, which
# extract_answer reads as the last number; SmolLM2-135M-Instruct scores higher that way than when it
# reasons first. "think" asks for brief reasoning that ends in the marker "The answer is N.".
HINTS = {"answer": "Answer with just the number.", "think": "Think briefly, then end with \"The answer is N.\""}
STYLES = tuple(HINTS)   # ("answer", "think")


def user_message(question: str, style: str = "answer") -> str:
    """The user turn: the question, a new line, and the format hint of `style` (one of STYLES)."""
    if style not in HINTS:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    return f"{question}\n{HINTS[style]}"
