"""The one model of a GlobalAlert / GlobalAlertTemplate spec (pydantic v2): validation, the OpenAPI schema
and the CRD schema all come from it.

Each field's ``mode="before"`` validator runs its ``evaluator.spec_rules.check_<field>``, which checks the raw
value and raises ``Problems`` with the reason a user reads (the path, value and reason of
``evaluator.alerts.FieldError``); the rules between fields run on the raw mapping first and are collected, so
every problem is reported at once. Fields are declared in
validation order: a later field's checks see the earlier ones (``info.data``) that were valid.
The user rules (the query catalog, ``${var}`` names, placeholders, the 1m floor, field combinations) run only
when ``validate_spec`` passes a catalog in the validation context; a spec built in code or read back from the
database gets the shape checks only.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from evaluator import spec_rules as rules
from evaluator.durations import format_go_duration
from evaluator.query import substitute
from evaluator.spec_rules import (
    DEFAULT_LOOKBACK,
    DEFAULT_PERIOD,
    combination_problems,
)
from evaluator.vocabulary import (
    AlertType,
    Condition,
    DataSet,
    Metric,
)

GoDuration = Annotated[
    timedelta,
    PlainSerializer(format_go_duration, return_type=str),
    WithJsonSchema({"type": "string", "description": 'Go duration with units, at least 1m, e.g. "5m", "1h30m"'}),
]


class Substitution(BaseModel):
    """A named value set: ``${name}`` in the query stands for ``{values...}`` (wildcards allowed)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(..., description="referenced in the query as ${name}, e.g. key IN ${name}")
    values: tuple[str, ...] = Field(..., min_length=1, description="the set's members; * and ? are wildcards")


class GlobalAlertSpec(BaseModel):
    """A GlobalAlert's spec. Field names follow the resource's JSON (camelCase) on purpose."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="GlobalAlertSpec")
    template_form: ClassVar[bool] = False

    type: AlertType | None = Field(None, description="RuleBased, the only type (and the default)")
    dataSet: DataSet = Field(..., description="the logs the query reads")
    severity: int = Field(..., ge=1, le=100)
    period: GoDuration = Field(
        DEFAULT_PERIOD, description="how often the alert runs", json_schema_extra={"default": "5m"}
    )
    lookback: GoDuration = Field(
        DEFAULT_LOOKBACK, description="how far back each run reads", json_schema_extra={"default": "10m"}
    )
    aggregateBy: tuple[str, ...] = Field((), description="keys whose values group the records")
    metric: Metric | None = None
    field: str | None = Field(None, description="numeric key for avg, max, min, sum")
    condition: Condition | None = None
    threshold: float | None = None
    substitutions: tuple[Substitution, ...] = Field((), description="value sets the query uses as key IN ${name}")
    query: str = Field("", description="selection in the GlobalAlert query language")
    summary: str | None = Field(None, description="event summary template; ${key} as in description")
    description: str = Field(..., description="event text; ${key} substitutes an aggregateBy key or the metric")

    # -- the API form ------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The spec as the API shows it: durations as Go strings, unset optional fields omitted."""
        out: dict[str, Any] = {}
        if self.type is not None:
            out["type"] = str(self.type)
        if self.summary is not None:
            out["summary"] = self.summary
        out.update(
            description=self.description,
            severity=self.severity,
            dataSet=str(self.dataSet),
            period=format_go_duration(self.period),
            lookback=format_go_duration(self.lookback),
        )
        if self.query:
            out["query"] = self.query
        if self.substitutions:
            out["substitutions"] = [{"name": s.name, "values": list(s.values)} for s in self.substitutions]
        if self.aggregateBy:
            out["aggregateBy"] = list(self.aggregateBy)
        for key in ("field", "metric", "condition"):
            value = getattr(self, key)
            if value is not None:
                out[key] = str(value)
        if self.threshold is not None:
            # Go's encoding/json writes a float64 100 as 100: keep whole numbers integral.
            out["threshold"] = int(self.threshold) if self.threshold.is_integer() else self.threshold
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GlobalAlertSpec:
        """Rebuild a spec that was validated before (e.g. read back from the database)."""
        return cls.model_validate(dict(data))

    def substitution_map(self) -> dict[str, tuple[str, ...]]:
        return {s.name: s.values for s in self.substitutions}

    def expanded_query(self) -> str:
        """The query with every ``${name}`` replaced by its substitution's set."""
        return substitute.expand(self.query, self.substitution_map()) if self.query else ""

    # -- rules between fields (on the raw mapping, collected) --------------------------------------------

    @model_validator(mode="before")
    @classmethod
    def _combinations(cls, raw: Any, info: ValidationInfo) -> Any:
        if not isinstance(raw, Mapping):
            return raw
        context = info.context if isinstance(info.context, dict) else None
        if context is not None and "problems" in context:
            context["problems"].extend(combination_problems(raw))
        return raw

    # -- one field at a time, in declaration order ---------------------------------------------------------

    @field_validator("type", mode="before")
    @classmethod
    def _type(cls, value: Any, info: ValidationInfo) -> Any:
        return rules.check_type(value, info, cls.template_form)

    @field_validator("dataSet", mode="before")
    @classmethod
    def _dataset(cls, value: Any, info: ValidationInfo) -> Any:
        return rules.check_dataset(value, info, cls.template_form)

    @field_validator("severity", mode="before")
    @classmethod
    def _severity(cls, value: Any, info: ValidationInfo) -> Any:
        return rules.check_severity(value, info, cls.template_form)

    @field_validator("period", "lookback", mode="before")
    @classmethod
    def _duration(cls, value: Any, info: ValidationInfo) -> Any:
        return rules.check_duration(value, info, cls.template_form)

    @field_validator("aggregateBy", mode="before")
    @classmethod
    def _aggregate_by(cls, value: Any, info: ValidationInfo) -> Any:
        return rules.check_aggregate_by(value, info, cls.template_form)

    @field_validator("metric", "condition", mode="before")
    @classmethod
    def _choice(cls, value: Any, info: ValidationInfo) -> Any:
        return rules.check_choice(value, info, cls.template_form)

    @field_validator("field", mode="before")
    @classmethod
    def _field(cls, value: Any, info: ValidationInfo) -> Any:
        return rules.check_field(value, info, cls.template_form)

    @field_validator("threshold", mode="before")
    @classmethod
    def _threshold(cls, value: Any, info: ValidationInfo) -> Any:
        return rules.check_threshold(value, info, cls.template_form)

    @field_validator("substitutions", mode="before")
    @classmethod
    def _substitutions(cls, value: Any, info: ValidationInfo) -> Any:
        return rules.check_substitutions(value, info, cls.template_form)

    @field_validator("query", mode="before")
    @classmethod
    def _query(cls, value: Any, info: ValidationInfo) -> Any:
        return rules.check_query(value, info, cls.template_form)

    @field_validator("summary", "description", mode="before")
    @classmethod
    def _text(cls, value: Any, info: ValidationInfo) -> Any:
        return rules.check_text(value, info, cls.template_form)


class GlobalAlertTemplateSpec(GlobalAlertSpec):
    """A GlobalAlertTemplate's spec: a GlobalAlert form whose ``<placeholder>`` values are filled in later."""

    model_config = ConfigDict(title="GlobalAlertTemplateSpec")
    template_form: ClassVar[bool] = True


# The documented order (Calico's reference), for "valid: ..." lists.
SPEC_KEYS = (
    "type",
    "summary",
    "description",
    "severity",
    "dataSet",
    "period",
    "lookback",
    "query",
    "substitutions",
    "aggregateBy",
    "field",
    "metric",
    "condition",
    "threshold",
)
assert set(SPEC_KEYS) == set(GlobalAlertSpec.model_fields)
