"""The staff console's REST API (DRF, OpenAPI docs): authentication, permissions, throttles."""

from __future__ import annotations

from .env import env_int, env_str

REST_FRAMEWORK = {
    "EXCEPTION_HANDLER": "hotelbot.exceptions.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Token first: an anonymous call then answers 401 with `WWW-Authenticate: Token` (not 403).
    # Integrations use a token (admin → Auth Token → Tokens, or `manage.py drf_create_token <user>`);
    # the browsable docs and staff in a browser use the admin session (with CSRF on writes).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "UNAUTHENTICATED_USER": None,
    # Every API view is limited per client (user or token; anonymous by IP) with one budget for
    # reads (GET) and one for writes (console/api/policies.py), counted by the server-side
    # limiter (reliability/ratelimit.py: Redis, per process while Redis is down; not the cache).
    # A rate is "N/s", "N/min", "N/hour" or "N/day" (N at once, then spread); "off" disables it.
    "DEFAULT_THROTTLE_CLASSES": ["console.api.policies.ReliabilityThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "reliability_read": env_str("API_THROTTLE_READ", "600/min"),
        "reliability_write": env_str("API_THROTTLE_WRITE", "60/min"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "hotelbot API",
    "DESCRIPTION": "WhatsApp concierge bot for hotels: webhook intake and reliability operations "
    "(circuit breakers, dead letters, quarantined notifications). Authenticate with "
    "`Authorization: Token <key>` (staff users) or the admin session. Every error is "
    '`{"error": {"code", "message", "details", "request_id"}}` (429 and 503 with Retry-After).',
    "VERSION": "0.1.0",
    # Swagger UI and ReDoc from drf-spectacular-sidecar's static files: no CDN (offline and
    # CSP-locked deployments render the docs too).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAdminUser"],
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "DeadLetterStatusEnum": "reliability.models.DeadLetter.Status",
        "DeadLetterKindEnum": "reliability.models.DeadLetter.Kind",
        "DeadLetterCategoryEnum": "reliability.models.DeadLetter.Category",
        "ReplyJobStatusEnum": "messaging.models.ReplyJob.Status",
        "ReplyJobKindEnum": "messaging.models.ReplyJob.Kind",
        "ConversationOwnerEnum": "messaging.models.Conversation.Owner",
    },
}
# Dead letters one bulk retry through the API redrives at most (the oldest first).
API_BULK_RETRY_LIMIT = env_int("API_BULK_RETRY_LIMIT", 500)
