"""The service fuzzed from its own OpenAPI schema (schemathesis) on a loopback port: whatever a
client sends, valid by the schema or not, the answer is never a 5xx and always one the schema
documents (status code, content type, headers, body). Bounded: a fixed number of examples per
operation, derandomized so CI runs the same cases every time; traffic goes to 127.0.0.1 only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.core.failures import FailureGroup  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from cotembed.serve._settings import Limits, ServeSettings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KEY = "fuzz-key-123"
EXAMPLES = 12
"""Examples per operation and generation mode: the whole run stays well under a minute."""
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """critters and its system behind an API key, small limits, image URLs off (nothing is fetched)."""
    from cotembed.serve._app import create_app
    from cotembed.serve._registry import Registry
    from cotembed.serve._server import ServerThread
    from cotembed.system import System

    settings = ServeSettings(
        models=("critters",), systems=(System.load(ROOT / "examples" / "critters" / "system.yaml"),), api_key=KEY,
        cache=str(tmp_path_factory.mktemp("fuzz-cache") / "embeddings.sqlite"),
        limits=Limits(max_inputs=4, max_labels=8, max_body_bytes=256 * 2**10, max_pixels=100_000, max_systems=3,
                      max_prompts=64, max_classes=16),
    )
    registry = Registry.open(settings)
    try:
        with ServerThread(create_app(registry)) as server:
            assert server.url.startswith("http://127.0.0.1:")
            yield server.url
    finally:
        registry.close()


def _fuzz(operation: Any, mode: Any) -> None:
    """Hypothesis runs ``operation`` with cases of ``mode`` (schema-valid or not) and checks each answer."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck), report_multiple_bugs=False)
    def run(case: Any) -> None:
        case.call_and_validate(headers={"Authorization": f"Bearer {KEY}"}, checks=CHECKS, timeout=30)

    run()


@pytest.mark.slow
def test_every_answer_is_documented_and_no_5xx(live: str) -> None:
    schema = schemathesis.openapi.from_url(f"{live}/openapi.json", timeout=10)
    failures, operations = [], 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in GenerationMode:
            try:
                _fuzz(operation, mode)
            except Unsatisfiable:  # nothing in the request to make invalid (GET /health has no parameters)
                assert mode is GenerationMode.NEGATIVE, f"{operation.label}: no valid request can be generated"
            except (Exception, FailureGroup) as exc:  # every operation and mode runs; all failures are reported together
                failures.append(f"{operation.label} ({mode.value}): {type(exc).__name__}: {str(exc)[:1500]}")
    assert operations >= 10, f"only {operations} operations in the schema"
    assert not failures, "\n\n".join(failures)
