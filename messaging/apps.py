from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "messaging"
    verbose_name = "Messaging"

    def ready(self) -> None:
        from celery.signals import worker_init
        from django.conf import settings
        from django.utils import timezone

        from messaging import health as checks
        from messaging import language, selectors
        from messaging.clients.green_api import mask_token
        from messaging.services import replies, retention
        from messaging.services.redrive import ReplyDeadLetters
        from reliability import (
            broker_fallback,
            dead_letters,
            degradation,
            health,
            masking,
            metrics,
            scheduler,
            watchers,
        )
        from reliability.models import DeadLetter

        # A Celery worker loads the guest-language model before its pool forks (docs/cost.md).
        worker_init.connect(language.warm, dispatch_uid="messaging.language.warm")
        # Our tables join the retention purge (reliability.retention), children first.
        retention.rules_register()
        # Dead replies are redriven through the reply pipeline and alert staff by mail.
        handler = ReplyDeadLetters()
        dead_letters.register_handler(DeadLetter.Kind.REPLY_GENERATION, handler)
        dead_letters.register_handler(DeadLetter.Kind.REPLY_SEND, handler)
        # Registration only (reliability never imports messaging): our checks join /health/.
        health.register_function("reply_backlog", checks.reply_backlog)
        health.register_heartbeat(checks.SWEEPER_HEARTBEAT, interval=lambda: settings.REPLY_SWEEP_INTERVAL)
        # Provider outages are ridden out (canned answers, replies parked until the breaker closes):
        # they make /health/ "degraded", never 503.
        health.register_function(
            "green_api_instances", checks.green_api_instances, cached=True, critical=False
        )
        health.register_function("deepseek", checks.deepseek_reachable, cached=True, critical=False)
        # Degradation rules on the reply backlog and latency read these (issue 9).
        degradation.register_signal(degradation.REPLY_BACKLOG, selectors.reply_backlog_count)
        degradation.register_signal(degradation.REPLY_P95_SECONDS, selectors.reply_latency_p95)
        # The gauges of guests waiting for staff (and past their hotel's target), read at scrape time.
        metrics.CONVERSATIONS_WAITING.set_source(lambda: selectors.waiting_counts(now=timezone.now()))
        # The conversations of the last 24 h by who handled them (the share resolved by the bot).
        metrics.CONVERSATIONS_HANDLED.set_source(lambda: selectors.handled_counts(now=timezone.now()))
        # These switches off stop every call to their provider: rules on its breaker spare them
        # while the breaker waits for a probe, so it can close (and the level recover).
        degradation.register_gating_switch("ai_replies", "deepseek")
        degradation.register_gating_switch("outbound_sending", "green_api")
        masking.register_redactor(mask_token)  # Green API instance tokens in URLs, in every log line
        # Broker down: worker processes take due reply jobs straight from the database (issue 9).
        broker_fallback.register_poller("reply_jobs", lambda limit: replies.reply_jobs_poll(limit=limit))
        # Beat publishes the drain of parked replies only while some are parked (one indexed EXISTS
        # in the beat process instead of a task every REPLY_DRAIN_INTERVAL; docs/cost.md).
        scheduler.register_idle_check(
            "messaging.tasks.drain_provider_recovery", selectors.reply_jobs_parked_exist
        )
        # A reply job no worker has seen is re-published within seconds, from the beat process.
        watchers.register_watch(
            "reply_jobs_unseen",
            replies.reply_jobs_republish_unseen,
            interval=lambda: settings.REPLY_UNSEEN_CHECK_INTERVAL,
        )
