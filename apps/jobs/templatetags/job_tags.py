from django import template

from apps.jobs import kinds, shown

register = template.Library()


@register.filter
def launched_by(job) -> str:
    """Who launched the job: its user, or "system" and where it came from (set by the view for a
    whole page in one query; looked up here for a job it was not set on)."""
    if not hasattr(job, "launched_by"):
        job.launched_by = shown.launched_by([job])[job.pk]
    return job.launched_by


@register.filter
def kind_label(kind: str) -> str:
    """A job kind's label ("Generate rollouts" for generate), or the kind itself if unknown."""
    spec = kinds.KINDS.get(kind)
    return spec.label if spec else kind
