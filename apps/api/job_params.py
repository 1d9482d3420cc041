"""The POST /jobs body, typed per job kind: one pydantic model per registered kind, made from its params form.

The OpenAPI document then shows each kind's parameters (a union discriminated by `kind`). The kind's Django
form stays the single source of truth: these models only describe the fields and do basic typing (a word where
a number belongs is a 422 before the form runs), and hand on exactly the parameters the client sent, which
`launching.launch` validates with the form as it does for the browser and the command line.
"""

import re
from typing import Annotated, Any, Literal, Union

from django import forms
from django.utils.choices import CallableChoiceIterator, flatten_choices
from ninja import Field, Schema
from pydantic import AfterValidator, ConfigDict, create_model

from apps.api.schemas import Finite, Text, unstorable
from apps.jobs.kinds import KINDS


def _storable(value):
    # Parameters are stored as jsonb: refuse up front what the database would refuse with a 500.
    if unstorable(value):
        raise ValueError("cannot contain the NUL character (\\u0000) or unpaired surrogates")
    return value


StoredText = Annotated[str, AfterValidator(_storable)]
StoredJson = Annotated[Any, AfterValidator(_storable)]


def _choice_type(field: forms.ChoiceField):
    if isinstance(field.choices, CallableChoiceIterator):  # made when the form is built (from the database)
        return str
    values = tuple(value for value, _ in flatten_choices(field.choices))
    return Literal[values] if values else str


def _bounds(field) -> dict:
    return {key: limit for key, limit in (("ge", getattr(field, "min_value", None)),
                                          ("le", getattr(field, "max_value", None))) if limit is not None}


def field_type(field: forms.Field):
    """The pydantic type of a form field's value, with its bounds. Order matters: ModelChoiceField is a
    ChoiceField, FloatField an IntegerField and JSONField a CharField."""
    if isinstance(field, forms.ModelMultipleChoiceField):
        return list[str if field.to_field_name else int]
    if isinstance(field, forms.ModelChoiceField):
        return str if field.to_field_name else int  # the row's primary key
    if isinstance(field, forms.MultipleChoiceField):
        return list[_choice_type(field)]
    if isinstance(field, forms.ChoiceField):
        return _choice_type(field)
    if isinstance(field, forms.BooleanField):
        return bool
    if isinstance(field, (forms.FloatField, forms.DecimalField)):
        return Annotated[Finite, Field(**_bounds(field))]
    if isinstance(field, forms.IntegerField):
        return Annotated[int, Field(**_bounds(field))]
    if isinstance(field, forms.JSONField):
        return StoredJson
    if isinstance(field, forms.CharField):
        return Annotated[StoredText, Field(max_length=field.max_length)]
    return StoredJson  # a field type not mapped yet: any JSON, and the form judges it


def _described(field: forms.Field) -> str:
    text = str(field.help_text or "")
    if isinstance(field, forms.ModelChoiceField):  # say whose id the number is
        whose = f"{field.queryset.model._meta.verbose_name} {field.to_field_name or 'id'}"
        text = f"{text} ({whose})" if text else f"The {whose}"
    return text


def _default(field: forms.Field):
    """The form's initial value when it is plain JSON (a callable one is computed per request: not shown)."""
    initial = field.initial
    if isinstance(initial, bool | int | float):
        return initial
    return str(initial) if isinstance(initial, str) else None  # str(): a TextChoices member as its value


class _Params(Schema):
    model_config = ConfigDict(extra="ignore")  # parameters the form does not know: ignored, as the form ignores them


def params_model(name: str, form_class: type[forms.Form]) -> type[Schema]:
    """A model of `form_class`'s fields. A field the form requires and gives no initial value is required;
    the others may be left out (the form's initial value applies) or, when the form does not require them, null."""
    fields = {}
    for field_name, field in form_class.base_fields.items():
        kind = field_type(field)
        described = {"description": _described(field)} if _described(field) else {}
        default = _default(field)
        if field.required and field.initial is None:
            fields[field_name] = (kind, Field(..., **described))
        elif field.required and default is not None:
            fields[field_name] = (kind, Field(default, **described))
        else:  # optional, or required with a default the form computes when it is built
            fields[field_name] = (kind | None, Field(default, **described))
    return create_model(f"{name}Params", __base__=_Params, **fields)


def _camel(kind: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[_\W]+", kind) if part)


def job_body(kind: str) -> type[Schema]:
    spec = KINDS[kind]
    name = _camel(kind)
    params = params_model(name, spec.params_form)
    needed = any(field.is_required() for field in params.model_fields.values())
    return create_model(
        f"{name}JobIn", __base__=Schema,
        kind=(Literal[kind], Field(description=spec.label)),
        params=(params, Field(..., description="The kind's parameters, as on its launch form") if needed
                else Field(default_factory=params, description="The kind's parameters, as on its launch form")),
        label=(Text, Field("", max_length=200)),
    )


# Each registered kind's body; `kind` says which (an unknown kind is a 422 naming `kind` and the known ones).
JobIn = Annotated[Union[tuple(job_body(kind) for kind in KINDS)], Field(discriminator="kind")]  # noqa: UP007


def sent_params(payload) -> dict:
    """The parameters as the client sent them (no defaults filled in: the form's initial values apply)."""
    return payload.params.model_dump(exclude_unset=True)
