"""Static files are served by the app itself (whitenoise), so the API docs work under gunicorn."""

from __future__ import annotations

import pytest
from django.test import Client


@pytest.mark.parametrize(
    "path",
    [
        "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js",
        "/static/admin/css/base.css",
    ],
)
def test_static_files_are_served_with_debug_off(path: str, settings) -> None:
    settings.DEBUG = False
    response = Client().get(path)
    assert response.status_code == 200
    body = b"".join(getattr(response, "streaming_content", [])) or response.content
    assert len(body) > 1000
