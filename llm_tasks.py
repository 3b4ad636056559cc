"""The data side of the LLM demo: math word problems, answer extraction, and the 0/1 reward.

In sppo.py's vocabulary a problem's question is the initial state s0 (the prompt), the model's whole
response is the action, and `reward` is the episode outcome R: 1.0 if the response's final number is
the right answer, else 0.0. The reward is *verifiable* -- a string comparison, no reward model -- so
every bit of learning signal comes from the problem, and nothing can be gamed but the answer itself.

Why the task is built this way:
  * Generated problems by default, GSM8K optionally. SmolLM2-135M-Instruct solves almost no real
    GSM8K problem; with all-zero rewards every advantage is zero (GRPO, RLOO) or V(s0) simply learns 0
    (SPPO) and nothing is learned. `difficulty` (1-4 arithmetic steps) lets you pick a level where the
    base model is right 5-40% of the time: the variance p(1-p) of a 0/1 reward is the signal, and it
    vanishes at p = 0 and p = 1.
  * A fixed held-out split. It is drawn from its own derived seed, so changing the training budget
    never changes the evaluation set (curves from different --num-problems compare on the same
    questions), and no held-out question appears in training (accuracy measures generalisation, not
    memorisation).
  * Lenient about format, strict about value. `extract_answer` accepts GSM8K's "#### N", "\\boxed{N}",
    "The answer is N." and falls back to the last number, so the reward judges the arithmetic and the
    model does not first have to learn one exact output format. Numbers compare after normalisation
    ("12.0" == "12", "$1,234" == "1234"). Fractions ("3/4") are NOT supported: normalize_number returns
    None for them. Every answer here and in GSM8K is a plain number, and a wrong "3/4" -> "3" reading
    could reward a wrong response.

Standard library only (the `datasets` package is imported inside load_gsm8k, and only there).

Usage:
    python -c "import llm_tasks as t; [print(p) for p in t.make_problems(3, seed=0, difficulty=3)]"
    python -c "import llm_tasks as t; print(t.reward('So 34 + 25 = 59. The answer is 59.', '59'))"
"""
from __future__ import annotations

import itertools
import json
import os
import random
import re
from dataclasses import dataclass
from decimal import Decimal


class DataError(ValueError):
    """A data file or data set that cannot be used: reported as one line."""


@dataclass(frozen=True)
class Problem:
    question: str   # the word problem, as the user turn of the chat (the prompt s0)
    answer: str     # the canonical final number, e.g. "42", "3.5", "-7" (see normalize_number)


# ================================================================================================
# Generated word problems. Each template draws its own numbers and returns (question, answer); the
# numbers appear in the question in the order the formula in the test file uses them. Many names,
# objects and phrasings, so the model must read the numbers instead of memorising strings.
# ================================================================================================
PEOPLE = [("Mia", "she"), ("Liam", "he"), ("Ava", "she"), ("Noah", "he"), ("Zoe", "she"), ("Omar", "he"),
          ("Lena", "she"), ("Ravi", "he"), ("Sofia", "she"), ("Ben", "he"), ("Nora", "she"), ("Kai", "he")]
OBJECTS = ["stickers", "marbles", "apples", "pencils", "books", "cards", "shells", "stamps", "cookies",
           "balloons", "crayons", "toy cars"]


def _words(rng: random.Random):
    """(name, pronoun, friend's name, plural object) -- a fresh little cast for one problem."""
    (name, she), obj = rng.choice(PEOPLE), rng.choice(OBJECTS)
    friend = rng.choice([other for other, _ in PEOPLE if other != name])
    return name, she, friend, obj


def _two_digit(rng): return rng.randint(10, 99)
def _factor(rng): return rng.randint(2, 9)


# Level 1: one addition or subtraction of two 2-digit numbers.
def buys_more(rng):
    name, she, _, obj = _words(rng); a, b = _two_digit(rng), _two_digit(rng)
    return f"{name} has {a} {obj}. {she.capitalize()} buys {b} more. How many {obj} does {she} have now?", a + b

def gives_away(rng):
    name, she, friend, obj = _words(rng); a, b = _two_digit(rng), _two_digit(rng)
    return f"{name} has {a} {obj}. {she.capitalize()} gives {b} to {friend}. How many {obj} does {she} have left?", a - b

def box_adds(rng):
    name, _, _, obj = _words(rng); a, b = _two_digit(rng), _two_digit(rng)
    return f"There are {a} {obj} in a box. {name} puts in {b} more. How many {obj} are in the box now?", a + b

def loses(rng):
    name, she, _, obj = _words(rng); a, b = _two_digit(rng), _two_digit(rng)
    return f"{name} had {a} {obj}. {she.capitalize()} lost {b} of them. How many {obj} does {she} have now?", a - b

def together(rng):
    name, _, friend, obj = _words(rng); a, b = _two_digit(rng), _two_digit(rng)
    return f"{name} has {a} {obj} and {friend} has {b} {obj}. How many {obj} do they have together?", a + b

def how_many_more(rng):
    name, _, friend, obj = _words(rng); a, b = _two_digit(rng), _two_digit(rng)
    return f"{name} has {a} {obj}. {friend} has {b} {obj}. How many more {obj} does {name} have than {friend}?", a - b

def shop_sells(rng):
    _, _, _, obj = _words(rng); a, b = _two_digit(rng), _two_digit(rng)
    return f"A shop had {a} {obj}. It sold {b} of them. How many {obj} does the shop have left?", a - b

def reads_pages(rng):
    name, she, _, _ = _words(rng); a, b = _two_digit(rng), _two_digit(rng)
    return f"{name} read {a} pages on Monday and {b} pages on Tuesday. How many pages did {she} read in all?", a + b


# Level 2 adds one multiplication of two small factors.
def boxes_hold(rng):
    _, _, _, obj = _words(rng); a, b = _factor(rng), _factor(rng)
    return f"A box holds {a} {obj}. How many {obj} are in {b} boxes?", a * b

def buys_packs(rng):
    name, she, _, obj = _words(rng); a, b = _factor(rng), _factor(rng)
    return f"{name} buys {a} packs of {obj}. Each pack has {b} {obj}. How many {obj} does {she} buy?", a * b

def saves_weekly(rng):
    name, she, _, _ = _words(rng); a, b = _factor(rng), _factor(rng)
    return f"{name} saves ${a} every week. How many dollars does {she} save in {b} weeks?", a * b

def chair_rows(rng):
    a, b = _factor(rng), _factor(rng)
    return f"A room has {a} rows of chairs with {b} chairs in each row. How many chairs are there?", a * b

def walks_daily(rng):
    name, she, _, _ = _words(rng); a, b = _factor(rng), _factor(rng)
    return f"{name} walks {a} miles every day. How many miles does {she} walk in {b} days?", a * b


# Level 3: two steps.
def buys_then_gives(rng):
    name, she, friend, obj = _words(rng); a, b, c = _two_digit(rng), _two_digit(rng), _two_digit(rng)
    return (f"{name} has {a} {obj}. {she.capitalize()} buys {b} more and then gives {c} to {friend}. "
            f"How many {obj} does {she} have now?"), a + b - c

def change_one_item(rng):
    name, she, _, obj = _words(rng); count, price = _factor(rng), rng.randint(2, 12)
    bill = next(b for b in (10, 20, 50, 100) if b >= count * price)     # the smallest bill that covers it
    return (f"{name} buys {count} {obj} for ${price} each and pays with a ${bill} bill. "
            f"How many dollars of change does {she} get?"), bill - count * price

def boxes_and_loose(rng):
    name, she, _, obj = _words(rng); a, b, c = _factor(rng), _factor(rng), _two_digit(rng)
    return (f"A box holds {a} {obj}. {name} has {b} full boxes and {c} loose {obj}. "
            f"How many {obj} does {she} have in all?"), a * b + c

def gives_to_two(rng):
    name, she, friend, obj = _words(rng); a, b, c = rng.randint(50, 99), _two_digit(rng), _two_digit(rng)
    return (f"{name} had {a} {obj}. {she.capitalize()} gave {b} to {friend} and {c} to a neighbour. "
            f"How many {obj} does {name} have left?"), a - b - c

def trays_eaten(rng):
    name, she, _, _ = _words(rng); a, b, c = _factor(rng), rng.randint(6, 12), rng.randint(2, 20)
    return (f"{name} bakes {a} trays of cookies with {b} cookies on each tray. {she.capitalize()} eats {c} "
            f"of them. How many cookies are left?"), a * b - c

def reads_twice_daily(rng):
    name, she, _, _ = _words(rng); a, b, c = rng.randint(2, 20), rng.randint(2, 20), _factor(rng)
    return (f"{name} reads {a} pages every morning and {b} pages every night. "
            f"How many pages does {she} read in {c} days?"), (a + b) * c


# Level 4: three steps.
def packs_then_gives(rng):
    name, she, friend, obj = _words(rng); a, b, c, d = _two_digit(rng), _factor(rng), _factor(rng), _two_digit(rng)
    return (f"{name} has {a} {obj}. {she.capitalize()} buys {b} packs with {c} {obj} in each pack, then gives "
            f"{d} {obj} to {friend}. How many {obj} does {she} have now?"), a + b * c - d

def change_two_items(rng):
    name, she, _, _ = _words(rng)
    c1, p1, c2, p2 = _factor(rng), rng.randint(2, 9), _factor(rng), rng.randint(2, 9)
    bill = next((b for b in (20, 50, 100) if b >= c1 * p1 + c2 * p2), 100)  # > $100 gives < 0: redrawn
    return (f"{name} buys {c1} notebooks for ${p1} each and {c2} pens for ${p2} each. {she.capitalize()} pays "
            f"with a ${bill} bill. How many dollars of change does {she} get?"), bill - c1 * p1 - c2 * p2

def buys_gives_loses(rng):
    name, she, friend, obj = _words(rng); a, b, c, d = (_two_digit(rng) for _ in range(4))
    return (f"{name} had {a} {obj}. {she.capitalize()} bought {b} more, gave {c} to {friend}, and then lost {d}. "
            f"How many {obj} does {she} have now?"), a + b - c - d

def farm_sheep(rng):
    a, b, c, d = _factor(rng), rng.randint(5, 20), _two_digit(rng), _two_digit(rng)
    return (f"A farm has {a} pens with {b} sheep in each pen. The farmer sells {c} sheep and then buys {d} "
            f"more. How many sheep are on the farm now?"), a * b - c + d

def wages_spent(rng):
    name, she, _, _ = _words(rng); a, b, c, d = rng.randint(5, 15), _factor(rng), rng.randint(2, 6), _two_digit(rng)
    return (f"{name} earns ${a} an hour and works {b} hours a day for {c} days. {she.capitalize()} spends ${d}. "
            f"How many dollars does {she} have left?"), a * b * c - d


LEVEL_1 = [buys_more, gives_away, box_adds, loses, together, how_many_more, shop_sells, reads_pages]
TEMPLATES = {
    1: LEVEL_1,
    2: LEVEL_1 + [boxes_hold, buys_packs, saves_weekly, chair_rows, walks_daily],   # 5 of 13 multiply
    3: [buys_then_gives, change_one_item, boxes_and_loose, gives_to_two, trays_eaten, reads_twice_daily],
    4: [packs_then_gives, change_two_items, buys_gives_loses, farm_sheep, wages_spent],
}
DIFFICULTIES = tuple(TEMPLATES)   # (1, 2, 3, 4): for argparse choices in the demo


def _problem_stream(rng: random.Random, difficulty: int):
    """An endless, reproducible stream of Problems. Draws whose answer is negative are redrawn (from
    the same rng, so the stream stays a pure function of the seed): "how many are left" must be >= 0."""
    if difficulty not in TEMPLATES:
        raise ValueError(f"difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
    draws = (rng.choice(TEMPLATES[difficulty])(rng) for _ in itertools.count())
    return (Problem(question, str(answer)) for question, answer in draws if isinstance(answer, int) and answer >= 0)


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
# Not preceded by a letter, digit or "." ("SmolLM2" holds no number; ".5" is not read as 5).
NUMBER = r"(?<![\w.])[-+\u2212]?\$?\s?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?"
_CANONICAL = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
_HASHES = re.compile(r"####\s*(" + NUMBER + ")")                  # "#### 72"; a markdown "#### Step 1" is not it
_ANSWER_IS = re.compile(r"\banswer\s*(?:is|:|=)?[\s:*$\\(\[{]*(" + NUMBER + ")", re.IGNORECASE)


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


def extract_answer(text: str) -> str | None:
    """The response's final answer as a canonical number string, or None. First rule that applies:
    the last "#### N"; the last \\boxed{...}; the last "the answer is N" / "answer: N"; the last number."""
    if found := _HASHES.findall(text):
        return normalize_number(found[-1])
    if (boxed := _boxed(text)) is not None:
        # the model committed to this box: a fraction or no number in it is no answer (no fallback)
        boxed = boxed.replace("{,}", ",").replace("\\$", "$").replace("\\,", "").replace("\\!", "")
        numbers = re.findall(NUMBER, boxed)
        return normalize_number(numbers[0]) if numbers and "/" not in boxed and "frac" not in boxed else None
    if found := _ANSWER_IS.findall(text):
        return normalize_number(found[-1])
    numbers = re.findall(NUMBER, text)
    return normalize_number(numbers[-1]) if numbers else None


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
            raise DataError(f"{where}: '{key}' is a {type(record[key]).__name__}, not a string; {expected}")
    if "####" not in record["answer"]:
        raise DataError(f"{where}: the answer has no '####'; GSM8K answers end in '#### N' with the final number N")
    final = record["answer"].rsplit("####", 1)[1].strip()
    if (number := normalize_number(final)) is None:
        raise DataError(f"{where}: the final answer after '####' is {final[:40]!r}, not a number; expected e.g. '#### 72'")
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
                    raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg}); expected one JSON object per line") from None
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


def user_message(question: str) -> str:
    return f"{question}\nThink briefly, then end with \"The answer is N.\""
