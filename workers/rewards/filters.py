"""Readability filters for rejection sampling, as in the DeepSeek-R1 report's cold-start and SFT data.

Each filter is `filter(sample, **params) -> Verdict`: keep, or drop with a short
sentence that names the number that failed. All run in bounded time on hostile
text: scans are linear, and the repetition check reads only the tail of very
long completions.
"""

import re
from collections import Counter

from .base import KEEP, Sample, Verdict
from .extract import think_text
from .language import UNSUPPORTED, language_consistency

SNIPPET_CHARS = 60
LOOP_SCAN_CHARS = 300_000  # loops that run into the length cap sit at the end: check the tail
MIN_LOOP_LINE_CHARS = 10  # shorter lines ("$$", "}", "Wait.") repeat in sound reasoning too


def mixed_language(sample: Sample, *, min_consistency: float = 0.95, target: str | None = None) -> Verdict:
    """Drop a chain of thought with too few words in the target language (default sample.language)."""
    result = language_consistency(sample, target=target)
    d = result.details
    if "share" not in d:  # nothing to measure
        if d["reason"].startswith(UNSUPPORTED):
            return Verdict.drop(d["reason"])
        return KEEP  # no words (empty reasoning, only math): for the format and truncation filters
    if result.value >= min_consistency:
        return KEEP
    return Verdict.drop(
        f"chain of thought is {result.value:.0%} {d['target']} (minimum {min_consistency:.0%}): "
        f"{d['in_target']:,} of {d['words']:,} words"
    )


def long_paragraphs(sample: Sample, *, max_chars: int = 2000) -> Verdict:
    """Drop a chain of thought with a paragraph (text between blank lines) over max_chars."""
    text = think_text(sample.completion)
    longest, start = 0, 0
    for blank in re.finditer(r"\n[^\S\n]*\n\s*", text):  # a blank line (maybe with spaces) and what follows
        longest = max(longest, len(text[start:blank.start()].strip()))
        start = blank.end()
    longest = max(longest, len(text[start:].strip()))
    if longest > max_chars:
        return Verdict.drop(f"paragraph of {longest:,} characters (limit {max_chars:,})")
    return KEEP


# Lines that are code in any common language and not prose or math. Bounded
# repeats ({0,300}) keep each attempt short on megabyte-long lines.
_CODE_LINE = re.compile(
    r"""^[^\S\n]*(?:
        def\ \w+[^\S\n]*\([^\n]{0,300}\)[^\n]{0,60}:[^\S\n]*$      # Python function
      | class\ \w+[^\n]{0,300}:[^\S\n]*$                         # Python class
      | (?:from\ [\w.]+\ )?import\ [\w.]+(?:[^\S\n]*,[^\S\n]*[\w.]+)*(?:\ as\ \w+)?[^\S\n]*;?[^\S\n]*$
      | \#include[^\S\n]*[<"]
      | for\ \w+(?:,[^\S\n]*\w+)*\ in\ [^\n]{1,300}:[^\S\n]*$      # Python loop
      | (?:if|elif|while)\ [^\n]{1,300}:[^\S\n]*$
      | (?:return|print|console\.log|System\.out\.print\w*|printf|std::cout)\b[^\n]{0,300}[;)][^\S\n]*$
      | (?:public|private|static|void|int|long|double|const|let|var|function|fn|func)\ [^\n]{1,300}[;{][^\S\n]*$
      | [^\n]{0,300}\)[^\S\n]*\{[^\S\n]*$                          # C-style block: "...) {"
      | [A-Za-z_][\w.\[\]]{0,60}[^\S\n]*(?:\+=|-=|\*=|/=|==)[^\n]{0,300};[^\S\n]*$
    )""",
    re.MULTILINE | re.VERBOSE,
)
_FENCE = re.compile(r"^[^\S\n]*(?:```|~~~)", re.MULTILINE)


def code_in_reasoning(sample: Sample, *, min_code_lines: int = 2) -> Verdict:
    """Drop a chain of thought with a fenced code block, or min_code_lines lines that are plainly code.

    Math is not code: $…$, \\frac{a}{b} and "x = 3" match none of the patterns.
    """
    text = think_text(sample.completion)
    fence = _FENCE.search(text)
    if fence:
        return Verdict.drop(f"fenced code block in the reasoning (line {_line_of(text, fence.start()):,})")
    found = []
    for m in _CODE_LINE.finditer(text):
        found.append(m.start())
        if len(found) >= min_code_lines:
            return Verdict.drop(
                f"{len(found)} lines of code in the reasoning (first at line {_line_of(text, found[0]):,})"
            )
    return KEEP


def repetition_loop(sample: Sample, *, n: int = 20, max_repeats: int = 10) -> Verdict:
    """Drop a completion where one n-word sequence, or one line, occurs more than max_repeats times.

    Degenerate generations loop: the same sentence or line again and again until
    the length cap. Words are whitespace-separated and compared case-insensitively.
    """
    text = sample.completion[-LOOP_SCAN_CHARS:]
    words = text.lower().split()
    if len(words) >= n:
        grams = Counter(zip(*(words[i:] for i in range(n))))  # every run of n consecutive words
        gram, count = grams.most_common(1)[0]
        if count > max_repeats:
            return Verdict.drop(f"{n}-word sequence repeated {count:,} times: {snippet(' '.join(gram))}")
    lines = Counter(s for line in text.splitlines() if len(s := line.strip()) >= MIN_LOOP_LINE_CHARS)
    if lines:
        line, count = lines.most_common(1)[0]
        if count > max_repeats:
            return Verdict.drop(f"line repeated {count:,} times: {snippet(line)}")
    return KEEP


def truncated(sample: Sample) -> Verdict:
    """Drop a completion cut off by the length cap or missing a closing tag: </think> always (the chat
    template may have opened the think block), </answer> only where an <answer> was opened, since R1 and
    its distilled models answer in plain text after </think>."""
    if sample.finish_reason == "length":
        return Verdict.drop("generation hit the length limit (finish_reason=length)")
    text = sample.completion
    if "</think>" not in text:
        return Verdict.drop("no closing </think>")
    if "<answer>" in text and "</answer>" not in text:
        return Verdict.drop("no closing </answer>")
    return KEEP


FILTERS = {
    "mixed_language": mixed_language,
    "long_paragraphs": long_paragraphs,
    "code_in_reasoning": code_in_reasoning,
    "repetition_loop": repetition_loop,
    "truncated": truncated,
}


def apply_filters(sample: Sample, names_with_params) -> Verdict:
    """Run filters in order; the first drop wins, its reason prefixed with the filter's name.

    names_with_params: a dict {name: params}, or a list of names and (name, params) pairs.
    An unknown name raises KeyError: that is a recipe mistake, not bad model output.
    """
    items = names_with_params.items() if isinstance(names_with_params, dict) else names_with_params
    for item in items:
        name, params = (item, {}) if isinstance(item, str) else item
        if name not in FILTERS:
            raise KeyError(f"unknown filter {name!r}; known: {', '.join(FILTERS)}")
        verdict = FILTERS[name](sample, **(params or {}))
        if not verdict.keep:
            return Verdict.drop(f"{name}: {verdict.reason}")
    return KEEP


_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """A short, quoted, storable excerpt: control characters and lone surrogates become spaces
    (Postgres text takes neither NUL nor unpaired surrogates)."""
    short = text if len(text) <= limit else text[:limit - 1] + "…"
    return f'"{_UNPRINTABLE.sub(" ", short)}"'


def _line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1
