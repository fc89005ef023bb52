"""Property-based fuzzing of the control plane's OpenAPI with a valid key (schemathesis + hypothesis).

schemathesis' pytest plugin does not run under pytest 9, so the cases are driven from its Python API:
one hypothesis run per operation, every response checked.
"""

from __future__ import annotations

import os

import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.support.processes import Plane

#: Cases per operation (14 operations, some with few distinct cases: > 300 in all).
#: SCHEMATHESIS_EXAMPLES raises it for `make soak`.
EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "40"))


def test_no_server_errors_and_responses_match_the_schema(control: Plane) -> None:
    schema = schemathesis.openapi.from_url(f"{control.url}/openapi.json")
    headers = {"Authorization": "Bearer test-key-1"}
    cases: dict[str, int] = {}
    failures: list[str] = []

    def fuzz(operation: schemathesis.APIOperation) -> None:
        label = operation.label
        cases[label] = 0

        @hsettings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy())
        def run(case: schemathesis.Case) -> None:
            cases[label] += 1
            case.call_and_validate(
                base_url=control.url,
                headers=headers,
                timeout=30,
                checks=[not_a_server_error, response_schema_conformance],
            )

        try:
            run()
        except Exception as e:  # hypothesis re-raises the minimal failing case: report it with the others
            failures.append(f"{label}: {type(e).__name__}: {str(e)[:600]}")

    for result in schema.get_all_operations():
        fuzz(result.ok())
    total = sum(cases.values())
    assert not failures, "\n".join(failures[:10])
    assert total >= 300 and len(cases) >= 12, f"{total} cases over {len(cases)} operations"
    health = control.proc and control.proc.poll()
    assert health is None, "control survived the fuzzing"
