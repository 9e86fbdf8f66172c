from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "messaging"
    verbose_name = "Messaging"

    def ready(self) -> None:
        from hotelbot.logs import register_redactor
        from messaging.clients.green_api import mask_token

        register_redactor(mask_token)  # Green API instance tokens in URLs, in every log line
