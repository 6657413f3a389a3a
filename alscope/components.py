"""What every component class has in common: a pydantic ``Params`` schema.

Kept free of torch so that ``alscope info`` and config validation stay cheap.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError

from alscope.errors import ConfigError


class NoParams(BaseModel):
    """A component without parameters."""

    model_config = ConfigDict(extra="forbid")


class Params(BaseModel):
    """Base for component parameter schemas: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


def describe_validation_error(exc: ValidationError, where: str, schema: type[BaseModel]) -> str:
    """One line per problem: the field, the value given and what is accepted."""
    accepted = ", ".join(schema.model_fields) or "(none)"
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"])
        value = err.get("input")
        if not field:  # a check across fields: its message says what is wrong
            lines.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
        elif err["type"] == "missing" and len(err["loc"]) == 1 and field in schema.model_fields:
            kind = where.split()[0]
            about = schema.model_fields[field].description
            flag = (
                f"--{kind}-param {field}=..."
                if kind in {"strategy", "dataset", "backbone", "scenario"}
                else field
            )
            lines.append(
                f"{where}: the parameter {field!r} is required"
                + (f" ({about})" if about else "")
                + f"; give it with {flag}"
            )
        elif err["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown parameter {field!r} (accepted: {accepted})")
        else:
            lines.append(f"{where}: {field}={value!r} is invalid: {err['msg']}")
    return "; ".join(lines)


def validate_params(
    schema: type[BaseModel], params: BaseModel | Mapping[str, Any] | None, where: str
) -> BaseModel:
    """Validate ``params`` against ``schema``; raise :class:`ConfigError` naming ``where``."""
    if isinstance(params, schema):
        return params
    if isinstance(params, BaseModel):
        params = params.model_dump()
    try:
        return schema.model_validate(dict(params or {}))
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, where, schema)) from None


class Component:
    """Base of strategies, dataset factories, backbones' builders and scenarios."""

    Params: ClassVar[type[BaseModel]] = NoParams
    #: name used in messages: the class's default, replaced per instance by the registered name
    component_name: str = ""

    def __init__(self, params: BaseModel | Mapping[str, Any] | None = None, **kwargs: Any):
        merged: Any = params
        if kwargs:
            base = params.model_dump() if isinstance(params, BaseModel) else dict(params or {})
            merged = {**base, **kwargs}
        self.params: Any = validate_params(
            self.Params, merged, f"{self.kind_name()} {self.component_name or type(self).__name__}"
        )

    @classmethod
    def kind_name(cls) -> str:
        return "component"

    @classmethod
    def parameter_table(cls) -> list[tuple[str, str, str, str]]:
        """(name, type, default, description) of every parameter, for ``alscope info``."""
        rows = []
        for name, field in cls.Params.model_fields.items():
            choices = get_args(field.annotation) if get_origin(field.annotation) is Literal else ()
            annotation = (
                " | ".join(map(str, choices))
                if choices
                else getattr(field.annotation, "__name__", None) or str(field.annotation)
            )
            default = "(required)" if field.is_required() else repr(field.get_default())
            rows.append((name, annotation.replace("typing.", ""), default, field.description or ""))
        return rows
