from django.apps import AppConfig


class ReliabilityConfig(AppConfig):
    name = "reliability"
    verbose_name = "Reliability"

    def ready(self) -> None:
        from reliability.breaker import registry, set_default_store_factory

        # Registration only: the store (and any connection) is built on the first breaker's use.
        set_default_store_factory(registry.store)
