"""The job kinds: what parameters each takes, the function that runs it, its queue and presets.

Each app declares its own kinds beside their bodies, with the `job_kind` decorator, and imports
those modules in its AppConfig.ready; this module knows none of them. Parameters are validated by
the kind's Django form, so a bad value is refused with the field named, the same way from the
browser, the command line and the API.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django import forms
from django.core.exceptions import ValidationError
from django.db import models

if TYPE_CHECKING:
    from apps.jobs.runner import JobContext


@dataclass(frozen=True)
class JobKind:
    name: str
    label: str
    params_form: type[forms.Form]  # its cleaned_data are the job's parameters
    run: Callable[["JobContext"], dict | None]  # returns the job's result summary
    # A queue name, or a function of the cleaned parameters (a model on a GPU goes to "gpu").
    queue: str | Callable[[dict], str] = "cpu"
    presets: Mapping[str, dict] = field(default_factory=dict)  # named starting values for the form ("cpu")
    own_page: str = ""  # the URL name of the page it is launched from (an upload, a filter), if not the Launch menu
    own_page_hint: str = ""  # what to do there, said when someone opens the kind's form instead

    def queue_for(self, params: dict) -> str:
        return self.queue(params) if callable(self.queue) else self.queue


KINDS: dict[str, JobKind] = {}


def job_kind(name: str, label: str, params_form: type[forms.Form], **options):
    """Register the decorated function as the body of job kind `name`."""

    def register(run):
        if name in KINDS and KINDS[name].run is not run:
            raise ValueError(f"job kind {name!r} is registered twice")
        KINDS[name] = JobKind(name, label, params_form, run, **options)
        return run

    return register


def jsonable(value):
    """A form's cleaned value as a job parameter: a model instance by its primary key, a queryset (a
    ModelMultipleChoiceField's value) as the list of its keys."""
    if isinstance(value, models.Model):
        return value.pk
    if isinstance(value, models.QuerySet):
        return list(value.values_list("pk", flat=True))
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def param_defaults(form_class) -> dict:
    """A field's `initial` (called, if callable) is the parameter's default when the caller leaves it out."""
    return {name: f.initial() if callable(f.initial) else f.initial
            for name, f in form_class.base_fields.items() if f.initial is not None}


def validate_params(kind: str, params: dict, via: str = "web") -> dict:
    spec = KINDS.get(kind)
    if spec is None:
        raise ValidationError({"kind": f"Unknown job kind {kind!r}; known: {', '.join(sorted(KINDS))}"})
    form = spec.params_form(data=param_defaults(spec.params_form) | params)
    form.via = via  # what a server-path field may name depends on who asks
    if not form.is_valid():
        raise ValidationError(form.errors.as_data())
    return {name: jsonable(value) for name, value in form.cleaned_data.items()}
