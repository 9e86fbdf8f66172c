"""Hotels, guests, conversations, messages and the outbound reply job (the outbox)."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from reliability.fields import EncryptedTextField


class Hotel(models.Model):
    """A hotel and the facts its concierge answers from; one Green API instance per hotel."""

    name = models.CharField(max_length=200)
    green_api_instance_id = models.CharField(
        max_length=32,
        unique=True,
        help_text="Green API idInstance of the hotel's WhatsApp number; routes incoming webhooks.",
    )
    green_api_token = EncryptedTextField(
        help_text="Green API apiTokenInstance used to send replies for this hotel; encrypted at rest "
        "with FIELD_ENCRYPTION_KEYS (docs/secrets.md), decrypted only when a call needs it."
    )
    green_api_state = models.CharField(
        max_length=32, blank=True, help_text="Last stateInstance reported by Green API (e.g. authorized)."
    )
    green_api_state_changed_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When that state was last known: pushed by Green API (stateInstanceChanged) or "
        "confirmed by the instance-state health check.",
    )
    green_api_state_checked_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the instance-state health check last asked Green API (answered or not); it asks "
        "the hotels known or asked longest ago first.",
    )
    # Webhook credentials (docs/hotels.md): only SHA-256 digests of the tokens are stored. A plain,
    # fast hash is right here: the tokens are 256-bit random strings (never passwords), so nothing
    # is gained by a slow KDF, and the webhook checks one per request on the hot path.
    webhook_token_hash = models.CharField(
        max_length=64,
        blank=True,
        db_index=True,
        help_text="SHA-256 (hex) of the hotel's current Green API webhookUrlToken; the token itself is "
        "shown once when issued and never stored. Empty: no per-hotel token yet.",
    )
    webhook_token_issued_at = models.DateTimeField(
        null=True, blank=True, help_text="When the current webhook token was issued."
    )
    webhook_token_previous_hash = models.CharField(
        max_length=64,
        blank=True,
        db_index=True,
        help_text="SHA-256 (hex) of the webhook token replaced by the last rotation; still accepted "
        "until webhook_token_previous_expires_at (rotation without downtime).",
    )
    webhook_token_previous_expires_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="End of the previous webhook token's grace period; after it only the current token "
        "is accepted.",
    )
    check_in = models.CharField(max_length=200, blank=True, help_text="e.g. 'from 15:00'.")
    check_out = models.CharField(max_length=200, blank=True, help_text="e.g. 'until 11:00'.")
    wifi = models.CharField(max_length=200, blank=True, help_text="Network name and password.")
    breakfast = models.CharField(max_length=200, blank=True)
    address = models.CharField(max_length=300, blank=True)
    parking = models.CharField(max_length=200, blank=True)
    staff_contact = models.CharField(
        max_length=200, blank=True, help_text="Where a guest reaches a human (reception phone, extension)."
    )
    extra_facts = models.TextField(blank=True, help_text="Anything else the concierge may tell guests.")
    staff_hold_minutes = models.PositiveIntegerField(
        default=120,
        help_text="When staff answer a guest from the hotel's own WhatsApp phone, the bot stays silent "
        "in that conversation for this many minutes (then it answers again); docs/handoff.md.",
    )
    staff_email = models.EmailField(
        blank=True,
        help_text="Where alerts about this hotel's unanswered guests go (besides ADMINS).",
    )
    guest_data_retention_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(3650)],
        help_text="Days this hotel's guests' messages, conversations and guests without messages are "
        "kept before the daily purge deletes them (empty: the deployment's RETENTION_MESSAGES_DAYS). "
        "Rows still needed (a reply on its way, an open dead letter) are kept until they are not.",
    )
    staff = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="staffed_hotels",
        help_text="Staff users of this hotel: they see and act on only their hotels' guests, messages, "
        "reply jobs and dead letters (the operations group and superusers see every hotel).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Guest(models.Model):
    hotel = models.ForeignKey(Hotel, on_delete=models.CASCADE, related_name="guests")
    chat_id = models.CharField(max_length=64, help_text="WhatsApp chat id, e.g. 79001234567@c.us.")
    display_name = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hotel", "chat_id"], name="uniq_guest_chat_per_hotel")]
        ordering = ["-last_seen_at"]
        # The console's search by a number's first digits (LIKE 'prefix%' under any collation).
        indexes = [
            models.Index(fields=["chat_id"], name="guest_chat_prefix", opclasses=["varchar_pattern_ops"]),
            # The console's guest list, most recently seen first (the admin adds the id as a tiebreak).
            models.Index(fields=["-last_seen_at", "-id"], name="guest_last_seen"),
        ]

    def __str__(self) -> str:
        return self.display_name or self.chat_id


class Conversation(models.Model):
    """A run of messages with one guest; a new one starts after CONVERSATION_IDLE_HOURS of silence.

    Its ``owner`` says who answers the guest (docs/handoff.md): the bot, nobody yet (waiting for
    staff, after the guest was told once that a person will answer), or staff."""

    class Owner(models.TextChoices):
        BOT = "bot", "bot"
        WAITING = "waiting", "waiting for staff"
        STAFF = "staff", "staff"

    class OwnerReason(models.TextChoices):
        GUEST_ASKED = "guest_asked", "the guest asked for a person"
        COMPLAINT = "complaint", "a complaint"
        EMERGENCY = "emergency", "an emergency"
        AI_SIGNAL = "ai_signal", "the AI asked for a person"
        FALLBACK = "fallback", "the AI was down and no FAQ answer matched"
        UNREADABLE_MESSAGE = "unreadable_message", "a message the bot cannot read (voice, image...)"
        DEAD_REPLY = "dead_reply", "the bot's reply failed for good"
        STAFF_PHONE = "staff_phone", "staff wrote from the hotel's phone"
        STAFF_TOOK = "staff_took", "staff took the conversation"
        HANDED_BACK = "handed_back", "staff handed the conversation back to the bot"

    hotel = models.ForeignKey(Hotel, on_delete=models.CASCADE, related_name="conversations")
    guest = models.ForeignKey(Guest, on_delete=models.CASCADE, related_name="conversations")
    started_at = models.DateTimeField(auto_now_add=True)
    last_message_at = models.DateTimeField(db_index=True)
    owner = models.CharField(
        max_length=10,
        choices=Owner.choices,
        default=Owner.BOT,
        db_default=Owner.BOT,
        help_text="Who answers this guest: the bot, nobody yet (waiting for staff) or staff.",
    )
    owner_reason = models.CharField(
        max_length=20,
        choices=OwnerReason.choices,
        blank=True,
        default="",
        db_default="",
        help_text="Why the owner is what it is (set with the owner).",
    )
    owner_since = models.DateTimeField(null=True, blank=True, help_text="When the owner last changed.")
    owner_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The staff user who took or answered the conversation, when known.",
    )
    owner_until = models.DateTimeField(
        null=True,
        blank=True,
        help_text="End of a staff hold from the hotel's phone: after it the bot answers again. "
        "Empty: held until handed back.",
    )

    class Meta:
        ordering = ["-last_message_at"]
        indexes = [
            models.Index(fields=["guest", "-last_message_at"], name="conv_guest_recent"),
            models.Index(fields=["hotel", "owner", "owner_since"], name="conv_hotel_owner"),
        ]

    def __str__(self) -> str:
        return f"{self.guest} @ {self.hotel}"

    def bot_answers(self, now: datetime) -> bool:
        """The bot answers this guest: bot-owned, a staff hold from the phone that has ended, or
        waiting only because a reply died (flagged for staff, but the guest was told nothing, and
        the dead letter's redrive may still deliver: the bot goes on answering; docs/handoff.md)."""
        return (
            self.owner == self.Owner.BOT
            or (self.owner == self.Owner.STAFF and self.owner_until is not None and self.owner_until <= now)
            or (self.owner == self.Owner.WAITING and self.owner_reason == self.OwnerReason.DEAD_REPLY)
        )


class Message(models.Model):
    class Direction(models.TextChoices):
        INBOUND = "in", "inbound"
        OUTBOUND = "out", "outbound"

    class Status(models.TextChoices):
        RECEIVED = "received", "received"  # inbound, stored
        PENDING = "pending", "pending"  # outbound, not yet accepted by Green API
        ACCEPTED = "accepted", "accepted"  # Green API returned an idMessage
        SENT = "sent", "sent"
        DELIVERED = "delivered", "delivered"
        READ = "read", "read"
        FAILED = "failed", "failed"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    hotel = models.ForeignKey(
        Hotel,
        on_delete=models.CASCADE,
        related_name="messages",
        db_index=False,  # uniq_provider_message_per_hotel leads with it (and covers every row)
        help_text="The conversation's hotel, copied on every message: redeliveries, statuses and Green "
        "API's journal are matched to a message within the hotel whose instance reports them.",
    )
    direction = models.CharField(max_length=3, choices=Direction.choices)
    text = models.TextField(blank=True)
    message_type = models.CharField(
        max_length=40,
        default="textMessage",
        help_text="Green API typeMessage (textMessage, imageMessage...).",
    )
    provider_message_id = models.CharField(  # noqa: DJ001 - NULL = not yet known; unique when set
        max_length=64,
        null=True,
        blank=True,
        help_text="Green API idMessage; unique per hotel and direction so a redelivered webhook is a no-op.",
    )
    status = models.CharField(max_length=12, choices=Status.choices, db_index=True)
    status_detail = models.CharField(
        max_length=300, blank=True, help_text="Provider description on failures (e.g. 'SWE004: 1000')."
    )
    provider_timestamp = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            # Not partial: NULLs (an id not known yet) are distinct, and the index serves every
            # lookup by hotel (the hotel's cascade too), so the FK needs no index of its own.
            models.UniqueConstraint(
                fields=["hotel", "direction", "provider_message_id"], name="uniq_provider_message_per_hotel"
            )
        ]
        indexes = [
            models.Index(fields=["conversation", "created_at"], name="msg_conv_created"),
            # Reply latency (reports, dashboard, the p95 signal) by the time Green API accepted a reply.
            models.Index(
                fields=["accepted_at"], name="msg_accepted", condition=models.Q(accepted_at__isnull=False)
            ),
            # The console's search by a Green API id or its start (the unique one leads with the hotel).
            models.Index(
                fields=["provider_message_id"],
                name="msg_provider_id_prefix",
                opclasses=["varchar_pattern_ops"],
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_direction_display()} {self.provider_message_id or self.pk}: {self.text[:40]}"


class ReplyJob(models.Model):
    """The outbox row for one inbound message: the DB row, not the broker, is the source of truth."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        IN_PROGRESS = "in_progress", "in progress"
        # Parked: Green API's breaker rejected the send (nothing left); drained at the send rate
        # once the breaker admits calls again (replies.reply_jobs_drain).
        PENDING_PROVIDER_RECOVERY = "pending_provider_recovery", "pending provider recovery"
        DONE = "done", "done"
        DEAD = "dead", "dead"
        # Closed without sending: staff answer this guest (a takeover, or the conversation was
        # not the bot's); never dead-lettered, never sent.
        SUPERSEDED = "superseded", "closed: staff answer this guest"

    class Kind(models.TextChoices):
        ANSWER = "answer", "the bot's answer"
        HANDOFF = "handoff", "notice that staff will answer"
        STAFF = "staff", "written by staff"

    inbound = models.ForeignKey(
        Message,
        on_delete=models.CASCADE,
        related_name="reply_jobs",
        help_text="The guest message this job answers (a staff message: the guest's latest message).",
    )
    kind = models.CharField(
        max_length=10,
        choices=Kind.choices,
        default=Kind.ANSWER,
        db_default=Kind.ANSWER,
        help_text="answer: the bot's answer to its inbound message (one per message); handoff: the "
        "one notice that staff will answer; staff: a message written by staff.",
    )
    request_key = models.CharField(
        max_length=64,
        null=True,
        blank=True,
        unique=True,
        help_text="Idempotency key of a staff reply: the same key queues the message once.",
    )
    outbound = models.OneToOneField(
        Message, on_delete=models.SET_NULL, null=True, blank=True, related_name="sent_by_job"
    )
    status = models.CharField(max_length=30, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0, help_text="Times a worker claimed this job.")
    next_attempt_at = models.DateTimeField(help_text="Not claimable before this time (retry backoff).")
    lease_expires_at = models.DateTimeField(
        null=True, blank=True, help_text="While in progress: after this the worker is presumed dead."
    )
    lease_token = models.CharField(
        max_length=32,
        blank=True,
        help_text="Fencing token of the current claim: every write after the claim is conditional on "
        "it, so a worker whose lease passed to another stops (and never sends).",
    )
    reply_text = models.TextField(blank=True, help_text="Generated once, reused by every send attempt.")
    degraded = models.BooleanField(default=False, help_text="True when a canned answer replaced the AI.")
    degraded_reason = models.CharField(max_length=200, blank=True)
    send_started_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Set before a send leaves; while set the outcome is unknown and is reconciled "
        "with Green API before any resend, so a guest never gets the same reply twice.",
    )
    last_error = models.TextField(blank=True)
    published_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When this job's task was last handed to the broker (empty: never, e.g. broker down "
        "at commit). The sweeper re-publishes only after this is stale.",
    )
    published_task_id = models.CharField(
        max_length=64, blank=True, help_text="Celery task id of the last publish (find it in worker logs)."
    )
    republish_count = models.PositiveIntegerField(
        default=0,
        help_text="Sweeper re-publishes since the last regular publish; the next one waits "
        "REPLY_STALE_AFTER x 2^count (capped), so a slow queue is never flooded.",
    )
    manual_text = models.TextField(
        blank=True,
        help_text="A staff answer waiting to go out (answer by hand). The next claim first settles any "
        "earlier send still in doubt, then sends this text as a new outbound message.",
    )
    manual_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When staff answered this guest by hand (the reply text is then the staff's answer).",
    )
    sla_alerted_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When staff were mailed that this guest waited past REPLY_SLA_SECONDS (once per job).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="replyjob_due"),
            # Reports and dashboard windows; the console's list by status, newest first.
            models.Index(fields=["created_at"], name="replyjob_created"),
            models.Index(
                fields=["completed_at"],
                name="replyjob_completed",
                condition=models.Q(completed_at__isnull=False),
            ),
            models.Index(fields=["status", "-id"], name="replyjob_status_recent"),
        ]
        constraints = [
            # The intake's exactly-once: one bot answer per guest message (handoff notices and
            # staff messages are further jobs on the same message).
            models.UniqueConstraint(
                fields=["inbound"], condition=Q(kind="answer"), name="uniq_answer_per_inbound"
            )
        ]
        # Sending a guest a WhatsApp message written by staff (admin and API): a permission of its
        # own, given to the "hotel staff" group by migration 0011 (messaging/permissions.py).
        permissions = [("answer_guests", "Can answer guests by hand")]

    def __str__(self) -> str:
        return f"reply job {self.pk} ({self.status})"


class DeferredStatus(models.Model):
    """An ``outgoingMessageStatus`` that arrived before we knew its ``idMessage`` (see statuses.py)."""

    hotel = models.ForeignKey(
        Hotel,
        on_delete=models.CASCADE,
        related_name="deferred_statuses",
        db_index=False,  # deferred_hotel_id_message leads with it
        help_text="The hotel whose instance reported the status: it is applied only to that hotel's message.",
    )
    id_message = models.CharField(max_length=64, help_text="Green API idMessage.")
    status = models.CharField(max_length=20, help_text="Provider status (sent, delivered, read, failed...).")
    description = models.CharField(max_length=300, blank=True)
    provider_timestamp = models.DateTimeField(help_text="When Green API says it happened.")
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["provider_timestamp", "id"]
        verbose_name_plural = "deferred statuses"
        indexes = [models.Index(fields=["hotel", "id_message"], name="deferred_hotel_id_message")]

    def __str__(self) -> str:
        return f"{self.id_message}: {self.status}"


class DeliveryAttempt(models.Model):
    """One try at one step of a reply (generate, send, reconcile): failures are rows, not log lines."""

    class Step(models.TextChoices):
        GENERATE = "generate", "generate (DeepSeek)"
        SEND = "send", "send (Green API sendMessage)"
        RECONCILE = "reconcile", "reconcile (Green API journal)"

    class Outcome(models.TextChoices):
        OK = "ok", "ok"
        DEGRADED = "degraded", "degraded (canned answer)"
        NOT_SENT = "not_sent", "failed, surely not sent"
        UNKNOWN = "unknown", "failed, outcome unknown"
        REFUSED = "refused", "refused (permanent)"
        REJECTED = "rejected", "rejected by our breaker or pacing (no I/O)"
        LEASE_LOST = "lease_lost", "stopped: lease lost"
        ERROR = "error", "our own error"

    job = models.ForeignKey(ReplyJob, on_delete=models.CASCADE, related_name="delivery_attempts")
    attempt = models.PositiveIntegerField(help_text="The job's claim number this try belongs to.")
    step = models.CharField(max_length=12, choices=Step.choices)
    started_at = models.DateTimeField(db_index=True)
    duration_ms = models.PositiveIntegerField(help_text="Wall time of the call, milliseconds.")
    outcome = models.CharField(max_length=12, choices=Outcome.choices, db_index=True)
    http_status = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Provider HTTP status, when a response came."
    )
    error = models.TextField(blank=True, help_text="Error text; tokens and phone numbers masked.")

    class Meta:
        ordering = ["started_at", "id"]
        indexes = [models.Index(fields=["job", "started_at"], name="attempt_job_started")]

    def __str__(self) -> str:
        return f"job {self.job_id} #{self.attempt} {self.step}: {self.outcome}"
