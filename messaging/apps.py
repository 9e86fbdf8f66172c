from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "messaging"
    verbose_name = "Messaging"

    def ready(self) -> None:
        from messaging import selectors
        from reliability import dashboard, tenancy

        # A dead letter's tenant is its hotel's id: staff see the letters of the hotels they staff.
        tenancy.register_tenant_resolver(selectors.hotel_ids_staffed_by)
        tenancy.register_tenant_labels(selectors.hotel_labels)
        # The staff console's numbers: replies for the dashboard, attempts on a dead letter's page.
        dashboard.register_reply_stats(selectors.reply_stats)
        dashboard.register_subject_history("messaging.replyjob", selectors.reply_job_attempts)
