"""Math accuracy: is the final answer equal to the reference? (math-verify + sympy)

Bounded time: math-verify's own timeouts use signal.alarm, which works only in
a process's main thread, and big-number arithmetic in C cannot be interrupted
even there. So callers run this in `workers.rewards.pool`, whose worker
processes run it in their main thread and are killed when a sample overruns.
The cheap guards below turn away the worst inputs before sympy sees them.
"""

import re

from workers.rewards.base import Reward, Sample
from workers.rewards.extract import DEFAULT_FALLBACKS, extract_answer

MAX_DIGIT_RUN = 400  # a 20,000-digit "number" is not an answer
MAX_NESTED_POWERS = 3  # a^{b^{c^{d}}} and deeper: sympy may try to evaluate a power tower
CHOICE_LETTERS = "ABCDEFGHIJ"

_DIGIT_RUN = re.compile(rf"\d{{{MAX_DIGIT_RUN + 1},}}")
# A choice letter as graders meet it: "B", "(B)", "B)", "B.", "B: 42", "(B) 42", once wrappers such as
# \text{}, **bold** and $...$ are gone, or after "the answer is" / "option". A letter that starts a word
# ("A car ...") is not a choice.
_CHOICE_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mathbf|boxed)\{([^{}]*)\}|\*\*(.*?)\*\*|\$([^$]*)\$")
_CHOICE = re.compile(
    r"^(?:(?:the\s+)?(?:final\s+)?(?:answer|option|choice)\s*(?:is|:)?\s*)?"
    r"(?:\(([A-J])\)|([A-J])(?=$|[.:)\s]*$|[.:)]))",
    re.IGNORECASE,
)


def math_accuracy(sample: Sample, *, fallbacks=DEFAULT_FALLBACKS, timeout_s: int = 5) -> Reward:
    extraction = extract_answer(sample.completion, tuple(fallbacks))
    details = {"extracted": extraction.text, "method": extraction.method, "reference": sample.reference}
    if extraction.text is None:
        too_long = "characters)" in extraction.method
        return Reward.zero("the final answer is too long" if too_long else "no final answer found", **details)
    reference = reference_answer(sample.reference)
    if not reference:
        return Reward.zero("the prompt has no reference answer", **details)
    if len(reference) == 1 and reference in CHOICE_LETTERS:  # "e" and "i" are constants, not choices
        chosen = _choice_letter(extraction.text)
        correct = chosen == reference.upper()
        details["parsed_answer"] = chosen
        return Reward(1.0 if correct else 0.0, details | ({} if correct else {"reason": "wrong choice"}))
    refused = refuse_expensive(extraction.text)
    if refused:
        return Reward.zero(refused, **details)
    fast = quick_verdict(reference, extraction.text)
    if fast is not None:
        details["checked_by"] = "plain comparison"
        return Reward(1.0, details) if fast else Reward.zero("the answer does not match the reference", **details)
    return _verify(reference, extraction.text, details, timeout_s)


def reference_answer(reference: str) -> str:
    """The answer inside a worked reference ('… #### 18', '… A: 18', '\\boxed{…}'), else the reference itself."""
    found = extract_answer(reference)
    return (found.text if found.text is not None else reference).strip()


_NOISE = re.compile(r"\s+|\$|\\[,!;:]|\\left|\\right|\\displaystyle")
_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
_NUMBER_SET = re.compile(r"\\\{(.*)\\\}")


def quick_verdict(reference: str, answer: str) -> bool | None:
    """Settle the common cases without sympy: the same text, plain numbers, sets of plain numbers.

    None when it cannot tell; math-verify decides then. (math-verify spends 35-50 ms
    on an interval or a set, a tenth of that on a number.)
    """
    ref, ans = _NOISE.sub("", reference), _NOISE.sub("", answer)
    if ref == ans:
        return True
    ref_number, ans_number = _plain_number(ref), _plain_number(ans)
    if ref_number is not None and ans_number is not None:
        return round(ref_number, 6) == round(ans_number, 6)  # math-verify's float_rounding
    ref_set, ans_set = _number_set(ref), _number_set(ans)
    if ref_set is not None and ans_set is not None:
        return ref_set == ans_set
    return None


def _plain_number(text: str) -> float | None:
    return float(text.replace(",", "")) if _NUMBER.fullmatch(text) else None


def _number_set(text: str) -> set[float] | None:
    match = _NUMBER_SET.fullmatch(text)
    if not match:
        return None
    numbers = [_plain_number(item) for item in match.group(1).split(",")]
    return None if None in numbers else {round(n, 6) for n in numbers}


def refuse_expensive(answer: str) -> str | None:
    if _DIGIT_RUN.search(answer):
        return f"the answer has a number of more than {MAX_DIGIT_RUN} digits"
    if _power_depth(answer) > MAX_NESTED_POWERS:
        return f"the answer nests powers more than {MAX_NESTED_POWERS} deep"
    return None


def equivalent(a: str, b: str, timeout_s: int = 2) -> bool:
    """Whether two extracted answers are the same value (majority voting groups answers by this)."""
    verdict = quick_verdict(a, b)
    if verdict is not None:
        return verdict
    if refuse_expensive(a) or refuse_expensive(b):
        return False
    from math_verify import verify

    try:
        return verify(_parse(a, timeout_s), _parse(b, timeout_s), timeout_seconds=timeout_s)
    except Exception:  # math-verify raises on some malformed LaTeX
        return False


def _power_depth(text: str) -> int:
    """How deeply ^ nests (x^{y^{z}} is 3), counting braces after each ^."""
    depth = deepest = 0
    stack = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "^":
            depth += 1
            deepest = max(deepest, depth)
            if text[i + 1:i + 2] == "{":
                stack.append(True)
                i += 2
                continue
            depth -= 1 if i + 1 < len(text) and text[i + 1] != "^" else 0
        elif c == "{":
            stack.append(False)
        elif c == "}" and stack:
            if stack.pop():
                depth -= 1
        i += 1
    return deepest


def _choice_letter(answer: str) -> str | None:
    text = answer.strip()
    while (unwrapped := _CHOICE_WRAPPER.sub(lambda m: next(g for g in m.groups() if g is not None), text)) != text:
        text = unwrapped.strip()
    match = _CHOICE.match(text)
    if not match:
        return None
    letter = match.group(1) or match.group(2)
    said = text.lower().startswith(("the", "answer", "option", "choice"))  # "the answer is (c)": a choice
    return letter.upper() if letter.isupper() or said else None


def _parse(text: str, timeout_s: int):
    from math_verify import parse

    # Wrapped in $…$ so math-verify reads it as LaTeX; plain text as a fallback.
    parsed = parse(f"${text}$", parsing_timeout=timeout_s)
    return parsed or parse(text, parsing_timeout=timeout_s)


def _verify(reference: str, answer: str, details: dict, timeout_s: int) -> Reward:
    from math_verify import verify

    try:
        gold = _parse(reference, timeout_s)
        pred = _parse(answer, timeout_s)
    except Exception as exc:  # math-verify raises on some malformed LaTeX despite raise_on_error=False
        return Reward.zero(f"could not parse: {type(exc).__name__}", **details)
    details |= {"parsed_reference": _shown(gold), "parsed_answer": _shown(pred)}
    if not gold:
        return Reward.zero("could not parse the reference answer", **details)
    if not pred:
        return Reward.zero("could not parse the answer", **details)
    try:
        correct = verify(gold, pred, timeout_seconds=timeout_s)
    except Exception as exc:
        return Reward.zero(f"could not compare: {type(exc).__name__}", **details)
    if not correct and same_value(gold, pred):
        correct, details["checked_by"] = True, "numeric value"
    return Reward(1.0, details) if correct else Reward.zero("the answer does not match the reference", **details)


def same_value(gold: list, pred: list, tolerance: float = 1e-9) -> bool:
    """Whether two parsed answers evaluate to the same number once the constants a model writes as
    letters mean what they mean (i, e, pi): e^{i\\pi} is -1 and i^4 is 1, which math-verify leaves
    symbolic. Closed forms only: an answer with any other free symbol is not evaluated."""
    import sympy

    constants = {"i": sympy.I, "e": sympy.E, "pi": sympy.pi}  # by name: the parser's symbols carry assumptions
    values = []
    for parsed in (gold, pred):
        expr = next((p for p in parsed if isinstance(p, sympy.Expr)), None)
        if expr is None:
            return False
        expr = expr.subs({s: constants[s.name] for s in expr.free_symbols if s.name in constants})
        if expr.free_symbols:
            return False
        try:
            values.append(complex(sympy.N(expr, 30)))
        except (TypeError, ValueError):
            return False
    a, b = values
    return abs(a - b) <= tolerance * max(1.0, abs(a))


def _shown(parsed) -> str | None:
    return str(parsed[0])[:200] if parsed else None
