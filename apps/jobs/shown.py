"""How the job pages show a job: its parameters with rows named instead of ids, and who launched it.

The jobs app knows no job kind and imports no app above it, so rows are found generically, through
the kind's params form: a `ModelChoiceField` stored the row's primary key (`kinds.jsonable`), and its
queryset names the model to look the key up in. A row is shown by `str()`, linked to its
`get_absolute_url()` where the model has one.
"""

from collections import defaultdict
from dataclasses import dataclass, field

from django import forms

from apps.core.models import AuditEvent
from apps.jobs import kinds
from apps.jobs.models import Job

# A job launched by nobody (no user): where the launch came from, by its audit record's `via`.
SYSTEM_ORIGINS = {"cli": "system (command line)", "job": "system (another job)"}
SYSTEM = "system"


@dataclass
class Ref:
    """A row a parameter names: its text and its page ('' if it has none)."""

    text: str
    url: str = ""


@dataclass
class ShownParam:
    name: str
    label: str  # the form field's label, shown as the name's title
    value: object  # as stored (JSON)
    refs: list[Ref] = field(default_factory=list)  # the rows it names, if it names rows


def _model_of(name: str, form_field):
    """The model a parameter's value is a primary key of, or None."""
    if isinstance(form_field, forms.ModelChoiceField):
        return form_field.queryset.model
    if name == "job" and isinstance(form_field, forms.IntegerField):  # another job (score_rollouts' input)
        return Job
    return None


def _keys(value) -> list:
    values = value if isinstance(value, (list, tuple)) else [value]
    return [v for v in values if isinstance(v, int) and not isinstance(v, bool)]


def shown_params(job: Job) -> list[ShownParam]:
    """The job's parameters in its form's order (unknown ones after), each naming the rows it refers to.

    One query per referenced model; a row deleted since shows as "#id (deleted)"."""
    spec = kinds.KINDS.get(job.kind)
    form_fields = spec.params_form.base_fields if spec else {}
    params = dict(job.params or {})
    names = [n for n in form_fields if n in params] + [n for n in params if n not in form_fields]

    wanted = defaultdict(set)  # model -> primary keys
    models_of = {}
    for name in names:
        model = _model_of(name, form_fields.get(name))
        if model is not None and _keys(params[name]):
            models_of[name] = model
            wanted[model].update(_keys(params[name]))
    # select_related() follows the non-null foreign keys, which a row's str() may use (a version's dataset).
    found = {model: model._default_manager.select_related().in_bulk(keys) for model, keys in wanted.items()}

    shown = []
    for name in names:
        form_field = form_fields.get(name)
        label = str(form_field.label or name.replace("_", " ")) if form_field else name
        item = ShownParam(name, label, params[name])
        model = models_of.get(name)
        for key in _keys(params[name]) if model else []:
            row = found[model].get(key)
            if row is None:
                item.refs.append(Ref(f"#{key} (deleted)"))
            else:
                url = row.get_absolute_url() if hasattr(row, "get_absolute_url") else ""
                item.refs.append(Ref(str(row), url))
        shown.append(item)
    return shown


def launched_by(jobs) -> dict[int, str]:
    """Who launched each job: its user's name, or for a job nobody launched "system", with its origin
    (the command line, another job) where its launch's audit record says so. One query for the page."""
    jobs = list(jobs)
    nobody = [str(job.pk) for job in jobs if job.created_by_id is None]
    via = {}
    if nobody:
        launches = AuditEvent.objects.filter(action="job.launch", target_type=Job._meta.label_lower,
                                             target_id__in=nobody).values_list("target_id", "via")
        via = {int(target): how for target, how in launches}
    return {job.pk: (job.created_by.get_username() if job.created_by_id else
                     SYSTEM_ORIGINS.get(via.get(job.pk, ""), SYSTEM)) for job in jobs}
