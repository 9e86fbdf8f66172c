"""Request and response shapes of the reliability API (also its OpenAPI schema)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from reliability.breaker import knobs
from reliability.dead_letters import DEAD_LETTER_FILTERS
from reliability.models import BreakerConfig, BreakerEvent, DeadLetter

REASON_MAX = 200


# --- the error envelope (hotelbot/exceptions.py) -------------------------------------------------
class ErrorSerializer(serializers.Serializer[Any]):
    code = serializers.CharField(help_text="Machine code: invalid, not_found, not_authenticated, ...")
    message = serializers.CharField(help_text="Human text.")
    details = serializers.JSONField(
        help_text="Field-by-field messages for `invalid`; otherwise extra context (may be empty)."
    )
    request_id = serializers.CharField(
        allow_null=True,
        help_text="The request's id (also the `X-Request-ID` response header): quote it to support; "
        "it finds the request's log lines.",
    )


class ErrorEnvelopeSerializer(serializers.Serializer[Any]):
    error = ErrorSerializer()


# --- breakers ------------------------------------------------------------------------------------
class BreakerConfigSerializer(serializers.ModelSerializer[BreakerConfig]):
    class Meta:
        model = BreakerConfig
        fields = (*knobs.TUNABLE, "version", "updated_at")  # every tunable knob (breaker.knobs)
        read_only_fields = fields


class BreakerLiveSerializer(serializers.Serializer[Any]):
    """The live shared state (Redis, else the database, else this process: see ``source``)."""

    failure_rate = serializers.FloatField(help_text="Failure percentage over the window.")
    slow_call_rate = serializers.FloatField(help_text="Slow-call percentage over the window.")
    calls = serializers.IntegerField(help_text="Calls in the window.")
    failures = serializers.IntegerField()
    slow_calls = serializers.IntegerField()
    consecutive_failures = serializers.IntegerField()
    trips = serializers.IntegerField(help_text="Consecutive trips (open duration grows with them).")
    retry_after = serializers.FloatField(help_text="Seconds until the next probe is admitted (0: now).")
    probes_in_flight = serializers.IntegerField()
    source = serializers.CharField(  # type: ignore[assignment]  # a field, popped by the metaclass
        help_text="Where the state was read: redis, database, fallback, local."
    )


class BreakerOverrideSerializer(serializers.Serializer[Any]):
    mode = serializers.ChoiceField(choices=BreakerConfig.Mode.choices, source="config.mode")
    reason = serializers.CharField(source="config.mode_reason")
    until = serializers.DateTimeField(source="config.mode_until", allow_null=True)
    active = serializers.BooleanField(source="override_active")


class BreakerTransitionSerializer(serializers.ModelSerializer[BreakerEvent]):
    class Meta:
        model = BreakerEvent
        fields = (
            "at",
            "from_state",
            "to_state",
            "reason",
            "failure_rate",
            "slow_call_rate",
            "source",
            "process",
            "open_until",
        )
        read_only_fields = fields


class BreakerSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(source="config.name")
    description = serializers.CharField(source="config.description")
    state = serializers.CharField(
        source="snapshot.state",
        help_text="closed, open, half_open, forced_open, disabled or metrics_only (live, shared).",
    )
    state_since = serializers.DateTimeField(
        allow_null=True, help_text="Its last recorded transition into this state (null: not recorded)."
    )
    seconds_in_state = serializers.FloatField(allow_null=True)
    override = BreakerOverrideSerializer(source="*")
    live = BreakerLiveSerializer(source="snapshot")


class BreakerDetailSerializer(BreakerSerializer):
    config = BreakerConfigSerializer()
    recent_transitions = BreakerTransitionSerializer(many=True)


class BreakerActionSerializer(serializers.Serializer[Any]):
    reason = serializers.CharField(
        max_length=REASON_MAX, required=False, default="", allow_blank=True, help_text="Why (audited)."
    )


class BreakerForceOpenSerializer(serializers.Serializer[Any]):
    reason = serializers.CharField(max_length=REASON_MAX, help_text="Why every call is rejected (audited).")
    minutes = serializers.IntegerField(
        min_value=1,
        max_value=7 * 24 * 60,
        required=False,
        allow_null=True,
        default=None,
        help_text="The override ends by itself after this many minutes (then half-open); "
        "omitted: until force-close or reset.",
    )

    def validate_reason(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("Say why the breaker is forced open.")
        return value.strip()


# --- dead letters --------------------------------------------------------------------------------
class DeadLetterFilterSerializer(serializers.Serializer[Any]):
    """Filters of the dead-letter list (query string) and of a bulk retry (body)."""

    status = serializers.ChoiceField(choices=DeadLetter.Status.choices, required=False)
    kind = serializers.ChoiceField(choices=DeadLetter.Kind.choices, required=False)
    category = serializers.ChoiceField(choices=DeadLetter.Category.choices, required=False)
    dependency = serializers.CharField(max_length=100, required=False, help_text="e.g. green_api, deepseek.")
    tenant = serializers.CharField(
        max_length=64, required=False, help_text="Tenant key: the hotel's id for messaging letters."
    )
    created_after = serializers.DateTimeField(required=False, help_text="Created at or after (ISO 8601).")
    created_before = serializers.DateTimeField(required=False, help_text="Created before (ISO 8601).")

    def filters(self) -> dict[str, Any]:
        return {key: self.validated_data.get(key) for key in DEAD_LETTER_FILTERS}


class DeadLetterSerializer(serializers.ModelSerializer[DeadLetter]):
    class Meta:
        model = DeadLetter
        fields = (
            "id",
            "kind",
            "status",
            "category",
            "dependency",
            "tenant",
            "subject",
            "reason_code",
            "reason",
            "attempts",
            "redrive_count",
            "first_failed_at",
            "last_failed_at",
            "next_redrive_at",
            "created_at",
            "updated_at",
            "resolved_at",
        )
        read_only_fields = fields


class DeadLetterDetailSerializer(serializers.ModelSerializer[DeadLetter]):
    resolved_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = DeadLetter
        fields = (
            *DeadLetterSerializer.Meta.fields,
            "subject_type",
            "subject_id",
            "error_class",
            "error_message",
            "payload",
            "raw",
            "raw_size",
            "raw_truncated",
            "alerted_at",
            "resolved_by",
            "resolution",
            "staff_notes",
        )
        read_only_fields = fields


class QuarantinedNotificationSerializer(serializers.ModelSerializer[DeadLetter]):
    """A webhook notification acknowledged with 200 but not stored: its bounded raw body and why."""

    resolved_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = DeadLetter
        fields = (
            "id",
            "status",
            "subject",
            "tenant",
            "reason_code",
            "reason",
            "raw",
            "raw_size",
            "raw_truncated",
            "payload",
            "created_at",
            "updated_at",
            "resolved_at",
            "resolved_by",
            "resolution",
            "staff_notes",
        )
        read_only_fields = fields


class RetrySerializer(serializers.Serializer[Any]):
    reason = serializers.CharField(
        max_length=REASON_MAX, required=False, default="", allow_blank=True, help_text="Why (audited)."
    )


class ReasonSerializer(serializers.Serializer[Any]):
    reason = serializers.CharField(max_length=REASON_MAX, help_text="Why (audited; kept in staff notes).")

    def validate_reason(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("This field may not be blank.")
        return value.strip()


class RetryResultSerializer(serializers.Serializer[Any]):
    handed_back = serializers.BooleanField(help_text="The work is back in its pipeline (letter: retrying).")
    resolved = serializers.BooleanField(help_text="Nothing was left to do (letter: resolved).")
    detail = serializers.CharField()
    dead_letter = DeadLetterDetailSerializer()


class BulkRetrySerializer(DeadLetterFilterSerializer):
    ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1),
        required=False,
        max_length=1000,
        help_text="Retry these letters (those you may see and that are open); else the filtered set.",
    )
    reason = serializers.CharField(
        max_length=REASON_MAX, required=False, default="", allow_blank=True, help_text="Why (audited)."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("ids") is None and not any(
            attrs.get(key) not in (None, "") for key in DEAD_LETTER_FILTERS
        ):
            raise serializers.ValidationError(
                {"ids": "Give ids or at least one filter (a bulk retry of everything must be explicit)."}
            )
        return attrs


class BulkRetryResultSerializer(serializers.Serializer[Any]):
    matched = serializers.IntegerField(help_text="Open letters taken (at most `limit`, the oldest first).")
    retried = serializers.IntegerField(help_text="Handed back to their pipeline.")
    resolved = serializers.IntegerField(help_text="Nothing was left to do.")
    refused = serializers.IntegerField(help_text="Could not be redriven (see errors).")
    errors = serializers.ListField(  # type: ignore[assignment]  # a field, popped by the metaclass
        child=serializers.CharField(), help_text="The first refusals, why."
    )
    limit = serializers.IntegerField(help_text="API_BULK_RETRY_LIMIT.")
