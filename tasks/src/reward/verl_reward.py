"""peirce's reward, as a verl `custom_reward_function`.

peirce writes this file beside every dataset it exports (`reward.py`), with the reward mode
the export was made with and the character tables below generated from peirce's own reward
(tasks/src/reward/, the home of these rules; docs/architecture.md, "The reward"). It scores
every response exactly as peirce does, byte for byte, which peirce's tests check on a corpus
of responses through verl itself. Use it with verl:

    custom_reward_function.path=DATASET/reward.py custom_reward_function.name=compute_score

Logic tasks (deduction, induction, abduction): +3, -0.5, -1 and -3 (format +1 or -1; answer
+2 right, -1.5 wrong, -2 unread), as in arXiv 2505.10554, under the strict or the paper's
rules. Boxed math (arithmetic, imported math sets), the same in both modes: 1 when the
final `\\boxed{..}` (the last one in the answer block, else the last one anywhere) is
mathematically the same as the ground truth, else 0 (SimpleRL-Zoo's reward): exact rationals
within Rust's 128-bit integers when both read as numbers, else normalized strings, as
tasks/src/reward/math.rs decides; no computer algebra, no floats.

Python 3.8 or newer, standard library only.
"""

from bisect import bisect_right
from math import gcd

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
    "peirce/arithmetic": "boxed",
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


# --- boxed math: SimpleRL-Zoo's 1 or 0 (tasks/src/reward/math.rs), the same in both modes --

_I128_MIN, _I128_MAX = -(1 << 127), (1 << 127) - 1
_BOX_COMMANDS = ("\\boxed", "\\fbox")
_TEXT_COMMANDS = ("\\text", "\\textbf", "\\textrm", "\\mathrm", "\\mathbf", "\\mbox", "\\operatorname")
_UNIT_OPENINGS = ("\\text{", "\\mbox{", "\\mathrm{", "\\textrm{")
# (pattern, whole command only, replacement), tried in this order.
_DECORATION = (
    ("$", False, ""),
    ("~", False, ""),
    ("%", False, ""),
    ("\\$", False, ""),
    ("\\%", False, ""),
    ("\\!", False, ""),
    ("\\,", False, ""),
    ("\\;", False, ""),
    ("\\:", False, ""),
    ("\\ ", False, ""),
    ("\\left", True, ""),
    ("\\right", True, ""),
    ("\\displaystyle", True, ""),
    ("\\dfrac", True, "\\frac"),
    ("\\tfrac", True, "\\frac"),
    ("{,}", False, ","),
    ("^{\\circ}", False, ""),
    ("^\\circ", False, ""),
    ("\u2212", False, "-"),
    ("\u00b0", False, ""),
)
_DECORATION_FIRST = frozenset(pattern[0] for pattern, _, _ in _DECORATION)
# Rust's `u8::is_ascii_whitespace` (no vertical tab).
_ASCII_WHITESPACE = " \t\n\x0c\r"
_WHITESPACE_SET = frozenset(_WHITESPACE)


def _is_ascii_letter(c):
    return "a" <= c <= "z" or "A" <= c <= "Z"


def _match_braces(text):
    matches = [None] * len(text)
    opened = []
    index = 0
    while index < len(text):
        c = text[index]
        if c == "\\":
            index += 1
        elif c == "{":
            opened.append(index)
        elif c == "}" and opened:
            matches[opened.pop()] = index
        index += 1
    return matches


def _command_at(text, at, command):
    end = at + len(command)
    return text.startswith(command, at) and not (end < len(text) and _is_ascii_letter(text[end]))


def _which_command(text, at, commands):
    if text[at] != "\\":
        return None
    for command in commands:
        if _command_at(text, at, command):
            return command
    return None


def _skip_spaces(text, start):
    while start < len(text) and text[start] in " \t":
        start += 1
    return start


def _find_boxes(text):
    matches = _match_braces(text)
    boxes = []
    index = 0
    while index < len(text):
        command = _which_command(text, index, _BOX_COMMANDS)
        if command is None:
            index += 1
            continue
        after = index + len(command)
        start = _skip_spaces(text, after)
        if start < len(text) and text[start] == "{":
            end = matches[start]
            if end is not None:
                boxes.append((start + 1, end))
                index = end + 1
                continue
        elif start > after:
            end = start
            while end < len(text) and text[end] not in _ASCII_WHITESPACE and text[end] not in "$<":
                end += 1
            if end > start:
                boxes.append((start, end))
                index = end
                continue
        index = after
    return boxes


def last_boxed(text):
    """The content of the last complete top-level box in `text`, or None."""
    boxes = _find_boxes(text)
    return text[boxes[-1][0]:boxes[-1][1]] if boxes else None


def _final_box(response):
    at = response.rfind(ANSWER_OPEN)
    if at >= 0:
        start = at + len(ANSWER_OPEN)
        end = response.find(ANSWER_CLOSE, start)
        content = last_boxed(response[start:end if end >= 0 else len(response)])
        if content is not None:
            return content
    return last_boxed(response)


def _unwrap_commands(text, commands):
    if "\\" not in text:
        return text
    matches = _match_braces(text)
    drop_close = set()
    out = []
    index = 0
    while index < len(text):
        command = _which_command(text, index, commands)
        if command is not None:
            start = _skip_spaces(text, index + len(command))
            if start < len(text) and text[start] == "{" and matches[start] is not None:
                drop_close.add(matches[start])
                index = start + 1
            else:
                index += len(command)
        else:
            if index not in drop_close:
                out.append(text[index])
            index += 1
    return "".join(out)


def _strip_decoration(text):
    out = []
    index = 0
    while index < len(text):
        if text[index] in _DECORATION_FIRST:
            for pattern, whole, replacement in _DECORATION:
                if text.startswith(pattern, index) and (not whole or _command_at(text, index, pattern)):
                    out.append(replacement)
                    index += len(pattern)
                    break
            else:
                out.append(text[index])
                index += 1
        else:
            out.append(text[index])
            index += 1
    return "".join(out)


def _brace_short_arguments(text, command, arguments):
    if command not in text:
        return text
    matches = _match_braces(text)
    out = []
    index = 0
    while index < len(text):
        if text[index] != "\\" or not _command_at(text, index, command):
            out.append(text[index])
            index += 1
            continue
        out.append(command)
        index += len(command)
        for _ in range(arguments):
            c = text[index] if index < len(text) else None
            if c == "{":
                end = matches[index]
                if end is None:
                    break
                out.append(text[index:end + 1])
                index = end + 1
            elif c is None or c in "\\[}":
                break
            else:
                out.append("{" + c + "}")
                index += 1
    return "".join(out)


def _normalize(answer):
    text = _strip_decoration(_unwrap_commands(answer, _BOX_COMMANDS))
    text = "".join(c for c in text if c not in _WHITESPACE_SET).rstrip(".")
    name, equals, value = text.partition("=")
    if (
        equals
        and value
        and "=" not in value
        and 1 <= len(name) <= 2
        and all(_is_ascii_letter(c) for c in name)
    ):
        return value
    return text


# Exact rationals as (numerator, denominator) in lowest terms, denominator positive, both
# within Rust's i128 as the Rust reward computes them (any overflow: not a number).


def _i128(value):
    return value if _I128_MIN <= value <= _I128_MAX else None


def _rational(numerator, denominator):
    if numerator is None or denominator is None or denominator == 0:
        return None
    divisor = max(gcd(abs(numerator), abs(denominator)), 1)
    if divisor > _I128_MAX:
        return None
    # Exact divisions: truncation and flooring agree.
    numerator, denominator = numerator // divisor, denominator // divisor
    if denominator < 0:
        numerator, denominator = _i128(-numerator), _i128(-denominator)
        if numerator is None or denominator is None:
            return None
    return (numerator, denominator)


def _negate(value):
    if value is None:
        return None
    numerator = _i128(-value[0])
    return None if numerator is None else (numerator, value[1])


def _divide(left, right):
    if left is None or right is None:
        return None
    return _rational(_i128(left[0] * right[1]), _i128(left[1] * right[0]))


def _split_sign(text):
    if text[:1] == "-":
        return True, text[1:]
    if text[:1] == "+":
        return False, text[1:]
    return False, text


def _digits(text):
    return all("0" <= c <= "9" for c in text)


def _parse_decimal(text):
    negative, body = _split_sign(text)
    whole, _, fraction = body.partition(".")
    if not whole and not fraction:
        return None
    if "," in whole:
        first, *groups = whole.split(",")
        if not first or len(first) > 3 or any(len(group) != 3 for group in groups):
            return None
    whole = whole.replace(",", "")
    if not _digits(whole) or not _digits(fraction):
        return None
    # i128 holds every number of at most 38 digits and 10^38 (Python's int() also refuses
    # digit strings of thousands of digits, so the length is checked first).
    significant = (whole + fraction).lstrip("0")
    if len(significant) > 39 or len(fraction) > 38:
        return None
    numerator = int(significant) if significant else 0
    if numerator > _I128_MAX:
        return None
    value = _rational(numerator, 10 ** len(fraction))
    return _negate(value) if negative else value


def _parse_number(text):
    negative, body = _split_sign(text)
    if body[:1] in ("-", "+"):
        return None
    if body.startswith("\\frac"):
        arguments = body[len("\\frac"):]
        if len(arguments) >= 2 and arguments[0] == "{" and arguments[-1] == "}":
            numerator, separator, denominator = arguments[1:-1].partition("}{")
            if not separator:
                return None
        elif len(arguments) == 2 and _digits(arguments):
            numerator, denominator = arguments[0], arguments[1]
        else:
            return None
        value = _divide(_parse_decimal(numerator), _parse_decimal(denominator))
    elif "/" in body:
        numerator, _, denominator = body.partition("/")
        value = _divide(_parse_decimal(numerator), _parse_decimal(denominator))
    else:
        value = _parse_decimal(body)
    return _negate(value) if negative else value


def _numeric_value(normalized, text):
    value = _parse_number(normalized)
    if value is None:
        cuts = [normalized.find(opening) for opening in _UNIT_OPENINGS]
        cuts = [cut for cut in cuts if cut >= 0]
        if cuts and min(cuts) > 0:
            value = _parse_number(normalized[:min(cuts)])
    if value is None:
        value = _parse_number(text)
    return value


def _canonical(answer):
    normalized = _normalize(answer)
    text = _unwrap_commands(normalized, _TEXT_COMMANDS)
    text = _brace_short_arguments(text, "\\frac", 2)
    text = _brace_short_arguments(text, "\\sqrt", 1)
    return _numeric_value(normalized, text), text


def math_equivalent(answer, ground_truth):
    """Whether two math answers are the same: equal exact rationals when both read as
    numbers, else equal non-empty normalized strings."""
    (left, left_text), (right, right_text) = _canonical(answer), _canonical(ground_truth)
    if left is not None and right is not None:
        return left == right
    return bool(left_text) and left_text == right_text


def _grade_boxed(response, ground_truth):
    content = _final_box(response)
    if content is None or not _normalize(content):
        return "unparseable"
    return "correct" if math_equivalent(content, ground_truth) else "wrong"


# --- the entry points ---------------------------------------------------------------------


def grade(kind, response, ground_truth, mode=MODE):
    """(total, format_ok, answer status) of `response` (the text after the prompt's
    `<think>`) against `ground_truth`; `kind` is `assignment`, `reachability`, `integer` or
    `boxed`, `mode` `strict` or `paper` (boxed math is graded the same in both)."""
    if kind == "boxed":
        status = _grade_boxed(response, ground_truth)
        return (1.0 if status == "correct" else 0.0), check_format(response) is not None, status
    rules = {"strict": _strict, "paper": _paper}[mode]
    format_ok, status = rules(kind, response, ground_truth)
    return _logic_total(format_ok, status), format_ok, status


def answer_kind(data_source, extra_info=None):
    """How a row is graded: its `extra_info.answer_kind` (peirce writes it), else its
    `data_source`."""
    kind = (extra_info or {}).get("answer_kind") or KINDS.get(data_source)
    if kind not in ("assignment", "reachability", "integer", "boxed"):
        raise ValueError(
            f"reward.py cannot tell how to grade data_source {data_source!r} (answer_kind "
            f"{kind!r}; expected one of {sorted(KINDS)} or an extra_info.answer_kind)"
        )
    return kind


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    """verl's `custom_reward_function`: the total as `score`, plus `acc` (1 for a right
    answer: +3 for a logic task, 1 for boxed math) and `format_ok`."""
    del kwargs
    total, format_ok, status = grade(answer_kind(data_source, extra_info), solution_str, ground_truth)
    return {
        "score": total,
        "acc": 1.0 if status == "correct" else 0.0,
        "format_ok": 1.0 if format_ok else 0.0,
    }
