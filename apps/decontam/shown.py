"""A match's text with the overlapping spans marked, for the review page.

The text is model or user output: every piece is escaped and only our own <mark> tags are added.
A long text (a chain of thought) is cut to the regions around its spans, joined by an ellipsis, so
a match in a 5 MB answer shows the overlap and some context instead of the whole answer.
"""

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

CONTEXT = 400  # characters shown before and after each span of a long text
WHOLE_BELOW = 3000  # texts shorter than this are shown whole
MAX_SPANS = 40  # spans marked on one side; the rest are counted


def highlighted(text: str, spans: list[list[int]], context: int = CONTEXT) -> SafeString:
    spans = sorted((max(0, int(s)), min(len(text), int(e))) for s, e in spans)
    spans = [(s, e) for s, e in spans if s < e]
    hidden = max(0, len(spans) - MAX_SPANS)
    spans = spans[:MAX_SPANS]
    if len(text) < WHOLE_BELOW:
        windows = [(0, len(text))]
    else:
        windows = []
        for start, end in spans:
            low, high = max(0, start - context), min(len(text), end + context)
            if windows and low <= windows[-1][1]:
                windows[-1] = (windows[-1][0], max(windows[-1][1], high))
            else:
                windows.append((low, high))
        windows = windows or [(0, min(len(text), WHOLE_BELOW))]
    pieces = []
    for low, high in windows:
        if low > 0:
            pieces.append('<span class="cut">…</span>')
        at = low
        for start, end in spans:
            if end <= low or start >= high:
                continue
            start, end = max(start, low), min(end, high)
            pieces.append(escape(text[at:start]))
            pieces.append(f"<mark>{escape(text[start:end])}</mark>")
            at = end
        pieces.append(escape(text[at:high]))
    if windows[-1][1] < len(text):
        pieces.append('<span class="cut">…</span>')
    if hidden:
        pieces.append(f'<span class="muted"> ({hidden} more spans not marked)</span>')
    return mark_safe("".join(pieces))  # noqa: S308 (every piece of the text was escaped above)
