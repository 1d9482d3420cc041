"""Format rewards. R1-Zero's: `<think> reasoning </think> <answer> answer </answer>` and nothing else;
R1's chat format (`think_format`, below): the reasoning closed by </think>, then a plain answer.

Strict: 1.0 only for exactly one think block followed by one non-empty answer
block, with nothing but whitespace around and between them; this is
`^\\s*<think>.*?</think>\\s*<answer>.*?</answer>\\s*$` with each tag present
once (so no nested or extra tags) and a non-empty answer. The reasoning may be
empty. Otherwise 0 with the first thing found wrong as the reason.

With partial_credit, a malformed completion still earns 0.25 for each of the
four tags that appears exactly once (TRL-style tag counting), capped at 0.75 so
that only a well-formed completion earns 1.0.

Only str.count and str.find are used: linear time on any input.
"""

from .base import Reward, Sample

TAGS = ("<think>", "</think>", "<answer>", "</answer>")
TAG_CREDIT = 0.25
MAX_PARTIAL = 0.75


def format_reward(sample: Sample, *, partial_credit: bool = False) -> Reward:
    """1.0 for exactly one <think> block then one non-empty <answer> block, else 0 (or partial credit)."""
    text = sample.completion
    counts = {tag: text.count(tag) for tag in TAGS}
    problem = format_problem(text, counts)
    if problem is None:
        return Reward(1.0, {"tag_counts": counts})
    details = {"reason": problem, "tag_counts": counts}
    if not partial_credit:
        return Reward(0.0, details)
    credit = TAG_CREDIT * sum(1 for n in counts.values() if n == 1)
    return Reward(min(credit, MAX_PARTIAL), details)


def format_problem(text: str, counts: dict[str, int]) -> str | None:
    """What keeps text from the strict format, or None when it has it."""
    for tag, n in counts.items():
        if n != 1:
            return _count_problem(tag, n)
    think_open, think_close = text.find("<think>"), text.find("</think>")
    answer_open, answer_close = text.find("<answer>"), text.find("</answer>")
    if think_close < think_open:
        return "</think> before <think>"
    if answer_open < think_close:
        return "<answer> before </think>"
    if answer_close < answer_open:
        return "</answer> before <answer>"
    if text[:think_open].strip():
        return "text before <think>"
    if text[think_close + len("</think>"):answer_open].strip():
        return "text between </think> and <answer>"
    if text[answer_close + len("</answer>"):].strip():
        return "text after </answer>"
    if not text[answer_open + len("<answer>"):answer_close].strip():
        return "empty answer"
    return None


def _count_problem(tag: str, n: int) -> str:
    """'no closing </think>', 'no <answer> tag', '2 answer blocks', '3 </think> tags'."""
    closing = tag.startswith("</")
    if n == 0:
        return f"no closing {tag}" if closing else f"no {tag} tag"
    if tag == "<answer>":
        return f"{n} answer blocks"
    if tag == "<think>":
        return f"{n} think blocks"
    return f"{n} {tag} tags"


def think_format(sample: Sample) -> Reward:
    """R1's chat format (DeepSeek-R1 and its distilled models): the reasoning, closed by one </think> (opened
    by <think>, or by the chat template in the prompt), then a non-empty plain answer; no <answer> tags."""
    text = sample.completion
    opens, closes = text.count("<think>"), text.count("</think>")
    close = text.find("</think>")
    if closes != 1:
        problem = "no closing </think>" if closes == 0 else f"{closes} </think> tags"
    elif opens > 1 or (opens == 1 and text.find("<think>") > close):
        problem = f"{opens} think blocks" if opens > 1 else "</think> before <think>"
    elif opens == 1 and text[:text.find("<think>")].strip():
        problem = "text before <think>"
    elif not text[text.find("<think>") + len("<think>") if opens else 0:close].strip():
        problem = "empty reasoning"
    elif not text[close + len("</think>"):].strip():
        problem = "empty answer"
    else:
        return Reward(1.0, {})
    return Reward(0.0, {"reason": problem})
