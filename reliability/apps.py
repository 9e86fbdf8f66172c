from django.apps import AppConfig


class ReliabilityConfig(AppConfig):
    name = "reliability"
    verbose_name = "Reliability"

    def ready(self) -> None:
        from celery.signals import beat_init, worker_process_init
        from django.core import checks as django_checks
        from django.core.signals import got_request_exception
        from prometheus_client import REGISTRY

        from hotelbot import checks
        from reliability import (
            broker,
            broker_fallback,
            crypto,
            database_breaker,
            encryption,
            health,
            http,
            masking,
            observability,
            watchers,
        )
        from reliability.breaker import registry, set_default_store_factory
        from reliability.metrics import SCRAPE_TIME

        checks.register()  # unsafe settings refuse to start without DEBUG (hotelbot/checks.py)
        # Registration only: the store (and any connection) is built on the first breaker's use.
        set_default_store_factory(registry.store)
        for collector in SCRAPE_TIME:  # scrape-time counts of rows (single-process /metrics)
            REGISTRY.register(collector)
        observability.connect_celery_signals()
        masking.register_redactor(http.redact_live_sessions)
        # Values encrypted at rest (issue 16): keys checked at start, ciphertexts and keys never
        # logged, a census of what decrypts on /health/ (counts only).
        django_checks.register(crypto.check_field_encryption_keys, django_checks.Tags.security)
        masking.register_redactor(crypto.redact_encrypted)
        health.register_function("encrypted_values", encryption.encrypted_values_health, cached=True)
        # Redis / broker down (issue 9): workers survive a Redis kill (kombu guard) and take work
        # from the database while the broker is away (one poller thread per pool process).
        broker.install_kombu_redis_guard()
        worker_process_init.connect(broker_fallback.start, weak=False)
        # Checks that must run every few seconds run on a thread of the beat process (no broker trip).
        beat_init.connect(watchers.start, weak=False)
        broker_fallback.register_recovery("breakers_and_degradation", broker_fallback.warm_after_recovery)
        # A database error that became Django's 500 is noted for the database breaker's middleware.
        got_request_exception.connect(
            database_breaker.note_request_exception, dispatch_uid="reliability.database_breaker"
        )
