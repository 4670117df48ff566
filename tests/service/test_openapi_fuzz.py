"""schemathesis against the app's own OpenAPI document: no server errors, no schema violations.

Every operation is fuzzed with schema-valid (positive) and, where it has inputs, schema-invalid
(negative) requests. Each response must not be a 5xx, must use a documented status code and
content type, and must match the documented body schema (the error envelope included). (The
stricter ``negative_data_rejection`` check is left out: pydantic's lax mode accepts ``"10"`` for
an integer in a JSON body, which that check counts as accepting invalid data.) The app runs in-process with the HashingEncoder, with an API key
configured and sent, so write and admin routes are exercised beyond their guard.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings

pytest.importorskip("schemathesis")

import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.service.harness import make_app

KEY = "fuzz-key"
#: Generated cases across all operations in ``make test``; the hardening run (issue 24) sets
#: AISLE_FUZZ_CASES=2400 and AISLE_FUZZ_OUT to record its counts in benchmarks/results.
TARGET_CASES = int(os.environ.get("AISLE_FUZZ_CASES", "600"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def has_inputs(operation) -> bool:
    definition = operation.definition.raw
    return bool(definition.get("parameters") or definition.get("requestBody"))


def run_operation(operation, mode: GenerationMode, max_examples: int) -> tuple[int, str | None]:
    """Fuzzes one operation; returns the number of cases sent and the failure report, if any."""
    sent = 0

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    def fuzz(case) -> None:
        nonlocal sent
        sent += 1
        case.call_and_validate(headers={"X-API-Key": KEY}, checks=CHECKS)

    try:
        fuzz()
    except Exception as exc:  # schemathesis raises a FailureGroup naming every distinct failure
        return sent, f"{operation.label} ({mode.value}): {exc}"
    return sent, None


def test_openapi_fuzzing_finds_no_server_error_and_no_schema_violation(tmp_path: Path) -> None:
    started = time.perf_counter()
    app = make_app(tmp_path, api_key=KEY)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    runs = [(op, GenerationMode.POSITIVE) for op in operations]
    runs += [(op, GenerationMode.NEGATIVE) for op in operations if has_inputs(op)]
    per_run = math.ceil(TARGET_CASES / sum(1 for op, _ in runs if has_inputs(op)))
    counts: dict[str, int] = {}
    failures: list[str] = []
    for operation, mode in runs:
        sent, failure = run_operation(operation, mode, per_run if has_inputs(operation) else 5)
        counts[f"{operation.label} {mode.value}"] = sent
        if failure:
            failures.append(failure)
    total = sum(counts.values())
    print(f"schemathesis: {total} cases over {len(operations)} operations: {counts}")
    if os.environ.get("AISLE_FUZZ_OUT"):
        record = {
            "benchmark": "openapi_fuzz",
            "tool": f"schemathesis {schemathesis.__version__}",
            "cases": total,
            "operations": len(operations),
            "failures": len(failures),
            "checks": [check.__name__ for check in CHECKS],
            "seconds": round(time.perf_counter() - started, 1),
            "cases_per_operation": counts,
            "loadavg": os.getloadavg(),
        }
        Path(os.environ["AISLE_FUZZ_OUT"]).write_text(json.dumps(record, indent=2) + "\n")
    assert not failures, "\n\n".join(failures)
    assert total >= min(500, TARGET_CASES), counts
