from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "messaging"
    verbose_name = "Messaging"

    def ready(self) -> None:
        from messaging import selectors
        from messaging.services.redrive import ReplyDeadLetters
        from reliability import dead_letters, tenancy
        from reliability.models import DeadLetter

        # A dead letter's tenant is its hotel's id: staff see the letters of the hotels they staff.
        tenancy.register_tenant_resolver(selectors.hotel_ids_staffed_by)
        # Dead replies are redriven through the reply pipeline and alert staff by mail.
        handler = ReplyDeadLetters()
        dead_letters.register_handler(DeadLetter.Kind.REPLY_GENERATION, handler)
        dead_letters.register_handler(DeadLetter.Kind.REPLY_SEND, handler)
