"""Hotels, guests, conversations, messages and the outbound reply job (the outbox)."""

from __future__ import annotations

from datetime import datetime, time

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from messaging import reception
from messaging.bot_texts import LANGUAGE_NAMES, TextKey
from reliability.fields import EncryptedTextField


def language_code_validate(value: str) -> None:
    """A two-letter language code we know (``bot_texts.LANGUAGE_NAMES``), or empty."""
    if value and value not in LANGUAGE_NAMES:
        raise ValidationError(f"{value!r} is not a language code we know (ISO 639-1, e.g. en, ru, es).")


def default_timezone() -> str:
    """A new hotel's time zone: the deployment's ``TIME_ZONE`` (or UTC)."""
    return str(getattr(settings, "TIME_ZONE", "") or "UTC")


def validate_timezone(name: str) -> None:
    try:
        reception.zone(name)
    except ValueError as e:
        raise ValidationError(str(e), code="invalid_timezone") from e


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
    timezone = models.CharField(
        max_length=64,
        default=default_timezone,
        validators=[validate_timezone],
        help_text="The hotel's time zone (an IANA name such as Europe/Lisbon): reception hours are "
        "in this clock.",
    )
    handoff_target_minutes = models.PositiveIntegerField(
        default=15,
        validators=[MinValueValidator(1), MaxValueValidator(7 * 24 * 60)],
        help_text="Minutes a guest may wait for staff (counted while reception is open)",
    )
    staff_webhook_url = models.URLField(
        max_length=500,
        blank=True,
        help_text="Optional: a URL of your own systems that receives a JSON POST when a guest is "
        "handed to staff and when one waits past the target (docs/handoff.md).",
    )
    staff_webhook_secret = EncryptedTextField(
        blank=True,
        help_text="Optional: signs each webhook POST (HMAC-SHA256 header X-Hotelbot-Signature); "
        "encrypted at rest.",
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


class ReceptionHours(models.Model):
    """One opening of a hotel's reception on a weekday, hotel time (``messaging.reception``).

    Several rows per weekday are allowed; a weekday without rows is closed; a hotel without any
    row is open 24/7. ``closes`` before ``opens`` runs past midnight into the next day;
    00:00-00:00 is the whole day."""

    class Weekday(models.IntegerChoices):
        MONDAY = 0, "Monday"
        TUESDAY = 1, "Tuesday"
        WEDNESDAY = 2, "Wednesday"
        THURSDAY = 3, "Thursday"
        FRIDAY = 4, "Friday"
        SATURDAY = 5, "Saturday"
        SUNDAY = 6, "Sunday"

    hotel = models.ForeignKey(Hotel, on_delete=models.CASCADE, related_name="reception_hours")
    weekday = models.PositiveSmallIntegerField(choices=Weekday.choices)
    opens = models.TimeField(help_text="Hotel time, e.g. 07:00.")
    closes = models.TimeField(
        help_text="Hotel time; before 'opens' it is on the next day (22:00-02:00 ends at 02:00 after "
        "midnight); 00:00-00:00 is the whole day."
    )

    class Meta:
        ordering = ["hotel", "weekday", "opens"]
        verbose_name_plural = "reception hours"

    def __str__(self) -> str:
        return f"{self.get_weekday_display()} {self.opens:%H:%M}-{self.closes:%H:%M}"

    def clean(self) -> None:
        if self.opens is not None and self.opens == self.closes and self.opens != time(0):
            raise ValidationError(
                {"closes": "Closes at the time it opens: for the whole day use 00:00-00:00."}
            )

    def opening(self) -> reception.Opening:
        return reception.Opening(weekday=self.weekday, opens=self.opens, closes=self.closes)


class Guest(models.Model):
    hotel = models.ForeignKey(Hotel, on_delete=models.CASCADE, related_name="guests")
    chat_id = models.CharField(max_length=64, help_text="WhatsApp chat id, e.g. 79001234567@c.us.")
    display_name = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    language = models.CharField(
        max_length=8,
        blank=True,
        default="",
        db_default="",
        validators=[language_code_validate],
        help_text="The language the guest writes in (ISO 639-1), detected from their messages; the "
        "bot's own texts and the AI's answers use it. Empty: not known yet (English).",
    )
    opted_out_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the guest asked us to stop writing (STOP): no bot message goes to them until "
        "they write again or staff clear it. Staff replies still go (docs/handoff.md).",
    )
    opt_out_message_id = models.BigIntegerField(
        default=0,
        db_default=0,
        help_text="The guest's message that last set or cleared the opt-out: an earlier message "
        "processed later changes nothing.",
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hotel", "chat_id"], name="uniq_guest_chat_per_hotel")]
        ordering = ["-last_seen_at"]
        # The console's search by a number's first digits (LIKE 'prefix%' under any collation).
        indexes = [
            models.Index(fields=["chat_id"], name="guest_chat_prefix", opclasses=["varchar_pattern_ops"]),
            # The console's guest list, most recently seen first (the admin adds the id as a tiebreak).
            models.Index(fields=["-last_seen_at", "-id"], name="guest_last_seen"),
            # Its "opted out (STOP)" filter: the few opted-out guests, in the list's order (without
            # it, every guest was read for them: bench-scale).
            models.Index(
                fields=["-last_seen_at", "-id"],
                name="guest_opted_out",
                condition=models.Q(opted_out_at__isnull=False),
            ),
        ]
        permissions = [("clear_opt_out", "Can let an opted-out guest receive the bot's messages again")]

    def __str__(self) -> str:
        return self.display_name or self.chat_id


class HotelText(models.Model):
    """A hotel's own wording of a text the bot sends on its own, in one language (the defaults are
    ``messaging.bot_texts``; the one resolution is ``bot_texts.text_resolve``)."""

    hotel = models.ForeignKey(Hotel, on_delete=models.CASCADE, related_name="texts")
    key = models.CharField(max_length=32, choices=TextKey.choices, help_text="Which text this replaces.")
    language = models.CharField(
        max_length=8,
        validators=[language_code_validate],
        help_text="ISO 639-1 code of the guests' language this text is for (en, ru, es, de, fr, it...).",
    )
    text = models.TextField(
        help_text="What the bot sends instead of the default. Placeholders such as {contact} are filled "
        "in; each text may use only its own (the form says which)."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["hotel", "key", "language"]
        constraints = [
            models.UniqueConstraint(fields=["hotel", "key", "language"], name="uniq_hotel_text_per_language")
        ]

    def __str__(self) -> str:
        return f"{self.get_key_display()} ({self.language})"


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
    handoff_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the bot last handed this guest to staff (the owner became waiting); kept "
        "when staff take the conversation.",
    )
    staff_replied_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="The first staff message to the guest after that handoff (a staff reply or answer "
        "by hand accepted by Green API, or a message from the hotel's phone). Empty: none yet.",
    )
    staff_realerted_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When staff were alerted again that this guest waited past the hotel's target "
        "(once per handoff).",
    )

    class Meta:
        ordering = ["-last_message_at"]
        indexes = [
            models.Index(fields=["guest", "-last_message_at"], name="conv_guest_recent"),
            models.Index(fields=["hotel", "owner", "owner_since"], name="conv_hotel_owner"),
            # The dashboard's and the report's time to first human reply, by the reply's time.
            models.Index(
                fields=["staff_replied_at"],
                name="conv_staff_replied",
                condition=models.Q(staff_replied_at__isnull=False),
            ),
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
        # Closed without sending: the guest wrote again within the burst window, and the answer
        # job of the later message (``merged_into``) answers this message too, in one reply.
        MERGED = "merged", "closed: answered with the guest's next message"

    class Kind(models.TextChoices):
        ANSWER = "answer", "the bot's answer"
        HANDOFF = "handoff", "notice that staff will answer"
        STAFF = "staff", "written by staff"
        OPT_OUT = "opt_out", "opt-out confirmation"

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
        "one notice that staff will answer; staff: a message written by staff; opt_out: the one "
        "confirmation that the guest asked us to stop writing.",
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
    merged_into = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="merged",
        db_index=False,  # a partial index (Meta): only merged jobs have one
        help_text="A merged job: the answer job that answers this message too (the last message of the "
        "guest's burst, REPLY_BURST_QUIET_SECONDS; docs/handoff.md).",
    )
    burst_started_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the first message this job answers was stored (its own, or the first of a burst "
        "merged into it); the burst is answered by REPLY_BURST_MAX_SECONDS after it at the latest.",
    )
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
            # The messages a job answers for a burst (bursts): only merged jobs are in it.
            models.Index(
                fields=["merged_into"],
                name="replyjob_merged_into",
                condition=models.Q(merged_into__isnull=False),
            ),
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


class CannedResponse(models.Model):
    """A ready answer staff pick in the inbox to fill the reply box (per hotel and language)."""

    hotel = models.ForeignKey(Hotel, on_delete=models.CASCADE, related_name="canned_responses")
    title = models.CharField(max_length=100, help_text="What staff pick it by, e.g. 'Late check-out'.")
    text = models.TextField(
        max_length=20000, help_text="The text put in the reply box (staff may edit it before sending)."
    )
    language = models.CharField(
        max_length=8,
        default="en",
        help_text="Language code of the text (en, ru, es, de, fr...): the inbox offers a guest the texts "
        "of every language, this one in the label.",
    )
    ordering = models.PositiveIntegerField(default=0, help_text="Smaller first in the inbox's picker.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["hotel", "ordering", "title", "language"]
        constraints = [
            models.UniqueConstraint(
                fields=["hotel", "title", "language"], name="uniq_canned_response_title_language"
            )
        ]

    def __str__(self) -> str:
        return f"{self.title} ({self.language})"


class ConversationNote(models.Model):
    """An internal note of staff on a conversation: shown in the inbox, never sent to the guest."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The staff user who wrote it (empty: the user was deleted).",
    )
    text = models.TextField(max_length=5000)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["conversation", "created_at"], name="note_conv_created")]

    def __str__(self) -> str:
        return f"note {self.pk} on conversation {self.conversation_id}"


class StaffEvent(models.Model):
    """A webhook event for the hotel's own systems (``Hotel.staff_webhook_url``): an outbox row,
    written with what it reports and POSTed by the staff-alert beat task until it is delivered
    (docs/handoff.md). ``key`` makes it once per handoff and per re-alert."""

    class Event(models.TextChoices):
        HANDOFF = "handoff", "a guest was handed to staff"
        HANDOFF_OVERDUE = "handoff_overdue", "a guest waits past the hotel's target"

    hotel = models.ForeignKey(Hotel, on_delete=models.CASCADE, related_name="staff_events")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="staff_events")
    event = models.CharField(max_length=20, choices=Event.choices)
    key = models.CharField(
        max_length=120, unique=True, help_text="The event once: kind, conversation, handoff."
    )
    payload = models.JSONField(help_text="The JSON body POSTed (the guest's number masked).")
    created_at = models.DateTimeField(auto_now_add=True)
    next_attempt_at = models.DateTimeField(help_text="Not POSTed before this time.")
    attempts = models.PositiveIntegerField(default=0)
    delivered_at = models.DateTimeField(null=True, blank=True, help_text="When the URL answered 2xx.")
    given_up_at = models.DateTimeField(
        null=True, blank=True, help_text="When delivery stopped (no URL any more, or tried for too long)."
    )
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="staffevent_due",
                condition=models.Q(delivered_at__isnull=True, given_up_at__isnull=True),
            )
        ]

    def __str__(self) -> str:
        return f"{self.event} (conversation {self.conversation_id})"
