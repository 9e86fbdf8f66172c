"""Breaker configuration edited by staff in admin, and the log of every breaker transition."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone

from reliability.breaker import DEFAULT_FAILURE_STATUSES, CircuitBreakerConfig, State, knobs


def _statuses_text(statuses: frozenset[int]) -> str:
    """Compact text for a status set: ``429,500-599``."""
    ordered = sorted(statuses)
    parts: list[str] = []
    start = prev = None
    for status in [*ordered, None]:
        if status is not None and prev is not None and status == prev + 1:
            prev = status
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = status
    return ",".join(parts)


def parse_statuses(text: str) -> frozenset[int]:
    """``"408,429,500-599"`` → the set of statuses; raises ValueError with a clear message."""
    statuses: set[int] = set()
    for raw in text.replace(" ", "").split(","):
        if not raw:
            continue
        low, _, high = raw.partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError as e:
            raise ValueError(f"{raw!r} is not a status or a range like 500-599") from e
        if not (100 <= first <= last <= 599):
            raise ValueError(f"{raw!r} is outside 100-599 or reversed")
        statuses.update(range(first, last + 1))
    return frozenset(statuses)


DEFAULT_FAILURE_STATUSES_TEXT = _statuses_text(DEFAULT_FAILURE_STATUSES)


class BreakerConfig(models.Model):
    """One circuit breaker per named dependency; edits reach every process within seconds."""

    class WindowType(models.TextChoices):
        COUNT = "count", "last N calls"
        TIME = "time", "last N seconds"

    class Mode(models.TextChoices):
        AUTO = "auto", "automatic (state machine decides)"
        FORCED_OPEN = State.FORCED_OPEN.value, "forced open (reject every call)"
        DISABLED = State.DISABLED.value, "disabled (admit every call, record nothing)"
        METRICS_ONLY = State.METRICS_ONLY.value, "metrics only (record, never reject)"

    name = models.SlugField(
        max_length=100, unique=True, help_text="Dependency name used in code, e.g. green_api, deepseek."
    )
    description = models.CharField(max_length=200, blank=True)
    mode = models.CharField(
        max_length=20,
        choices=Mode.choices,
        default=Mode.AUTO,
        help_text="Staff override of the state machine. Use the list actions to set it with a reason.",
    )
    mode_reason = models.CharField(max_length=200, blank=True, help_text="Why the override was set.")
    mode_until = models.DateTimeField(
        null=True, blank=True, help_text="The override ends by itself at this time (empty: until cleared)."
    )
    failure_threshold = models.PositiveIntegerField(
        default=5, help_text="Consecutive failures that open the breaker (0 turns this rule off)."
    )
    failure_rate_threshold = models.FloatField(
        default=50.0, help_text="Failure percentage over the window that opens the breaker (0-100]."
    )
    slow_call_rate_threshold = models.FloatField(
        default=100.0, help_text="Slow-call percentage over the window that opens the breaker (0-100]."
    )
    slow_call_duration = models.FloatField(
        default=30.0,
        validators=[MinValueValidator(0.001)],
        help_text="Seconds from which a call counts as slow.",
    )
    window_type = models.CharField(
        max_length=5,
        choices=WindowType.choices,
        default=WindowType.COUNT,
        help_text="Kind of sliding window.",
    )
    window_size = models.PositiveIntegerField(
        default=100, help_text="Calls or seconds in the sliding window."
    )
    minimum_requests = models.PositiveIntegerField(
        default=10, help_text="Calls the window must hold before the rate rules apply."
    )
    recovery_timeout = models.FloatField(
        default=60.0, help_text="Seconds the breaker stays open before probing."
    )
    recovery_timeout_multiplier = models.FloatField(
        default=1.0, help_text="Open duration grows by this factor on each consecutive trip (1 = constant)."
    )
    max_recovery_timeout = models.FloatField(
        null=True, blank=True, help_text="Cap on the grown open duration in seconds (empty: one day)."
    )
    half_open_max_calls = models.PositiveIntegerField(
        default=1, help_text="Probe calls admitted at once in half-open, across all processes."
    )
    success_threshold = models.PositiveIntegerField(
        default=3, help_text="Successful probes that close the breaker again."
    )
    half_open_max_wait = models.FloatField(
        default=60.0, help_text="Seconds a probe may take; an overdue probe counts as failed."
    )
    failure_statuses = models.CharField(
        max_length=200,
        default=DEFAULT_FAILURE_STATUSES_TEXT,
        help_text="HTTP statuses that count as failures, e.g. 408,429,500-599. Other 4xx are ignored.",
    )
    version = models.PositiveIntegerField(default=1, editable=False, help_text="Bumped on every save.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            self.version = models.F("version") + 1
        super().save(*args, **kwargs)
        if self.pk is not None:
            self.refresh_from_db(fields=["version"])

    def to_config(self) -> CircuitBreakerConfig:
        """The immutable runtime config (each knob staff tune, ``knobs.TUNABLE``, from its column of
        the same name); raises ValueError for invalid combinations."""
        values: dict[str, Any] = {name: getattr(self, name) for name in knobs.TUNABLE}
        values["failure_statuses"] = parse_statuses(self.failure_statuses)
        return CircuitBreakerConfig(**values)

    def clean(self) -> None:
        try:
            parse_statuses(self.failure_statuses)
        except ValueError as e:
            raise ValidationError({"failure_statuses": str(e)}) from e
        try:
            self.to_config()
        except ValueError as e:
            raise ValidationError(str(e)) from e
        if self.mode != self.Mode.AUTO and not self.mode_reason:
            raise ValidationError({"mode_reason": "Say why the breaker is overridden."})

    def override_active(self, now: Any = None) -> bool:
        return self.mode_in_force(self.mode, self.mode_until, now or timezone.now())

    @classmethod
    def mode_in_force(cls, mode: str, until: datetime | None, now: datetime) -> bool:
        """A staff override (any mode but auto) holds: no end, or an end still ahead. Also for
        the breaker registry, which reads the mode and its end without loading the row."""
        return mode != cls.Mode.AUTO and (until is None or until > now)


class BreakerEvent(models.Model):
    """A breaker changed state (reported once cluster-wide, by the process that caused it)."""

    breaker = models.CharField(max_length=100, db_index=True)
    from_state = models.CharField(max_length=20)
    to_state = models.CharField(max_length=20, db_index=True)
    reason = models.CharField(max_length=300)
    failure_rate = models.FloatField(help_text="Failure percentage over the window before the change.")
    slow_call_rate = models.FloatField(help_text="Slow-call percentage over the window before the change.")
    source = models.CharField(
        max_length=20,
        help_text="Where the decision was made: redis or database (shared), fallback (per process, "
        "store down) or local.",
    )
    process = models.CharField(max_length=120, help_text="host:pid of the process that saw the change.")
    at = models.DateTimeField(db_index=True, help_text="When the change happened.")
    open_until = models.DateTimeField(null=True, blank=True)
    alerted_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Set on the first event of an episode away from closed when the breaker monitor "
        "alerted staff that it stayed open too long (one alert per episode).",
    )

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["breaker", "-at"], name="breakerevent_recent")]

    def __str__(self) -> str:
        return f"{self.breaker}: {self.from_state} → {self.to_state} ({self.reason})"


class BreakerState(models.Model):
    """The shared state of one breaker when it lives in the database (no Redis, or Redis down).

    Written only by ``reliability.breaker.stores.database``, one locked transaction per decision;
    ``state``, ``epoch`` and ``open_until`` repeat the JSON ``data`` for admin and queries.
    """

    name = models.CharField(max_length=100, unique=True, help_text="Breaker (dependency) name.")
    state = models.CharField(
        max_length=20,
        default=State.CLOSED.value,
        help_text="State decided by the last operation (an OPEN whose time has passed turns "
        "half-open on the next call).",
    )
    epoch = models.BigIntegerField(
        default=0, help_text="Bumped on every transition; outcomes of calls admitted earlier are dropped."
    )
    open_until = models.DateTimeField(
        null=True, blank=True, help_text="When an open or timed forced-open state ends."
    )
    data = models.TextField(
        default="{}",
        help_text="Full state as JSON (counters, sliding window, half-open probe leases); "
        "the same fields as the Redis store's hash.",
    )
    updated_at = models.DateTimeField(help_text="Database time of the last change.")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name}: {self.state}"


class DeadLetter(models.Model):
    """Something the system accepted but could not process for good: kept for staff, never dropped.

    Generic: the toolkit knows a dead letter's *kind*, a subject reference, its payload and whose
    data it is (``tenant``), never the domain that produced it. The domain registers a redrive
    handler per kind at start-up (``reliability.dead_letters.register_handler``). Kinds:
    ``webhook_quarantine`` (a notification acknowledged with 200, so the provider's in-order queue
    moves on, but not parsed or stored), ``reply_generation`` and ``reply_send`` (a guest's reply
    that failed for good while generating or sending it).
    """

    class Kind(models.TextChoices):
        WEBHOOK_QUARANTINE = "webhook_quarantine", "webhook notification quarantined"
        REPLY_GENERATION = "reply_generation", "reply generation failed"
        REPLY_SEND = "reply_send", "reply send failed"

    class Status(models.TextChoices):
        PENDING = "pending", "pending (needs a look or waits for redrive)"
        RETRYING = "retrying", "retrying (redriven; waiting for the outcome)"
        MANUAL = "manual", "manual (parked for a human)"
        RESOLVED = "resolved", "resolved"
        DISCARDED = "discarded", "discarded"

    class Category(models.TextChoices):
        TIMEOUT = "timeout", "timeout"
        RATE_LIMITED = "rate_limited", "rate limited"
        PROVIDER_5XX = "provider_5xx", "provider 5xx"
        AUTH = "auth", "authentication"
        VALIDATION = "validation", "validation"
        QUOTA = "quota", "quota"
        UNKNOWN = "unknown", "unknown"

    #: Statuses a letter is still open in (counted as backlog, redriven, shown to staff first).
    OPEN_STATUSES = (Status.PENDING, Status.RETRYING, Status.MANUAL)

    kind = models.CharField(
        max_length=40,
        choices=Kind.choices,
        db_index=True,
        help_text="What failed (decides which redrive handler takes it).",
    )
    subject = models.CharField(
        max_length=200,
        blank=True,
        db_index=True,
        help_text="What it is about, for people: e.g. the Green API instance id of a quarantined "
        "notification, or 'reply job 42' (never a phone number in full).",
    )
    subject_type = models.CharField(
        max_length=100,
        blank=True,
        help_text="Model of the linked record (app_label.model, e.g. messaging.replyjob); empty if none.",
    )
    subject_id = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Primary key of the linked record (e.g. the reply job)."
    )
    tenant = models.CharField(
        max_length=64,
        blank=True,
        db_index=True,
        help_text="Whose data this is (messaging: the hotel's id). Staff see only their hotels' letters; "
        "empty = not attributable (operations only).",
    )
    dependency = models.CharField(
        max_length=100,
        blank=True,
        db_index=True,
        help_text="The dependency whose failure made this (green_api, deepseek); empty if ours.",
    )
    category = models.CharField(
        max_length=20,
        choices=Category.choices,
        default=Category.UNKNOWN,
        db_index=True,
        help_text="Failure category, classified automatically; decides the redrive strategy.",
    )
    reason_code = models.CharField(
        max_length=40,
        db_index=True,
        help_text="Reason code (too_large, not_json, wrong_type, too_long, unsafe_text, out_of_range, "
        "unknown_value, missing, unknown_instance, storage_error; attempts_exhausted, refused, ...).",
    )
    reason = models.TextField(help_text="Why it failed, for people; secrets masked.")
    error_class = models.CharField(
        max_length=200,
        blank=True,
        help_text="Exception class of the last failure (e.g. GreenApiTransientError).",
    )
    error_message = models.TextField(
        blank=True, help_text="Last error text; tokens and phone numbers masked."
    )
    raw = models.TextField(
        blank=True,
        help_text="The raw body as received, cut to DEAD_LETTER_RAW_MAX_CHARS; NUL bytes, lone "
        "surrogates and undecodable bytes are escaped (\\x00, \\ud83d, \\xff); secrets are masked.",
    )
    raw_size = models.PositiveBigIntegerField(
        default=0, help_text="Size of the original body in bytes (declared Content-Length when larger)."
    )
    raw_truncated = models.BooleanField(default=False, help_text="True when `raw` holds only a prefix.")
    payload = models.JSONField(
        null=True,
        blank=True,
        help_text="Structured context: the parsed JSON of a quarantined notification (strings escaped "
        "like `raw`), or the ids a redrive needs (job, message).",
    )
    attempts = models.PositiveIntegerField(default=0, help_text="Delivery attempts made before it died.")
    first_failed_at = models.DateTimeField(null=True, blank=True, help_text="When the first attempt failed.")
    last_failed_at = models.DateTimeField(null=True, blank=True, help_text="When the last attempt failed.")
    status = models.CharField(
        max_length=20,
        choices=Status.choices,
        default=Status.PENDING,
        db_index=True,
        help_text="pending → retrying (redriven) → resolved; or manual (parked for a human), discarded.",
    )
    redrive_count = models.PositiveIntegerField(
        default=0, help_text="Redrives so far (automatic and staff); stops at DLQ_MAX_REDRIVES automatically."
    )
    next_redrive_at = models.DateTimeField(
        null=True,
        blank=True,
        db_index=True,
        help_text="When the redrive task tries again (empty: never automatically).",
    )
    alerted_at = models.DateTimeField(null=True, blank=True, help_text="When staff were mailed about it.")
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Staff member who resolved, discarded or parked it (empty: the system).",
    )
    resolution = models.CharField(
        max_length=200, blank=True, help_text="How it ended (delivered after redrive, answered by hand, ...)."
    )
    staff_notes = models.TextField(blank=True, help_text="Notes for colleagues.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True, help_text="When it was recorded.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["kind", "status", "-created_at"], name="deadletter_queue"),
            models.Index(fields=["status", "next_redrive_at"], name="deadletter_redrive_due"),
            # /health/dlq/, the dashboard and the console's list by status, newest first.
            models.Index(fields=["status", "-created_at"], name="deadletter_status_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.subject or '-'}: {self.reason_code}"


class AuditEntry(models.Model):
    """Who did what, when and why: every mutating staff or integration action (admin, API, command)."""

    class Via(models.TextChoices):
        ADMIN = "admin", "admin"
        API = "api", "API"
        COMMAND = "command", "management command"
        SYSTEM = "system", "system (beat, workers)"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Who did it (empty: the system, or a deleted user: see actor_name).",
    )
    actor_name = models.CharField(max_length=150, help_text="Username at the time (kept if the user goes).")
    via = models.CharField(max_length=10, choices=Via.choices, db_index=True)
    action = models.CharField(
        max_length=60, db_index=True, help_text="e.g. dead_letter.retry, breaker.force_open."
    )
    target_type = models.CharField(max_length=100, blank=True, help_text="e.g. reliability.deadletter.")
    target_id = models.CharField(max_length=64, blank=True, db_index=True)
    tenant = models.CharField(max_length=64, blank=True, db_index=True, help_text="Whose data it touched.")
    reason = models.TextField(blank=True, help_text="Why, as given by the actor.")
    details = models.JSONField(default=dict, blank=True, help_text="Counts, filters, previous values.")

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "audit entry"
        verbose_name_plural = "audit log"

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_name} {self.action} {self.target_id}"


class RateLimitSlot(models.Model):
    """The next free slot of one paced call stream when Redis is not configured (reliability/ratelimit.py)."""

    name = models.CharField(
        max_length=200,
        unique=True,
        help_text="Stream: dependency, instance and method, e.g. green_api:1101:sendMessage.",
    )
    next_at = models.FloatField(
        default=0.0, help_text="Unix time of the next free slot; each reservation moves it by 1/rate."
    )

    class Meta:
        verbose_name = "rate-limit slot"

    def __str__(self) -> str:
        return self.name


class ReliabilityReport(models.Model):
    """One period's reliability report (the staff console's ``console.reports.reliability_report``),
    stored hourly by beat for every tenant together; kept ``RETENTION_DAYS``. Read-only in admin
    (operations only)."""

    period_start = models.DateTimeField(db_index=True, help_text="Start of the reported period (inclusive).")
    period_end = models.DateTimeField(help_text="End of the reported period (exclusive).")
    data = models.JSONField(
        help_text="The report: replies by result and latency, dead letters by category / dependency / "
        "kind, breaker transitions and time open, top failure reasons."
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True, help_text="When it was computed.")

    class Meta:
        ordering = ["-period_start", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["period_start", "period_end"], name="uniq_report_period")
        ]

    def __str__(self) -> str:
        return f"reliability report {self.period_start:%Y-%m-%d %H:%M} to {self.period_end:%H:%M}"


class Heartbeat(models.Model):
    """The last time a periodic job ran to its end (e.g. the reply sweeper that beat schedules).

    A row, not a cache key: every process must see it in every deployment (the embedded default's
    cache is per process) and Redis may be the very thing that is down.
    """

    name = models.CharField(max_length=100, unique=True, help_text="Job name, e.g. reply_sweeper.")
    last_seen_at = models.DateTimeField(help_text="When the job last finished a run.")
    process = models.CharField(max_length=120, blank=True, help_text="host:pid of the process that ran it.")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} @ {self.last_seen_at:%Y-%m-%d %H:%M:%S}"


# --- Degradation (issue 9) -------------------------------------------------------------------------
class DegradationLevel(models.IntegerChoices):
    """Ordered: a higher level is worse. CRITICAL also puts the site in read-only mode."""

    NORMAL = 0, "normal"
    MINOR = 1, "minor"
    MODERATE = 2, "moderate"
    SEVERE = 3, "severe"
    CRITICAL = 4, "critical"


class Switch(models.TextChoices):
    """Feature switches code asks by name (``reliability.degradation.is_enabled``); all on by default."""

    AI_REPLIES = "ai_replies", "ai_replies (off: canned FAQ answers, DeepSeek not called)"
    OUTBOUND_SENDING = "outbound_sending", "outbound_sending (off: replies wait, drained in order later)"
    WEBHOOK_INTAKE = "webhook_intake", "webhook_intake (off: webhook answers 503 + Retry-After)"
    API_WRITES = "api_writes", "api_writes (off: unsafe methods on /api/ answer 503)"
    WRITES = "writes", "writes (off: read-only mode, every unsafe request answers 503)"


def _validate_switches(value: Any) -> None:
    if not isinstance(value, list) or any(item not in Switch.values for item in value):
        raise ValidationError(f"A list of switch names from: {', '.join(Switch.values)}.")


class DegradationRule(models.Model):
    """A condition that, while true, holds the system at least at ``level`` with ``switches_off`` off."""

    class Condition(models.TextChoices):
        BREAKER_OPEN = "breaker_open", "breaker open or forced open (target: dependency)"
        BREAKER_HALF_OPEN = "breaker_half_open", "breaker half-open (target: dependency)"
        HEALTH_FAILING = "health_failing", "health check failing (target: check name)"
        DEAD_LETTER_BACKLOG_ABOVE = "dead_letter_backlog_above", "open dead letters above threshold"
        REPLY_BACKLOG_ABOVE = "reply_backlog_above", "reply jobs due and unfinished above threshold"
        REPLY_P95_ABOVE = "reply_p95_above", "reply latency p95 above threshold (seconds)"

    #: Conditions that name a target (a dependency or a health check) and ignore the threshold.
    TARGETED = (Condition.BREAKER_OPEN, Condition.BREAKER_HALF_OPEN, Condition.HEALTH_FAILING)

    name = models.CharField(max_length=100, unique=True, help_text="Shown in events as the cause.")
    enabled = models.BooleanField(default=True, help_text="Disabled rules are never evaluated.")
    condition = models.CharField(max_length=40, choices=Condition.choices, help_text="What is checked.")
    target = models.CharField(
        max_length=100,
        blank=True,
        help_text="Dependency (breaker name, e.g. green_api) or health check name; empty for backlogs.",
    )
    threshold = models.FloatField(
        default=0.0, help_text="N for the backlog conditions (count), seconds for reply_p95_above."
    )
    level = models.PositiveSmallIntegerField(
        choices=DegradationLevel.choices,
        default=DegradationLevel.MINOR,
        help_text="While the condition holds the system is at least at this level.",
    )
    switches_off = models.JSONField(
        default=list,
        blank=True,
        validators=[_validate_switches],
        help_text='Switches turned off while the condition holds, e.g. ["ai_replies"].',
    )
    description = models.CharField(max_length=300, blank=True, help_text="Why this rule exists.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-level", "name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.condition in self.TARGETED and not self.target.strip():
            raise ValidationError({"target": "This condition needs a dependency or health check name."})
        if self.condition not in self.TARGETED and self.threshold < 0:
            raise ValidationError({"threshold": "Must be zero or more."})


class DegradationState(models.Model):
    """The one row (pk=1) every process reads, at most once per DEGRADATION_REFRESH_SECONDS.

    ``level`` / ``switches_off`` are in force (the manual override when active, else the rules after
    hysteresis); ``auto_*`` are what the rules hold; ``maintenance`` repeats the active dependency
    maintenance so one indexed read gives a process everything.
    """

    level = models.PositiveSmallIntegerField(
        choices=DegradationLevel.choices, default=DegradationLevel.NORMAL, help_text="Level in force."
    )
    switches_off = models.JSONField(default=list, blank=True, help_text="Switches off in force.")
    cause = models.CharField(max_length=300, blank=True, help_text="Why (rules or override reason).")
    since = models.DateTimeField(default=timezone.now, help_text="When the level in force last changed.")
    maintenance = models.JSONField(
        default=list, blank=True, help_text="Dependencies under maintenance (from DependencyMaintenance)."
    )
    override_level = models.PositiveSmallIntegerField(
        choices=DegradationLevel.choices,
        null=True,
        blank=True,
        help_text="Staff override of the level (empty: the rules decide).",
    )
    override_switches_off = models.JSONField(
        default=list, blank=True, help_text="Switches the override turns off."
    )
    override_reason = models.CharField(max_length=300, blank=True, help_text="Why staff set the override.")
    override_until = models.DateTimeField(
        null=True, blank=True, help_text="The override ends by itself at this time (empty: until cleared)."
    )
    override_actor = models.CharField(max_length=150, blank=True, help_text="Who set the override.")
    auto_level = models.PositiveSmallIntegerField(
        choices=DegradationLevel.choices,
        default=DegradationLevel.NORMAL,
        help_text="Level the rules hold (after hysteresis).",
    )
    auto_switches_off = models.JSONField(default=list, blank=True, help_text="Switches the rules hold off.")
    auto_cause = models.CharField(max_length=300, blank=True, help_text="Rules that hold the level.")
    clear_since = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Hysteresis: since when the rules ask for less than they hold (empty: they agree).",
    )
    recovery_level = models.PositiveSmallIntegerField(
        choices=DegradationLevel.choices,
        null=True,
        blank=True,
        help_text="Hysteresis: the worst level the rules asked for since clear_since.",
    )
    recovery_switches_off = models.JSONField(
        default=list, blank=True, help_text="Hysteresis: switches the rules asked off since clear_since."
    )
    evaluated_at = models.DateTimeField(null=True, blank=True, help_text="Last run of the evaluator.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "degradation state"
        verbose_name_plural = "degradation state"

    def __str__(self) -> str:
        return f"{DegradationLevel(self.level).label}"

    def override_active(self, now: Any = None) -> bool:
        if self.override_level is None:
            return False
        return self.override_until is None or self.override_until > (now or timezone.now())


class DegradationEvent(models.Model):
    """The level (or the switches off) in force changed."""

    from_level = models.PositiveSmallIntegerField(choices=DegradationLevel.choices)
    to_level = models.PositiveSmallIntegerField(choices=DegradationLevel.choices, db_index=True)
    switches_off = models.JSONField(default=list, blank=True, help_text="Switches off after the change.")
    cause = models.CharField(max_length=300, help_text="Rules, override or maintenance that caused it.")
    actor = models.CharField(max_length=150, help_text="Who: a username, or 'system' (the evaluator).")
    at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{DegradationLevel(self.from_level).label} → {DegradationLevel(self.to_level).label}"


class DependencyMaintenance(models.Model):
    """Staff mark a dependency as under maintenance: its work waits (pending recovery) until it ends."""

    dependency = models.CharField(
        max_length=100, db_index=True, help_text="Dependency name, e.g. green_api or deepseek."
    )
    reason = models.CharField(max_length=300, help_text="Why (the provider's notice, a ticket).")
    until = models.DateTimeField(
        null=True, blank=True, help_text="Ends by itself at this time (empty: until ended by staff)."
    )
    actor = models.CharField(max_length=150, help_text="Who started it.")
    active = models.BooleanField(default=True, db_index=True, help_text="False once ended.")
    started_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    ended_by = models.CharField(max_length=150, blank=True, help_text="Who ended it ('system': expired).")

    class Meta:
        ordering = ["-started_at", "-id"]
        verbose_name_plural = "dependency maintenance"

    def __str__(self) -> str:
        return f"{self.dependency} ({'active' if self.active else 'ended'})"
