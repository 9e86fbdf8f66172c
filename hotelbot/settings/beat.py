"""Celery beat: the periodic tasks and the intervals of the loops they run (each names what it paces)."""

from __future__ import annotations

from celery.schedules import crontab

from .env import env_float

# django-celery-beat's DatabaseScheduler with its idle costs cut (reliability/scheduler.py): it looks
# for schedule changes made in admin at most every BEAT_SCHEDULE_CHECK_INTERVAL seconds (not on
# every tick), and skips a due entry whose app-registered idle check finds nothing to do.
CELERY_BEAT_SCHEDULER = "reliability.scheduler:Scheduler"
BEAT_SCHEDULE_CHECK_INTERVAL = env_float("BEAT_SCHEDULE_CHECK_INTERVAL", 5.0)
CELERY_TIMEZONE = "UTC"
REPLY_SWEEP_INTERVAL = env_float("REPLY_SWEEP_INTERVAL", 15.0)
REPLY_DRAIN_INTERVAL = env_float("REPLY_DRAIN_INTERVAL", 5.0)
CELERY_BEAT_SCHEDULE = {
    "messaging.sweep_reply_jobs": {
        "task": "messaging.tasks.sweep_reply_jobs",
        "schedule": REPLY_SWEEP_INTERVAL,
    },
    "messaging.drain_provider_recovery": {
        "task": "messaging.tasks.drain_provider_recovery",
        "schedule": REPLY_DRAIN_INTERVAL,
    },
    "reliability.redrive_dead_letters": {
        "task": "reliability.tasks.redrive_dead_letters",
        "schedule": env_float("DLQ_REDRIVE_INTERVAL", 60.0),
    },
    "reliability.evaluate_degradation": {
        "task": "reliability.tasks.evaluate_degradation",
        "schedule": env_float("DEGRADATION_EVALUATE_INTERVAL", 15.0),
    },
    "messaging.purge_deferred_statuses": {
        "task": "messaging.tasks.purge_deferred_statuses",
        "schedule": 3600.0,
    },
    # The last full hour's reliability report, stored for admin (5 past every hour).
    "reliability.reliability_report_hourly": {
        "task": "reliability.tasks.reliability_report_hourly",
        "schedule": crontab(minute="5"),
    },
    # Every table's rows past retention (settings/retention.py; reliability.retention), keyset batches.
    "reliability.purge_old_records": {
        "task": "reliability.tasks.purge_old_records",
        "schedule": crontab(minute="30", hour="3"),
    },
    # Health (issue 10): refresh the cached expensive checks and provider states, and the metrics.
    "reliability.health_monitor": {
        "task": "reliability.tasks.health_monitor",
        "schedule": 60.0,
    },
    # Alert staff (mail_admins) once per episode when a breaker stays open too long.
    "reliability.breaker_monitor": {
        "task": "reliability.tasks.breaker_monitor",
        "schedule": 120.0,
    },
    # Guests waiting longer than REPLY_SLA_SECONDS without any answer, and guests the bot handed to
    # staff: mail staff once per job.
    "messaging.flag_reply_sla": {
        "task": "messaging.tasks.flag_reply_sla",
        "schedule": env_float("REPLY_SLA_CHECK_INTERVAL", 60.0),
    },
}
