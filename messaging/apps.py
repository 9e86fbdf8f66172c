from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "messaging"
    verbose_name = "Messaging"

    def ready(self) -> None:
        from django.conf import settings

        from messaging import health as checks
        from reliability import health

        # Registration only (reliability never imports messaging): our checks join /health/.
        health.register_function("reply_backlog", checks.reply_backlog)
        health.register_heartbeat(checks.SWEEPER_HEARTBEAT, interval=lambda: settings.REPLY_SWEEP_INTERVAL)
        health.register_function("green_api_instances", checks.green_api_instances, cached=True)
        health.register_function("deepseek", checks.deepseek_reachable, cached=True)
