"""llm_tasks.py: generated problems, answer extraction, the 0/1 reward, GSM8K files. Standard library
only and no network: the hub is replaced by a fake `datasets` module. The whole file takes well under
a second.
"""
import inspect
import json
import random
import re
import string
import subprocess
import sys
import time
import types

import pytest

import llm_tasks
from llm_tasks import (ADD_SUB, DIFFICULTIES, MULTIPLY, SMALL_RANGES, STYLES, THREE_STEPS, TWO_STEPS, DataError,
                       Problem, extract_answer, fill, load_gsm8k, load_jsonl, make_problems, normalize_number, reward,
                       train_and_heldout, user_message, write_jsonl)


def numbers_in(question):
    return [int(n) for n in re.findall(r"\d+", question)]


# ------------------------------------------------------------------------------------------------
# Generated problems
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("difficulty", DIFFICULTIES)
def test_problems_are_a_pure_function_of_the_seed(difficulty):
    state = random.getstate()
    first = make_problems(50, seed=7, difficulty=difficulty)
    assert random.getstate() == state                     # its own Random(seed), never the global one
    assert make_problems(50, seed=7, difficulty=difficulty) == first
    assert make_problems(20, seed=7, difficulty=difficulty) == first[:20]   # more problems extend, not reshuffle
    assert make_problems(50, seed=8, difficulty=difficulty) != first
    assert len({p.question for p in first}) > 45          # varied, not one string repeated


@pytest.mark.parametrize("difficulty, min_numbers", [(1, 2), (2, 2), (3, 2), (4, 2), (5, 4)])
def test_every_difficulty_gives_whole_answers_and_states_its_numbers(difficulty, min_numbers):
    for p in make_problems(300, seed=1, difficulty=difficulty):
        assert re.fullmatch(r"\d+", p.answer) and normalize_number(p.answer) == p.answer   # an integer >= 0
        assert len(numbers_in(p.question)) >= min_numbers
        assert p.question.endswith("?") and "{" not in p.question


def test_levels_are_one_to_five():
    assert DIFFICULTIES == (1, 2, 3, 4, 5)
    for bad in (0, 6):
        with pytest.raises(ValueError, match=r"difficulty must be one of \(1, 2, 3, 4, 5\)"):
            make_problems(1, seed=0, difficulty=bad)


def test_level_1_is_one_small_sum_or_difference():
    problems = make_problems(2000, seed=4, difficulty=1)
    numbers = [n for p in problems for n in numbers_in(p.question)]
    answers = [int(p.answer) for p in problems]
    assert all(len(numbers_in(p.question)) == 2 for p in problems)            # one step: two operands
    assert min(numbers) == 2 and max(numbers) == 20                          # operands 2..20, both ends drawn
    assert min(answers) == 0 and max(answers) == 30                          # answers 0..30, both ends reached
    assert {"more", "left"} <= {w for p in problems for w in p.question.rstrip("?").split()}   # adds and subtracts
    assert not any("each" in p.question or "every" in p.question for p in problems)          # no multiplication


def test_level_2_is_level_1_with_two_digit_numbers():
    problems = make_problems(500, seed=4, difficulty=2)
    assert all(len(numbers_in(p.question)) == 2 for p in problems)
    assert all(10 <= n <= 99 for p in problems for n in numbers_in(p.question))
    assert max(int(p.answer) for p in problems) > 100


def test_level_3_mixes_multiplication_with_level_2_and_levels_use_their_own_templates():
    questions = [p.question for p in make_problems(200, seed=3, difficulty=3)]
    assert any("box holds" in q or "every" in q or "each" in q for q in questions)
    assert any("more" in q or "left" in q or "together" in q or "in all" in q for q in questions)
    for level, marker in [(1, "each"), (2, "each"), (4, "pays with a $100"), (5, "$50 bill")]:
        assert not any(marker in p.question for p in make_problems(300, seed=3, difficulty=level))


# Hand-written answers from the numbers as they appear in each question, template by template: an
# independent check of the formulas in llm_tasks.py (a new template must be added here too).
HAND = {
    "ADD_SUB": [lambda a, b: a + b, lambda a, b: a - b, lambda a, b: a + b, lambda a, b: a - b,
                lambda a, b: a + b, lambda a, b: a - b, lambda a, b: a - b, lambda a, b: a + b],
    "MULTIPLY": [lambda x, y: x * y] * 5,
    "TWO_STEPS": [lambda a, b, c: a + b - c,                  # buys some, gives some away
                  lambda count, price, bill: bill - count * price,
                  lambda per_box, boxes, loose: per_box * boxes + loose,
                  lambda a, b, c: a - b - c,
                  lambda trays, per_tray, eaten: trays * per_tray - eaten,
                  lambda morning, night, days: (morning + night) * days],
    "THREE_STEPS": [lambda a, packs, per_pack, given: a + packs * per_pack - given,
                    lambda c1, p1, c2, p2, bill: bill - c1 * p1 - c2 * p2,
                    lambda a, b, c, d: a + b - c - d,
                    lambda pens, per_pen, bought, sold: pens * per_pen + bought - sold,
                    lambda wage, hours, days, spent: wage * hours * days - spent],
}


@pytest.mark.parametrize("name, templates, ranges", [
    ("ADD_SUB", ADD_SUB, llm_tasks.RANGES), ("ADD_SUB", ADD_SUB, SMALL_RANGES),
    ("MULTIPLY", MULTIPLY, llm_tasks.RANGES), ("TWO_STEPS", TWO_STEPS, llm_tasks.RANGES),
    ("THREE_STEPS", THREE_STEPS, llm_tasks.RANGES)])
def test_each_template_answer_is_right_for_the_numbers_in_its_question(name, templates, ranges):
    assert len(HAND[name]) == len(templates)
    rng = random.Random(0)
    for (text, formula), hand in zip(templates, HAND[name]):
        # the formula uses exactly the numbers the question states
        fields = {f for _, f, _, _ in string.Formatter().parse(text) if f in ranges}
        assert set(inspect.signature(formula).parameters) == fields, text
        for _ in range(30):
            question, answer = fill((text, formula), rng, ranges)
            assert hand(*numbers_in(question)) == answer, question
            # each number within its placeholder's range (a literal $50/$100 bill comes last: zip drops it)
            in_order = [f for _, f, _, _ in string.Formatter().parse(text) if f in ranges]
            assert all(ranges[f][0] <= n <= ranges[f][1] for f, n in zip(in_order, numbers_in(question))), question


def test_splits_are_disjoint_and_held_out_does_not_depend_on_the_training_budget():
    # level 3 has small multiplication templates (64 "rows of chairs" questions), so overlap is certain
    raw_train = make_problems(3000, seed=5, difficulty=3)
    train, heldout = train_and_heldout(3000, 300, seed=5, difficulty=3)
    held_questions = {p.question for p in heldout}
    assert len(train) == 3000 and len(heldout) == 300 == len(held_questions)   # held-out: no repeats
    assert held_questions & {p.question for p in raw_train}                  # the filter had work to do
    assert not held_questions & {p.question for p in train}
    small_train, same_heldout = train_and_heldout(10, 300, seed=5, difficulty=3)
    assert same_heldout == heldout and small_train == train[:10]
    assert train_and_heldout(3000, 300, seed=5, difficulty=3) == (train, heldout)
    assert train_and_heldout(10, 300, seed=6, difficulty=3)[1] != heldout
    assert heldout[:50] != make_problems(50, seed=5, difficulty=3)           # its own derived seed


def test_level_1_splits_are_disjoint_and_held_out_does_not_depend_on_the_training_budget():
    train, heldout = train_and_heldout(2000, 200, seed=5, difficulty=1)
    assert len(train) == 2000 and len({p.question for p in heldout}) == 200
    assert not {p.question for p in heldout} & {p.question for p in train}
    assert train_and_heldout(7, 200, seed=5, difficulty=1) == (train[:7], heldout)


# ------------------------------------------------------------------------------------------------
# Answer extraction and reward
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("12", "12"), ("12.0", "12"), ("12.00", "12"), ("0.50", "0.5"), ("-3", "-3"), ("+4", "4"), ("$1,234", "1234"),
    (" 7 ", "7"), ("12.", "12"), ("100", "100"), ("-0", "0"), ("$ 5", "5"), ("1,234,567.80", "1234567.8"),
    ("3/4", None), ("abc", None), ("", None), ("1,23", None), ("50%", None), ("1e5", None), ("nan", None),
])
def test_normalize_number(text, expected):
    assert normalize_number(text) == expected


@pytest.mark.parametrize("text, expected", [
    # GSM8K's own "#### N" comes first
    ("Mia has 34 + 25 = <<34+25=59>>59 stickers.\n#### 59", "59"),
    ("#### 1,234", "1234"),
    ("#### $18.00", "18"),
    ("The answer is 12.\n#### 13", "13"),
    ("#### Solution\n3 + 4 = 7. The answer is 7.", "7"),              # a markdown heading is not the marker
    # then the last \boxed{...}
    (r"So we get \boxed{1,234}.", "1234"),
    (r"\boxed{42}, then 7 more steps", "42"),
    (r"First \boxed{3}, corrected: \boxed{5}", "5"),
    (r"\boxed{\$12}", "12"),
    (r"\boxed{12 \text{ apples}}", "12"),
    (r"\boxed{1{,}000}", "1000"),
    (r"The answer is 9, so $\boxed{8}$", "8"),
    (r"\boxed{\frac{3}{4}} so 3", None),                             # a boxed fraction is no answer, no fallback
    # then the last "the answer is N" / "answer: N"
    ("The answer is $12.", "12"),
    ("**Answer:** 7", "7"),
    ("answer is 12 apples", "12"),
    ("The answer is 12 apples. Check: 12 - 5 = 7", "12"),              # the marker beats the last number
    ("The answer is 12. No wait, the answer is 15 since 15 > 2.", "15"),
    ("ANSWER: -3", "-3"),
    ("The final answer is: **$1,250.50**", "1250.5"),
    ("The answer is \\(24\\).", "24"),
    ("The answer is \u22124.", "-4"),                                  # a Unicode minus sign
    ("Answer = 100", "100"),
    ("The answer is 0.", "0"),
    ("I answered 5 and then 6", "6"),                                # "answered" is not the marker
    # else the last number
    ("She has 34 + 25 = 59 stickers.", "59"),
    ("...so the total is 12.", "12"),
    ("It costs 3.50 dollars", "3.5"),
    ("12.0", "12"),
    ("The temperature is -2 degrees", "-2"),
    ("34-25=9", "9"),
    ("Total: $1,000,000", "1000000"),
    ("The numbers 3,4,5", "5"),
    ("SmolLM2 is not sure", None),                                   # a digit inside a word is no number
    ("no number here", None),
    ("", None),
])
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize("response, answer, expected", [
    ("So 34 + 25 = 59. The answer is 59.", "59", 1.0),
    ("The answer is 12.0", "12", 1.0),
    ("The answer is 12", "12.00", 1.0),
    ("#### 1234", "1,234", 1.0),
    ("The answer is 58.", "59", 0.0),
    ("The answer is 12. Then 59.", "59", 0.0),                       # the marker, not a later number, decides
    ("I do not know.", "59", 0.0),
    ("The answer is 5.", "five", 0.0),                               # an unusable reference never pays
])
def test_reward(response, answer, expected):
    assert reward(response, answer) == expected


# What we read beside two public graders, on the kinds of misreading issue 20 names. Their columns are
# literal data, computed once outside this project (neither is a dependency): math-verify 0.9.0 run as
# verify(parse(gold), parse(response)); lm-evaluation-harness 0.4.13's gsm8k task, its two filters and
# exact_match re-run as tasks/gsm8k/gsm8k.yaml sets them: "flexible-extract" (the last match of
# (-?[$0-9.,]{2,})|(-?[0-9]+)) and "strict-match" (the first "#### (-?[0-9.,]+)"), scored against
# "#### gold" after deleting ",", "$", everything up to "#### " and one final ".".
# "<<" marks a row where a grader is right and we are not, and says why we keep ours.
EXTRACTION_TABLE = [
    # response, gold, what we read, our reward, math-verify, lm-eval flexible, lm-eval strict
    # a cue, then an expression or an equation: its final value is the answer
    ("The answer is 34 + 25 = 59.", "59", "59", 1.0, 1.0, 1.0, 0.0),
    ("The answer is 34 + 25 = 59.", "34", "59", 0.0, 0.0, 0.0, 0.0),           # was 1: the first number after the cue
    ("The answer is: 7 * 8 = 56", "56", "56", 1.0, 1.0, 1.0, 0.0),
    ("answer = 12 - 5 = 7", "7", "7", 1.0, 1.0, 1.0, 0.0),
    ("The answer is 3 + 4 + 5 = 12 apples.", "12", "12", 1.0, 1.0, 1.0, 0.0),
    ("#### 10 + 5 = 15", "15", "15", 1.0, 1.0, 1.0, 0.0),                      # strict-match reads 10
    ("The answer is 5 (since 2 + 3 = 5).", "5", "5", 1.0, 1.0, 1.0, 0.0),      # the parenthesis explains
    ("The answer is 59 (34 + 25).", "59", "59", 1.0, 0.0, 0.0, 0.0),
    ("The answer is 12. 3 + 9 = 12", "12", "12", 1.0, 1.0, 1.0, 0.0),          # the sentence ends the answer
    ("The answer is 7 \\times 8 = 56.", "56", "56", 1.0, 1.0, 1.0, 0.0),
    ("The answer is 7x8=56", "56", "56", 1.0, 0.0, 1.0, 0.0),
    ("The answer is 18 stickers + 7 stickers = 25 stickers.", "25", "25", 1.0, 1.0, 1.0, 0.0),
    ("The answer is (3 + 4) * 2 = 14.", "14", "14", 1.0, 1.0, 1.0, 0.0),
    ("The answer is 34 + 25, which is 59.", "59", "59", 1.0, 1.0, 1.0, 0.0),
    ("The answer is 59 = 34 + 25.", "59", "59", 1.0, 1.0, 0.0, 0.0),
    # << math-verify evaluates 34 + 25; we do not: it would pay for restating the question's numbers
    ("The answer is 34 + 25.", "59", None, 0.0, 1.0, 0.0, 0.0),
    ("\\boxed{34 + 25 = 59}", "59", "59", 1.0, 1.0, 1.0, 0.0),
    # fractions: no whole-number answer, inside \boxed{} or outside it
    ("The answer is 3/4.", "4", None, 0.0, 0.0, 1.0, 0.0),                     # was 1 for "3"
    ("3/4", "4", None, 0.0, 0.0, 1.0, 0.0),                                    # was 1 for "4"
    ("\\boxed{3/4}", "4", None, 0.0, 0.0, 1.0, 0.0),
    ("\\boxed{\\frac{3}{4}}", "4", None, 0.0, 0.0, 1.0, 0.0),
    ("She ate \\frac{3}{4} of the pie.", "4", None, 0.0, 0.0, 1.0, 0.0),
    ("The answer is 3/4 = 0.75.", "0.75", "0.75", 1.0, 1.0, 1.0, 0.0),
    ("The answer is 6/2.", "3", None, 0.0, 1.0, 0.0, 0.0),                     # << as 34 + 25 above
    ("\\boxed{6/2 = 3}", "3", "3", 1.0, 1.0, 1.0, 0.0),
    ("The answer is 1/2 of 10 = 5.", "5", "5", 1.0, 1.0, 1.0, 0.0),
    ("So 3/4 of 12 is 9.", "9", "9", 1.0, 1.0, 1.0, 0.0),
    # decimals, commas, negative numbers, units and currency
    ("The answer is 2.5 * 4 = 10.", "10", "10", 1.0, 1.0, 1.0, 0.0),
    ("The answer is 12.0", "12", "12", 1.0, 1.0, 0.0, 0.0),
    ("The answer is $12.50 per hour.", "12.5", "12.5", 1.0, 1.0, 0.0, 0.0),
    ("The answer is $1,200.", "1200", "1200", 1.0, 1.0, 1.0, 0.0),
    ("The answer is $1,200 + $300 = $1,500.", "1500", "1500", 1.0, 1.0, 1.0, 0.0),
    ("The answer is -3.", "-3", "-3", 1.0, 1.0, 1.0, 0.0),
    ("The answer is 5 - 8 = -3.", "-3", "-3", 1.0, 1.0, 1.0, 0.0),
    ("The answer is 5 \u2212 8 = \u22123.", "-3", "-3", 1.0, 0.0, 0.0, 0.0),   # Unicode minus signs
    ("The answer is 50% of 10 = 5.", "5", "5", 1.0, 1.0, 1.0, 0.0),
    ("The answer is 12 out of 20.", "12", "12", 1.0, 1.0, 0.0, 0.0),
    # several cues: the last one decides, and a cue beats any later number
    ("The answer is 12. No wait, the answer is 15 - 2 = 13.", "13", "13", 1.0, 1.0, 1.0, 0.0),
    ("The answer is 12, which is 3 more than 9.", "12", "12", 1.0, 1.0, 0.0, 0.0),
    ("The answer is 12 apples. Check: 12 - 5 = 7", "12", "12", 1.0, 0.0, 0.0, 0.0),
    # no cue: the last number (the module's documented fallback, kept)
    ("Liam has 18 + 7 = 25 now.", "25", "25", 1.0, 1.0, 1.0, 0.0),
    # << no 25 is stated, as math-verify says; kept: without a cue the reward reads the last number
    ("34 + 25", "25", "25", 1.0, 0.0, 1.0, 0.0),
]


@pytest.mark.parametrize("response, gold, read, ours, math_verify, lm_eval_flexible, lm_eval_strict",
                         EXTRACTION_TABLE)
def test_extraction_table(response, gold, read, ours, math_verify, lm_eval_flexible, lm_eval_strict):
    assert extract_answer(response) == read
    assert reward(response, gold) == ours


def test_extraction_takes_linear_time_on_long_degenerate_responses():
    # nested optional runs of spaces and brackets make a regex try every split of a run: seconds to hours
    # on a few thousand characters. A sampled response can be any text, so each pattern reads one way.
    n = 20000
    cases = [("The answer is (" + "[ (" * n, None), ("\\boxed{" + "( " * n + "}", None),
             ("The answer is 1 =" + " " * n + "x", "1"), ("The answer is 1" + " " * n + "+ 2", None),
             ("1" + " " * n + "x", "1"), ("\\boxed{" + "(" * n + " " * n + "}", None),
             ("The answer is 1 + 1" + ", which is 1 + 1" * n, None)]
    for response, read in cases:
        start = time.perf_counter()
        assert extract_answer(response) == read
        assert time.perf_counter() - start < 120, response[:30]   # ~0.1 s each here, minutes when quadratic: only a blow-up fails


def test_the_prompt_asks_for_the_format_the_reward_reads_and_stays_short():
    question = "Mia has 7 stickers. She buys 5 more. How many stickers does she have now?"
    assert STYLES == ("answer", "think")
    assert user_message(question) == user_message(question, "answer") == f"{question}\nAnswer with just the number."
    assert user_message(question, "think") == f"{question}\nThink briefly, then end with \"The answer is N.\""
    for style in STYLES:
        message = user_message(question, style)
        assert message.startswith(question + "\n")
        assert len(message.split()) - len(question.split()) <= 12 and len(llm_tasks.SYSTEM_PROMPT.split()) <= 10
    assert reward("12", "12") == reward("12.", "12") == 1.0                 # what the "answer" style asks for
    assert reward("7 + 5 = 12. The answer is 12.", "12") == 1.0             # what the "think" style asks for
    with pytest.raises(ValueError, match=r"style must be one of \('answer', 'think'\)"):
        user_message(question, "cot")


# ------------------------------------------------------------------------------------------------
# GSM8K files and the hub
# ------------------------------------------------------------------------------------------------
GOOD = json.dumps({"question": "Natalia sold 48 clips in April and half as many in May. How many in all?",
                   "answer": "In May she sold 48/2 = <<48/2=24>>24 clips.\n48+24 = <<48+24=72>>72\n#### 72"})


def test_load_jsonl_reads_gsm8k_format_and_skips_blank_lines(tmp_path):
    path = tmp_path / "gsm.jsonl"
    path.write_text("\n" + GOOD + "\n\n" + json.dumps({"question": "Q2?", "answer": "#### 1,500"}) + "\n  \n")
    assert load_jsonl(str(path)) == [
        Problem("Natalia sold 48 clips in April and half as many in May. How many in all?", "72"),
        Problem("Q2?", "1500")]


def test_write_then_load_is_the_identity(tmp_path):
    problems = make_problems(40, seed=2, difficulty=5)
    path = tmp_path / "export" / "task.jsonl"                        # the folder is created
    write_jsonl(problems, str(path))
    assert load_jsonl(str(path)) == problems
    assert json.loads(path.read_text().splitlines()[0])["answer"] == f"#### {problems[0].answer}"


@pytest.mark.parametrize("content, lineno, what", [
    (GOOD + "\n{oops\n", 2, "not valid JSON (Expecting property name enclosed in double quotes at column 2)"),
    (GOOD + '\n{"question": "a\tb", "answer": "#### 1"}\n', 2, "not valid JSON (Invalid control character at column 16)"),
    ("[1, 2]\n", 1, "not an object"),
    (GOOD + "\n\n" + json.dumps({"question": "q"}) + "\n", 3, "no 'answer' field"),
    (json.dumps({"answer": "#### 1"}) + "\n", 1, "no 'question' field"),
    (json.dumps({"question": "q", "answer": 72}) + "\n", 1, "'answer' must be a string, not int"),
    (json.dumps({"question": ["q"], "answer": "#### 1"}) + "\n", 1, "'question' must be a string, not list"),
    (GOOD + "\n" + json.dumps({"question": "q", "answer": "it is 72"}) + "\n", 2, "has no '####'"),
    (json.dumps({"question": "q", "answer": "#### seventy-two"}) + "\n", 1, "not a number"),
])
def test_load_jsonl_names_file_line_and_problem(tmp_path, content, lineno, what):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(DataError) as err:
        load_jsonl(str(path))
    message = str(err.value)
    assert f"{path}:{lineno}:" in message and what in message and "expected" in message and "\n" not in message


@pytest.mark.parametrize("content", ["", "\n  \n"])
def test_load_jsonl_refuses_an_empty_file(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    with pytest.raises(DataError, match=r"empty\.jsonl: no problems .*expected GSM8K"):
        load_jsonl(str(path))


def test_load_jsonl_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"not found: .*nowhere\.jsonl; pass a GSM8K-format JSONL"):
        load_jsonl(str(tmp_path / "nowhere.jsonl"))


def test_load_gsm8k_without_the_datasets_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)               # makes `import datasets` fail
    with pytest.raises(DataError, match="pip install datasets"):
        load_gsm8k("test")


def test_load_gsm8k_offline_points_to_a_local_file(monkeypatch):
    def load_dataset(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'openai/gsm8k' on the Hub (LocalEntryNotFoundError)")
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    with pytest.raises(DataError, match=r"could not reach openai/gsm8k .*offline.*--data-file/--eval-file"):
        load_gsm8k("train")
    with pytest.raises(DataError, match="splits 'train' and 'test'"):
        load_gsm8k("validation")


def test_load_gsm8k_converts_hub_rows(monkeypatch):
    calls = []
    def load_dataset(*args, **kwargs):
        calls.append((args, kwargs))
        return [json.loads(GOOD), {"question": "q", "answer": "no marker"}][:1 if len(calls) == 1 else 2]
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    assert load_gsm8k("test") == [Problem(json.loads(GOOD)["question"], "72")]
    assert calls == [(("openai/gsm8k", "main"), {"split": "test"})]
    with pytest.raises(DataError, match=r"openai/gsm8k test row 1: the answer has no '####'"):
        load_gsm8k("test")


def test_module_needs_only_the_standard_library():
    code = "import sys, llm_tasks; print([m for m in ('torch', 'numpy', 'datasets') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], cwd=llm_tasks.__file__.rsplit("/", 1)[0],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
