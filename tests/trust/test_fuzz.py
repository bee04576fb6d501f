"""Fuzzing every operation of `/api/openapi.json` with schemathesis, as anonymous and as each role.

For each operation schemathesis generates a bounded number of requests (valid and invalid
bodies, queries and paths; `FUZZ_EXAMPLES` per operation, default 6); each is sent without a token
and with the patient's, the therapist's and the owner's. Every other example uses the ids of real
objects of the patient's instead of random ones, so that the views behind the 404s are reached too.
Every answer must be below 500, have a documented content type and match the documented schema;
401, 403, 404, 409, 413, 415 and 422 must be documented on the operation itself (not only by the
catch-all `default`). The counts are printed at the end of the run.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from tests.trust.test_authorisation import EXPECTED

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "6"))
CALLERS = ("anonymous", "patient", "therapist", "owner")
# Answers a client must be able to expect from the operation's own documentation.
SPECIFIC = {401, 403, 404, 409, 413, 415, 422}
COUNTS: Counter = Counter()


@pytest.fixture(scope="session")
def fuzz_schema(app):
    return schemathesis.openapi.from_wsgi("/api/openapi.json", app)


@schemathesis.check
def specific_status_documented(ctx, response, case) -> bool | None:
    """401/403/404/409/413/415/422 are documented on the operation, not only by `default`."""
    status = response.status_code
    if status in SPECIFIC:
        documented = case.operation.definition.raw.get("responses", {})
        if str(status) not in documented:
            raise AssertionError(
                f"{case.operation.label} answered {status}, which it does not document"
            )
    return None


CHECKS = [
    not_a_server_error,
    content_type_conformance,
    response_schema_conformance,
    specific_status_documented,
]


def _strategy(operation):
    """Valid and invalid requests for the operation (some have nothing to make invalid)."""
    modes = [operation.as_strategy(GenerationMode.POSITIVE)]
    try:
        negative = operation.as_strategy(GenerationMode.NEGATIVE)
        negative.validate()
        modes.append(negative)
    except Exception:  # no parameter or body that could be made invalid
        pass
    return st.one_of(modes)


# The operations are the authorisation matrix's table, which is checked against the document.
@pytest.mark.parametrize("label", sorted(EXPECTED))
def test_fuzz(label, fuzz_schema, world, objects):
    operation = fuzz_schema.find_operation_by_label(label)
    assert operation is not None, f"{label} is not in the document"

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=_strategy(operation), real_ids=st.booleans())
    def run(case, real_ids):
        COUNTS["examples"] += 1
        if real_ids and case.path_parameters:
            # The patient's real objects, so that the code past the lookup runs too.
            case.path_parameters = {
                name: objects.params.get(name, value)
                for name, value in case.path_parameters.items()
            }
        for caller in CALLERS:
            headers = {} if caller == "anonymous" else dict(world.h[caller])
            if case.headers:
                # The generated Authorization header gives way to the caller's.
                case.headers.pop("Authorization", None)
            response = case.call(headers=headers)
            COUNTS["requests"] += 1
            COUNTS[f"status {response.status_code}"] += 1
            case.validate_response(response, checks=CHECKS, headers=headers)

    run()
