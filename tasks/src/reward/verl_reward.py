"""peirce's reward for the logic tasks, as a verl `custom_reward_function`.

peirce writes this file beside every dataset it exports (`reward.py`), with the reward mode
the export was made with and the character tables below generated from peirce's own reward
(tasks/src/reward/, the home of these rules; docs/architecture.md, "The reward"). It scores
every response exactly as peirce does, byte for byte, which peirce's tests check on a corpus
of responses through verl itself. Use it with verl:

    custom_reward_function.path=DATASET/reward.py custom_reward_function.name=compute_score

Logic tasks (deduction, induction, abduction) only: a boxed-math row (arithmetic, imported
math sets) raises an error naming its data source. Totals are +3, -0.5, -1 and -3 (format
+1 or -1; answer +2 right, -1.5 wrong, -2 unread), as in arXiv 2505.10554.

Python 3.8 or newer, standard library only.
"""

from bisect import bisect_right

# @GENERATED@

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
ANSWER_OPEN = "<answer>"
ANSWER_CLOSE = "</answer>"
END_OF_TURN = ("<|im_end|>", "<|endoftext|>")
KINDS = {
    "peirce/deduction": "assignment",
    "peirce/abduction": "reachability",
    "peirce/induction": "integer",
}

_WHITESPACE = "".join(map(chr, WHITESPACE))
_TO_SPACE = {code: " " for code in WHITESPACE}
_PAPER_SPACE = _WHITESPACE + "\x1c\x1d\x1e\x1f"
_ASCII_LOWER = {code: code + 32 for code in range(ord("A"), ord("Z") + 1)}


def _ascii_lower(text):
    return text.translate(_ASCII_LOWER)


def _logic_total(format_ok, status):
    answer = {"correct": 2.0, "wrong": -1.5, "unparseable": -2.0}[status]
    return (1.0 if format_ok else -1.0) + answer


# --- strict: peirce's documented rules (tasks/src/reward/format.rs, logic.rs) ------------


def _only(text, tag):
    return text.find(tag) if text.count(tag) == 1 else None


def _only_end_of_turn(tail):
    rest = tail
    while True:
        rest = rest.lstrip(_WHITESPACE)
        if not rest:
            return True
        for token in END_OF_TURN:
            if rest.startswith(token):
                rest = rest[len(token):]
                break
        else:
            return False


def check_format(response):
    """The answer text when the strict tag format holds, else None."""
    if THINK_OPEN in response:
        return None
    think_close = _only(response, THINK_CLOSE)
    answer_open = _only(response, ANSWER_OPEN)
    answer_close = _only(response, ANSWER_CLOSE)
    if think_close is None or answer_open is None or answer_close is None:
        return None
    if not think_close < answer_open < answer_close:
        return None
    if response[think_close + len(THINK_CLOSE):answer_open].strip(_WHITESPACE):
        return None
    if not _only_end_of_turn(response[answer_close + len(ANSWER_CLOSE):]):
        return None
    return response[answer_open + len(ANSWER_OPEN):answer_close]


def _last_space(text):
    for index in range(len(text) - 1, -1, -1):
        if ord(text[index]) in WHITESPACE:
            return index
    return None


def _split_numbering(line):
    if line.startswith("("):
        inner = line[1:]
        close = inner.find(")")
        if close >= 0:
            digits = inner[:close]
            if digits and all(c in "0123456789" for c in digits):
                return digits, inner[close + 1:].lstrip(_WHITESPACE)
    return None, line


def _truth_value(word):
    return {"true": True, "false": False}.get(_ascii_lower(word))


def _reachability_value(word):
    return {"reachable": True, "unreachable": False}.get(_ascii_lower(word))


def _parse_entries(text, value_of):
    entries = []
    numbered = None
    for line in text.split("\n"):
        line = line.strip(_WHITESPACE)
        if not line:
            continue
        number, rest = _split_numbering(line)
        if numbered is None:
            numbered = number is not None
        elif numbered != (number is not None):
            return None
        if number is not None and number != str(len(entries) + 1):
            return None
        cut = _last_space(rest)
        if cut is None:
            return None
        head, value = rest[:cut].rstrip(_WHITESPACE), rest[cut + 1:]
        cut = _last_space(head)
        if cut is None or head[cut + 1:] != "is":
            return None
        name = " ".join(word for word in head[:cut].translate(_TO_SPACE).split(" ") if word)
        value = value_of(value)
        if not name or value is None:
            return None
        entries.append((name, value))
    return entries


def _expected_entries(ground_truth, value_of):
    entries = _parse_entries(ground_truth, value_of)
    if not entries or len({name for name, _ in entries}) != len(entries):
        return None
    return entries


def _grade_assignment(answer, ground_truth):
    expected = _expected_entries(ground_truth, _truth_value)
    given = _parse_entries(answer, _truth_value)
    if expected is None or given is None or len(given) != len(expected):
        return "unparseable"
    expected = dict(expected)
    seen = set()
    all_right = True
    for name, value in given:
        if name not in expected or name in seen:
            return "unparseable"
        seen.add(name)
        all_right = all_right and expected[name] == value
    return "correct" if all_right else "wrong"


def _grade_reachability(answer, ground_truth):
    expected = _expected_entries(ground_truth, _reachability_value)
    given = _parse_entries(answer, _reachability_value)
    if expected is None or given is None or len(given) != len(expected):
        return "unparseable"
    if any(g[0] != e[0] for g, e in zip(given, expected)):
        return "unparseable"
    return "correct" if given == expected else "wrong"


def _parse_integer(text):
    text = text.strip(_WHITESPACE)
    if not text:
        return None
    negative, digits = False, text
    if text[0] in "+-":
        negative, digits = text[0] == "-", text[1:]
    if not digits or not all(c in "0123456789" for c in digits):
        return None
    digits = digits.lstrip("0") or "0"
    return (negative and digits != "0", digits)


def _grade_integer(answer, ground_truth):
    given, expected = _parse_integer(answer), _parse_integer(ground_truth)
    if given is None or expected is None:
        return "unparseable"
    return "correct" if given == expected else "wrong"


def _strict(kind, response, ground_truth):
    answer = check_format(response)
    if answer is None:
        return False, "unparseable"
    grade = {
        "assignment": _grade_assignment,
        "reachability": _grade_reachability,
        "integer": _grade_integer,
    }[kind]
    return True, grade(answer, ground_truth)


# --- paper: the released code's rules (tasks/src/reward/paper.rs) ------------------------


def _in_ranges(ranges, code):
    return bisect_right(ranges, code) % 2 == 1


def _is_word(c):
    return c == "_" or _in_ranges(ALPHANUMERIC, ord(c))


def _is_space(c):
    return c in _PAPER_SPACE


def _lower(c):
    code = ord(c)
    if code in MULTI_LOWER:
        return None
    return chr(LOWER.get(code, code))


_FOLDS = {("i", "\u0131"), ("i", "\u0130"), ("s", "\u017f"), ("k", "\u212a")}


def _folds_to(c, p):
    if c == p:
        return True
    p = _ascii_lower(p)
    if "a" <= p <= "z":
        return _ascii_lower(c) == p or (p, c) in _FOLDS
    lower, pattern = _lower(c), _lower(p)
    return lower is not None and pattern is not None and lower == pattern


def _boundary(chars, at):
    before = at > 0 and _is_word(chars[at - 1])
    after = at < len(chars) and _is_word(chars[at])
    return before != after


def _word_at(chars, at, word):
    end = at + len(word)
    if end <= len(chars) and all(_folds_to(c, p) for c, p in zip(chars[at:end], word)):
        return end
    return None


def _spaces_at(chars, at):
    start = min(at, len(chars))
    count = 0
    while start + count < len(chars) and _is_space(chars[start + count]):
        count += 1
    return at + count if count else None


def _value_after(chars, at, values):
    for index, value in enumerate(values):
        end = _word_at(chars, at, value)
        if end is not None and _boundary(chars, end):
            return index
    return None


def _is_value_at(chars, at, values):
    at = _spaces_at(chars, at)
    if at is None:
        return None
    at = _word_at(chars, at, "is")
    if at is None:
        return None
    at = _spaces_at(chars, at)
    if at is None:
        return None
    return _value_after(chars, at, values)


def _ground_truth_entries(ground_truth, values):
    entries = []
    for line in ground_truth.split("\n"):
        chars = line.strip(_PAPER_SPACE)
        for start in range(len(chars)):
            if not (_is_word(chars[start]) and _boundary(chars, start)):
                continue
            end = start
            while end < len(chars) and _is_word(chars[end]):
                end += 1
            value = _is_value_at(chars, end, values)
            if value is not None:
                name = chars[start:end]
                for entry in entries:
                    if entry[0] == name:
                        entry[1] = value == 0
                        break
                else:
                    entries.append([name, value == 0])
                break
    return entries


def _count_value_mentions(chars, values):
    count = 0
    for at in range(len(chars)):
        if not _boundary(chars, at):
            continue
        end = _word_at(chars, at, "is")
        if end is None:
            continue
        end = _spaces_at(chars, end)
        if end is not None and _value_after(chars, end, values) is not None:
            count += 1
    return count


def _named_value(chars, name, values):
    for at in range(len(chars)):
        if not _boundary(chars, at):
            continue
        end = _word_at(chars, at, name)
        if end is None or not _boundary(chars, end):
            continue
        value = _is_value_at(chars, end, values)
        if value is not None:
            return value == 0
    return None


def _paper_lines(answer, ground_truth, reachability):
    values = ("reachable", "unreachable") if reachability else ("true", "false")
    expected = _ground_truth_entries(ground_truth, values)
    if not expected or _count_value_mentions(answer, values) != len(expected):
        return "unparseable"
    all_right = True
    for name, value in expected:
        given = _named_value(answer, name, values)
        if given is None:
            return "unparseable"
        all_right = all_right and given == value
    return "correct" if all_right else "wrong"


def _decimal_digit(c):
    code = ord(c)
    index = bisect_right(DIGIT_ZEROS, code) - 1
    if index < 0 or code - DIGIT_ZEROS[index] >= 10:
        return None
    return code - DIGIT_ZEROS[index]


def _python_int(text):
    text = text.strip(_PAPER_SPACE)
    if not text:
        return None
    negative, rest = False, text
    if text[0] in "+-":
        negative, rest = text[0] == "-", text[1:]
    digits = []
    after_digit = False
    for c in rest:
        if c == "_":
            if not after_digit:
                return None
            after_digit = False
        else:
            digit = _decimal_digit(c)
            if digit is None:
                return None
            digits.append(str(digit))
            after_digit = True
    if not after_digit:
        return None
    trimmed = "".join(digits).lstrip("0")
    return (negative, trimmed) if trimmed else (False, "0")


def _paper_integer(answer, ground_truth):
    expected, given = _python_int(ground_truth), _python_int(answer)
    if expected is None or given is None:
        return "unparseable"
    return "correct" if given == expected else "wrong"


def _paper_answer(response):
    at = response.find("Assistant:")
    text = response[at + len("Assistant:"):] if at >= 0 else THINK_OPEN + response
    tags = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)
    if any(text.count(tag) != 1 for tag in tags):
        return None
    positions = [text.find(tag) for tag in tags]
    if positions != sorted(positions):
        return None
    return text[positions[2] + len(ANSWER_OPEN):positions[3]].strip(_PAPER_SPACE)


def _paper(kind, response, ground_truth):
    answer = _paper_answer(response)
    if answer is None:
        return False, "unparseable"
    if not answer:
        return True, "unparseable"
    if kind == "integer":
        return True, _paper_integer(answer, ground_truth)
    return True, _paper_lines(answer, ground_truth, kind == "reachability")


# --- the entry points ---------------------------------------------------------------------


def grade(kind, response, ground_truth, mode=MODE):
    """(total, format_ok, answer status) of `response` (the text after the prompt's
    `<think>`) against `ground_truth`; `kind` is `assignment`, `reachability` or `integer`,
    `mode` `strict` or `paper`."""
    rules = {"strict": _strict, "paper": _paper}[mode]
    format_ok, status = rules(kind, response, ground_truth)
    return _logic_total(format_ok, status), format_ok, status


def answer_kind(data_source, extra_info=None):
    """How a row is graded: its `extra_info.answer_kind` (peirce writes it), else its
    `data_source`."""
    kind = (extra_info or {}).get("answer_kind") or KINDS.get(data_source)
    if kind == "boxed":
        raise ValueError(
            f"reward.py grades peirce's logic tasks; data_source {data_source!r} is boxed "
            "math, which this module does not grade"
        )
    if kind not in ("assignment", "reachability", "integer"):
        raise ValueError(
            f"reward.py cannot tell how to grade data_source {data_source!r} (answer_kind "
            f"{kind!r}; expected one of {sorted(KINDS)} or an extra_info.answer_kind)"
        )
    return kind


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    """verl's `custom_reward_function`: the total as `score`, plus `acc` (1 for +3) and
    `format_ok`."""
    del kwargs
    total, format_ok, status = grade(answer_kind(data_source, extra_info), solution_str, ground_truth)
    return {
        "score": total,
        "acc": 1.0 if status == "correct" else 0.0,
        "format_ok": 1.0 if format_ok else 0.0,
    }
