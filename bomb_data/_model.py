"""Base classes of the validated models: frozen, unknown keys forbidden; strict for files users write."""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


class Frozen(BaseModel):
    """Frozen, unknown keys are errors. Lax types: for values the code composes itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _mentions_tuple(tp: Any) -> bool:
    return typing.get_origin(tp) is tuple or tp is tuple or any(_mentions_tuple(a) for a in typing.get_args(tp))


def _lists_as_tuples(v: Any) -> Any:
    return tuple(_lists_as_tuples(x) for x in v) if isinstance(v, list) else v


class StrictFrozen(Frozen):
    """Frozen and strict, for what users write in YAML or JSON files.

    No silent coercion: ``seed: true``, ``max_steps: "160"`` or ``keep_failures: "yes"`` are errors
    (an int is still accepted where a float is expected). YAML and JSON have no tuples, so a list
    given for a field that declares a tuple is read as one.
    """

    model_config = ConfigDict(strict=True)  # merged with Frozen's

    @model_validator(mode="before")
    @classmethod
    def _read_lists_as_tuples(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        return {k: _lists_as_tuples(v) if k in fields and isinstance(v, list)
                and _mentions_tuple(fields[k].annotation) else v for k, v in data.items()}
