from __future__ import annotations

import factory
from django.utils import timezone

from messaging.models import Conversation, Guest, Hotel, Message, ReplyJob


class HotelFactory(factory.django.DjangoModelFactory[Hotel]):
    class Meta:
        model = Hotel
        django_get_or_create = ("green_api_instance_id",)

    name = "Seaside Inn"
    green_api_instance_id = "1101000001"
    green_api_token = "test-token"
    check_in = "from 15:00"
    check_out = "until 11:00"
    wifi = 'network "Seaside-Guest", password "sunny2026"'
    breakfast = "07:00-10:30 in the garden room"
    address = "1 Beach Road, Porto"
    parking = "free on-site parking, 20 spaces"
    staff_contact = "reception, dial 9"


class GuestFactory(factory.django.DjangoModelFactory[Guest]):
    class Meta:
        model = Guest

    hotel = factory.SubFactory(HotelFactory)
    chat_id = factory.Sequence(lambda n: f"7900{n:07d}@c.us")
    display_name = factory.Faker("first_name")


class ConversationFactory(factory.django.DjangoModelFactory[Conversation]):
    class Meta:
        model = Conversation

    guest = factory.SubFactory(GuestFactory)
    hotel = factory.SelfAttribute("guest.hotel")
    last_message_at = factory.LazyFunction(timezone.now)


class MessageFactory(factory.django.DjangoModelFactory[Message]):
    class Meta:
        model = Message

    conversation = factory.SubFactory(ConversationFactory)
    hotel = factory.SelfAttribute("conversation.hotel")
    direction = Message.Direction.INBOUND
    text = "What time is check-out?"
    provider_message_id = factory.Sequence(lambda n: f"IN{n:030X}")
    status = Message.Status.RECEIVED


class ReplyJobFactory(factory.django.DjangoModelFactory[ReplyJob]):
    class Meta:
        model = ReplyJob

    inbound = factory.SubFactory(MessageFactory)
    next_attempt_at = factory.LazyFunction(timezone.now)
