from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "messaging"
    verbose_name = "Messaging"

    def ready(self) -> None:
        from messaging import selectors
        from reliability import tenancy

        # A dead letter's tenant is its hotel's id: staff see the letters of the hotels they staff.
        tenancy.register_tenant_resolver(selectors.hotel_ids_staffed_by)

        # Degradation rules on the reply backlog and latency read these (issue 9).
        from reliability import degradation

        degradation.register_signal(degradation.REPLY_BACKLOG, selectors.reply_backlog_count)
        degradation.register_signal(degradation.REPLY_P95_SECONDS, selectors.reply_latency_p95)
