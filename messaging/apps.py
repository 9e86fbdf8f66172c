from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "messaging"
    verbose_name = "Messaging"

    def ready(self) -> None:
        from messaging import selectors
        from messaging.services import retention
        from reliability import maintenance, reports, tenancy

        # A dead letter's tenant is its hotel's id: staff see the letters of the hotels they staff.
        tenancy.register_tenant_resolver(selectors.hotel_ids_staffed_by)
        # The reliability report's reply numbers, and the retention purge of delivery attempts.
        reports.register_reply_stats(selectors.reply_stats)
        maintenance.register_purge("messaging.deliveryattempt", retention.delivery_attempts_purge)
