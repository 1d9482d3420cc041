from django import template

register = template.Library()


@register.filter
def as_items(value):
    """The (key, value) pairs of a dict, for nested figures in a job's result; None otherwise."""
    return value.items() if isinstance(value, dict) else None
