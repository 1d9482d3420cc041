import json

from django import template
from django.utils.html import conditional_escape, format_html, format_html_join
from django.utils.safestring import mark_safe

register = template.Library()

# How much of a JSON value a page shows: details can hold whatever an action or a source wrote.
KV_MAX_DEPTH = 4  # deeper values are shown as JSON text
KV_MAX_ITEMS = 20  # keys of an object or items of a list, then "and N more"
KV_MAX_CHARS = 300  # of one string


@register.filter
def kv(value):
    """A JSON value (audit details, job parameters and results, reward details) as HTML people read:
    an object as a key/value list (<dl class="kv-list">), nested objects as nested lists, a list of
    plain values on one line, None as "—". Everything is escaped; long values are cut."""
    return _kv(value, 0)


def _kv(value, depth: int):
    if isinstance(value, dict):
        if not value:
            return mark_safe('<span class="muted">—</span>')
        if depth >= KV_MAX_DEPTH:
            return _scalar(value)
        shown = list(value.items())[:KV_MAX_ITEMS]
        rows = format_html_join("", "<dt>{}</dt><dd>{}</dd>", ((key, _kv(item, depth + 1)) for key, item in shown))
        return format_html('<dl class="kv-list">{}{}</dl>', rows, _more(len(value) - len(shown), "dt"))
    if isinstance(value, (list, tuple)):
        if not value:
            return mark_safe('<span class="muted">none</span>')
        shown = list(value)[:KV_MAX_ITEMS]
        if all(not isinstance(item, (dict, list, tuple)) for item in shown):
            joined = mark_safe(", ".join(conditional_escape(_scalar(item)) for item in shown))
            return format_html("{}{}", joined, _more(len(value) - len(shown), "span"))
        if depth >= KV_MAX_DEPTH:
            return _scalar(value)
        items = format_html_join("", "<li>{}</li>", ((_kv(item, depth + 1),) for item in shown))
        return format_html('<ol class="kv-items">{}{}</ol>', items, _more(len(value) - len(shown), "li"))
    return _scalar(value)


def _scalar(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (dict, list, tuple)):  # past the depth limit
        text = json.dumps(value, ensure_ascii=False, default=str)
    else:
        text = str(value)
    return text if len(text) <= KV_MAX_CHARS else text[: KV_MAX_CHARS - 1] + "…"


def _more(count: int, tag: str):
    if count <= 0:
        return ""
    return format_html('<{} class="muted">… and {} more</{}>', mark_safe(tag), count, mark_safe(tag))
