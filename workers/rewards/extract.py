"""Finding the parts of a completion: the chain of thought, the answer span, the final answer.

All scans are linear in the text and bounded by MAX_SCAN_CHARS, so hostile output
(megabytes of text, thousands of nested braces) costs little.
"""

import re
from dataclasses import dataclass

MAX_SCAN_CHARS = 200_000  # only the tail of longer completions is searched for an answer
MAX_ANSWER_CHARS = 1_000  # a longer "final answer" is not an answer

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)

# Tried in order after the <answer> tag and \boxed{}; the last match in the text wins.
DEFAULT_FALLBACKS = (
    r"####\s*(.+)",  # GSM8K reference style
    r"(?im)^\s*A:\s*(.+)$",  # "A: 18", as in GSM8K's example model solutions
    r"(?i)final answer is:?\s*\$?(.+?)\$?\s*(?:\.\s*)?$",
    r"(?i)the answer is:?\s*\$?(.+?)\$?\s*(?:\.\s*)?$",
)


@dataclass(frozen=True)
class Extraction:
    text: str | None  # the answer as written, or None when nothing was found
    method: str  # "answer_tag", "boxed", "regex:<pattern>", or "none"


def think_text(completion: str) -> str:
    """The chain of thought: inside <think>…</think>; up to </think> when the chat template opened the
    block in the prompt (R1's distilled models); up to <answer> when the tags are missing."""
    start = completion.find(THINK_OPEN)
    if start != -1:
        start += len(THINK_OPEN)
        end = completion.find(THINK_CLOSE, start)
        return completion[start:] if end == -1 else completion[start:end]
    end = completion.find(THINK_CLOSE)
    if end != -1:
        return completion[:end]
    answer = completion.find("<answer>")
    return completion if answer == -1 else completion[:answer]


def answer_text(completion: str) -> str:
    """The content of the last <answer>…</answer> block (R1-Zero's template); without one, what follows the
    last </think> (R1's chat format: the reasoning, then a plain answer); else ''."""
    tail = completion[-MAX_SCAN_CHARS:]
    tagged = _answer_tag(tail)
    if tagged is not None:
        return tagged
    close = tail.rfind(THINK_CLOSE)
    return "" if close == -1 else tail[close + len(THINK_CLOSE):]


def _answer_tag(tail: str) -> str | None:
    start = tail.rfind("<answer>")
    if start == -1:
        return None
    end = tail.find("</answer>", start)
    return tail[start + len("<answer>"):] if end == -1 else tail[start + len("<answer>"):end]


def split_completion(completion: str) -> tuple[str, str]:
    """(reasoning, answer) for storing beside the raw completion."""
    return think_text(completion).strip(), answer_text(completion).strip()


_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")


def last_boxed(text: str) -> str | None:
    """The content of the last balanced \\boxed{…} (or \\fbox{…}), nested braces included.

    One pass matches every brace (a stack), so thousands of nested or unclosed
    braces cost linear time.
    """
    starts = [m.end() for m in _BOXED_RE.finditer(text)]  # just after each opening brace
    if not starts:
        return None
    closing = _matching_braces(text)
    for start in reversed(starts):
        end = closing.get(start - 1)
        if end is not None:
            return text[start:end]
    return None


def _matching_braces(text: str) -> dict[int, int]:
    """Index of each "{" → index of its "}", ignoring escaped \\{ and \\}."""
    stack, pairs = [], {}
    for m in re.finditer(r"(?<!\\)[{}]", text):
        if m.group() == "{":
            stack.append(m.start())
        elif stack:
            pairs[stack.pop()] = m.start()
    return pairs


def extract_answer(completion: str, fallbacks: tuple[str, ...] = DEFAULT_FALLBACKS) -> Extraction:
    tail = completion[-MAX_SCAN_CHARS:]
    found = _extract(tail, fallbacks)
    if found.text is not None:
        text = found.text.strip()
        if not text:
            return Extraction(None, found.method)
        if len(text) > MAX_ANSWER_CHARS:
            return Extraction(None, f"{found.method} (over {MAX_ANSWER_CHARS} characters)")
        return Extraction(text, found.method)
    return found


def _extract(tail: str, fallbacks) -> Extraction:
    answer = _answer_tag(tail) or ""
    if answer.strip():
        boxed = last_boxed(answer)
        return Extraction(boxed if boxed is not None else answer, "answer_tag")
    # R1's chat format answers after </think>, where the answer is what is said there (the reasoning
    # boxes its own intermediate steps); without </think>, anywhere in the text.
    close = tail.rfind(THINK_CLOSE)
    after = tail[close + len(THINK_CLOSE):] if close != -1 else ""
    found = _marked_answer(after, fallbacks) if after.strip() else None
    if found is None and after.strip():
        found = Extraction(after.strip(), "after_think")
    return found or _marked_answer(tail, fallbacks) or Extraction(None, "none")


def _marked_answer(text: str, fallbacks) -> Extraction | None:
    """The last \\boxed{} of `text`, else the last match of the first fallback pattern that matches."""
    boxed = last_boxed(text)
    if boxed is not None:
        return Extraction(boxed, "boxed")
    for pattern in fallbacks:
        matches = list(re.finditer(pattern, text, re.MULTILINE))
        if matches:
            return Extraction(matches[-1].group(1), f"regex:{pattern}")
    return None
