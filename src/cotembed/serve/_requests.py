"""The JSON bodies the service accepts (pydantic models), their help texts and examples.

Kept apart from the routes so the OpenAPI schema they publish (``x-method-parameters`` derived
from the methods' declared parameters) reads in one place.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cotembed.scoring import method_class, method_names
from cotembed.scoring._params import params_schema
from cotembed.serve._decisions import DecisionFields

InputItem = str | dict[str, Any]
INPUT_HELP = ('texts ("..." or {"text": "..."}) or images ({"image": "<base64, data: URI, or URL with --allow-urls>"}), '
              "in one list")


def _method_params_schema() -> dict[str, Any]:
    """Per method, the JSON schema of the parameters a request may set (derived from their declarations)."""
    out = {}
    for name in method_names():
        properties = params_schema(method_class(name).parameters)
        if properties:
            out[name] = {"type": "object", "properties": properties, "additionalProperties": False}
    return out


TRANSDUCTIVE_HELP = ("refine the method's posterior on this request's inputs (no label read); fewer than 2 inputs per class "
                     "keep the method's scores, with a note")
PARAMS_FIELD_HELP = ("parameters of the method, e.g. {\"confidence\": 0.9} with method adaptive; what each method accepts "
                     "is listed under x-method-parameters (unknown ones are a 422 naming the accepted ones)")


class ClassifyRequest(DecisionFields):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"model": "critters", "system": "critters", "input": [{"image": "<base64 PNG>"}]},
        {"model": "minilm", "input": ["a crimson winged thing over lava"], "labels": ["bird", "fish"]},
    ]})
    model: str | None = Field(None, description="a served model (its --model spec or model key); default: the first")
    input: list[InputItem] = Field(..., min_length=1, description=INPUT_HELP)
    labels: list[str] | None = Field(None, description="candidate labels; with a system, a subset of its classes (or aliases)")
    system: str | None = Field(None, description="name or fingerprint of a registered system (chain-of-thought classification)")
    method: str | None = Field(None, description="scoring method with a system (default cot): " + ", ".join(method_names()))
    params: dict[str, Any] | None = Field(None, description=PARAMS_FIELD_HELP,
                                          json_schema_extra={"x-method-parameters": _method_params_schema()})
    transductive: bool = Field(False, description=TRANSDUCTIVE_HELP)


class ExplainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    input: InputItem = Field(..., description="one text or image, as in /v1/classify")
    system: str = Field(..., description="name or fingerprint of a registered system")
    method: str = Field("cot", description="scoring method")
    params: dict[str, Any] | None = Field(None, description=PARAMS_FIELD_HELP)
    top_k: int = Field(5, ge=1, description="classes to show")


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    input: str | list[InputItem] = Field(..., description=INPUT_HELP)
    encoding_format: Literal["float", "base64"] = Field("float", description="base64: little-endian float32 bytes")
    dimensions: int | None = Field(None, description="must equal the model's embedding size when given")
    user: str | None = Field(None, description="accepted and ignored (OpenAI compatibility)")
