"""The OpenAPI schema: valid without a single warning, self-contained docs, and no 5xx for any
request Schemathesis derives from it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from drf_spectacular.drainage import GENERATOR_STATS
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok

from tests.console.api.support import World, client_for


def test_schema_validates_without_warnings(tmp_path: Path) -> None:
    GENERATOR_STATS.reset()  # warnings of earlier generations in this process must not count
    out = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    text = out.read_text()
    for path in (
        "/api/v1/breakers/{name}/force-open/",
        "/api/v1/dead-letters/retry-bulk/",
        "/api/v1/conversations/{id}/clear-opt-out/",
    ):
        assert path in text
    assert "ErrorEnvelope" in text
    assert "guest_opted_out_at" in text


@pytest.mark.django_db
def test_schema_and_docs_are_for_staff_and_docs_need_no_cdn(api_world: World) -> None:
    assert client_for(None).get("/api/schema/").status_code == 401
    client = client_for(api_world.staff_a)
    schema = client.get("/api/schema/?format=json").json()
    assert "/api/v1/dead-letters/" in schema["paths"]
    client.force_login(api_world.staff_a)
    html = client.get("/api/docs/").content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower()
    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js") is not None
    redoc = client.get("/api/redoc/")
    assert redoc.status_code == 200
    assert "/static/drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js" in redoc.content.decode()


@pytest.fixture
def wsgi_in_test_transaction(settings: Any) -> Iterator[Any]:
    """Django's WSGI app called in this thread, inside the test's transaction: like Django's test
    client, keep request signals from closing the connection (that would end the transaction)."""
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"reliability_read": "100000/min", "reliability_write": "100000/min"},
    }
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


#: Examples per operation: enough to reach invalid ids, filters and bodies; 15 operations x this
#: stays well under a minute on a busy 2-core machine.
EXAMPLES = 25


@pytest.mark.slow
@pytest.mark.django_db
def test_schemathesis_finds_no_server_error(
    api_world: World, handler: Any, wsgi_in_test_transaction: Any
) -> None:
    token, _ = Token.objects.get_or_create(user=api_world.ops)
    auth = {"Authorization": f"Token {token.key}"}
    schema = schemathesis.openapi.from_wsgi(
        "/api/schema/?format=json", wsgi_in_test_transaction, headers=auth
    )
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result.err()  # every operation of the schema loads
        operations.append(result.ok())
    labels = [op.label for op in operations]
    assert {
        "POST /api/v1/dead-letters/retry-bulk/",
        "POST /api/v1/breakers/{name}/force-open/",
        "GET /api/v1/reports/reliability/",
        "POST /api/v1/degradation/override/",
    } <= set(labels)
    statuses: dict[str, set[int]] = {}
    # Random ids and names are almost always unknown (404): half the cases use real ones instead,
    # so actions run on real letters and breakers in every state the run leaves them in.
    real_ids = st.sampled_from(
        [api_world.letter_a.pk, api_world.letter_b.pk, api_world.quarantine_a.pk, api_world.quarantine_b.pk]
    )
    real_names = st.sampled_from(["green_api", "green_api_journal", "deepseek"])

    for operation in operations:
        if operation.path.startswith("/webhooks/"):
            continue  # the webhook has its own fuzz suite (tests/messaging/api/test_webhook_fuzz.py)

        @given(case=operation.as_strategy(), real=st.booleans(), pk=real_ids, name=real_names)
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any, real: bool, pk: int, name: str) -> None:
            if real and "id" in case.path_parameters:
                case.path_parameters["id"] = pk
            if real and "name" in case.path_parameters:
                case.path_parameters["name"] = name
            response = case.call(headers=auth)
            statuses.setdefault(case.operation.label, set()).add(response.status_code)
            case.validate_response(response, checks=[not_a_server_error])
            if response.status_code >= 400:
                body = json.loads(response.content)
                assert set(body["error"]) == {"code", "message", "details", "request_id"}

        run()

    # the run reached real answers, not only validation errors
    assert 200 in statuses["GET /api/v1/dead-letters/"]
    assert 200 in statuses["GET /api/v1/breakers/"]
    assert 200 in statuses["GET /api/v1/quarantined-notifications/{id}/"]
    assert 200 in statuses["POST /api/v1/breakers/{name}/force-open/"]
    assert all(code < 500 for codes in statuses.values() for code in codes)
    print({label: sorted(codes) for label, codes in statuses.items()})
