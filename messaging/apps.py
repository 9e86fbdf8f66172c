from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "messaging"
    verbose_name = "Messaging"

    def ready(self) -> None:
        from messaging import selectors
        from reliability import tenancy

        # A dead letter's tenant is its hotel's id: staff see the letters of the hotels they staff.
        tenancy.register_tenant_resolver(selectors.hotel_ids_staffed_by)
