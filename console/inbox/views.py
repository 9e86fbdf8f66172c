"""The staff inbox: conversations waiting for a person, and one conversation's thread with a reply
box, canned responses, internal notes, "Take" and "Hand back to the bot" (docs/handoff.md).

Pages of the admin site (``/admin/inbox/``: a staff login, each user's hotels only). Looking needs
``messaging.view_conversation``, acting (reply, take, hand back, note) ``messaging.answer_guests``:
403 without them for every id; another hotel's conversation is a 404 (the selectors' and the
services' hotel scope). Each action is one service call (audited ``via="admin"``), then a
redirect to the conversation (POST, redirect, GET). The list and the thread poll a partial every
``REFRESH_SECONDS`` with the vendored htmx (``console/static/console/htmx.min.js``, no CDN).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.admin import AdminSite
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from console.inbox.forms import NoteForm, ReplyForm, new_request_key
from hotelbot.exceptions import NotFound, ValidationFailed
from messaging import permissions, selectors
from messaging.models import Conversation
from messaging.services import handoff, inbox
from reliability.masking import mask_chat_id
from reliability.models import AuditEntry

#: Looking at the inbox and a conversation.
VIEW_PERMISSION = "messaging.view_conversation"
#: Seconds between two refreshes of the list and of a thread (htmx polling).
REFRESH_SECONDS = 3
#: Conversations per page of the list.
PAGE_SIZE = 25
VIA = AuditEntry.Via.ADMIN

View = Callable[..., HttpResponse]


def _may_view(request: HttpRequest) -> None:
    if not request.user.has_perm(VIEW_PERMISSION):
        raise PermissionDenied


def _may_act(request: HttpRequest) -> None:
    if not (request.user.has_perm(VIEW_PERMISSION) and permissions.user_may_answer_guests(user=request.user)):
        raise PermissionDenied


def _conversation(request: HttpRequest, pk: int) -> Conversation:
    try:
        return selectors.inbox_conversation_get(user=request.user, pk=pk)
    except NotFound as e:
        raise Http404(str(e)) from e


class Inbox:
    """The inbox's views, on ``site`` (the admin site: its login, its header and sidebar)."""

    def __init__(self, site: AdminSite) -> None:
        self.site = site

    def urls(self) -> list[URLPattern]:
        def page(view: View) -> View:
            return self.site.admin_view(require_GET(view))

        def action(view: View) -> View:
            return self.site.admin_view(require_POST(view))

        partial = self._partial
        return [
            path("inbox/", page(self.list_view), name="inbox"),
            path("inbox/rows/", partial(self.rows_view), name="inbox_rows"),
            path("inbox/<int:pk>/", page(self.conversation_view), name="inbox_conversation"),
            path("inbox/<int:pk>/thread/", partial(self.thread_view), name="inbox_thread"),
            path("inbox/<int:pk>/reply/", action(self.reply_view), name="inbox_reply"),
            path("inbox/<int:pk>/take/", action(self._owner_change_view("take")), name="inbox_take"),
            path(
                "inbox/<int:pk>/hand-back/",
                action(self._owner_change_view("hand_back")),
                name="inbox_hand_back",
            ),
            path("inbox/<int:pk>/note/", action(self.note_view), name="inbox_note"),
        ]

    def _partial(self, view: View) -> View:
        """A polled fragment: when the session has ended, htmx is told to reload the page (which
        then shows the login form) instead of swapping the login page into the fragment."""
        guarded = self.site.admin_view(require_GET(view))

        def partial(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.headers.get("HX-Request") and not self.site.has_permission(request):
                return HttpResponse(status=401, headers={"HX-Refresh": "true"})
            return guarded(request, *args, **kwargs)

        return partial

    # --- the list --------------------------------------------------------------------------------
    def _list_context(self, request: HttpRequest) -> dict[str, Any]:
        now = timezone.now()
        paginator = Paginator(selectors.inbox_conversations(user=request.user, now=now), PAGE_SIZE)
        page = paginator.get_page(request.GET.get("page"))
        return {"page": page, "rows": selectors.inbox_rows(page.object_list, now=now)}

    @staticmethod
    def _rows_url(page: Any) -> str:
        return f"{reverse('admin:inbox_rows')}?page={page.number}"

    @property
    def _common(self) -> dict[str, Any]:
        return {"refresh_seconds": REFRESH_SECONDS}

    @staticmethod
    def _render(request: HttpRequest, template: str, context: dict[str, Any]) -> TemplateResponse:
        # admin_view marks every page never_cache (no-store): guests' words stay out of caches.
        return TemplateResponse(request, template, context)

    def list_view(self, request: HttpRequest) -> HttpResponse:
        """Waiting conversations, oldest wait first, then those staff hold."""
        _may_view(request)
        data = self._list_context(request)
        context = {
            **self.site.each_context(request),
            **self._common,
            **data,
            "title": "Staff inbox",
            "rows_url": self._rows_url(data["page"]),
        }
        return self._render(request, "inbox/list.html", context)

    def rows_view(self, request: HttpRequest) -> HttpResponse:
        _may_view(request)
        return self._render(request, "inbox/_rows.html", {**self._common, **self._list_context(request)})

    # --- one conversation ------------------------------------------------------------------------
    def _thread_context(self, request: HttpRequest, conversation: Conversation) -> dict[str, Any]:
        return {
            "conversation": conversation,
            "guest": mask_chat_id(conversation.guest.chat_id),
            "thread": selectors.conversation_thread(conversation=conversation),
            "may_act": permissions.user_may_answer_guests(user=request.user),
        }

    def conversation_view(
        self,
        request: HttpRequest,
        pk: int,
        reply_form: ReplyForm | None = None,
        note_form: NoteForm | None = None,
    ) -> HttpResponse:
        """The thread, the owner and reason, the reply box, the canned responses and the notes."""
        _may_view(request)
        conversation = _conversation(request, pk)
        canned = list(selectors.canned_responses_list(hotel_id=conversation.hotel_id))
        context = {
            **self.site.each_context(request),
            **self._common,
            **self._thread_context(request, conversation),
            "title": f"Conversation with {mask_chat_id(conversation.guest.chat_id)}",
            "reply_form": reply_form or ReplyForm(prefix="reply", initial={"request_key": new_request_key()}),
            "note_form": note_form or NoteForm(prefix="note"),
            "canned": canned,
            "canned_texts": {str(c.pk): c.text for c in canned},
        }
        return self._render(request, "inbox/conversation.html", context)

    def thread_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        _may_view(request)
        context = {**self._common, **self._thread_context(request, _conversation(request, pk))}
        return self._render(request, "inbox/_thread.html", context)

    # --- actions: one service call each, then back to the conversation ---------------------------
    def _act(self, request: HttpRequest, pk: int, action: Callable[[], object], done: str) -> HttpResponse:
        try:
            action()
        except NotFound as e:
            raise Http404(str(e)) from e
        except ValidationFailed as e:
            messages.error(request, e.message)
        else:
            messages.success(request, done)
        return redirect(reverse("admin:inbox_conversation", args=[pk]))

    def reply_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """Queue the reply (``handoff.staff_reply_queue``): the form's request key makes a double
        submit queue it once. An empty or too long text shows the form again with its error."""
        _may_act(request)
        form = ReplyForm(request.POST, prefix="reply")
        if not form.is_valid():
            _conversation(request, pk)  # another hotel's conversation: 404 before any form error
            return self.conversation_view(request, pk, reply_form=form)
        return self._act(
            request,
            pk,
            lambda: handoff.staff_reply_queue(
                conversation_id=pk,
                text=form.cleaned_data["text"],
                actor=request.user,
                via=VIA,
                request_key=form.cleaned_data["request_key"],
            ),
            "Your reply is on its way to the guest; you hold the conversation now.",
        )

    #: The owner changes of the buttons: (service, what staff are told).
    OWNER_CHANGES = {
        "take": (
            handoff.conversation_take,
            "You hold this conversation: the bot stays silent until you hand it back.",
        ),
        "hand_back": (
            handoff.conversation_hand_back,
            "Handed back: the bot answers the guest's next messages.",
        ),
    }

    def _owner_change_view(self, change: str) -> View:
        service, done = self.OWNER_CHANGES[change]

        def view(request: HttpRequest, pk: int) -> HttpResponse:
            _may_act(request)
            return self._act(
                request, pk, lambda: service(conversation_id=pk, actor=request.user, via=VIA), done
            )

        return view

    def note_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        _may_act(request)
        form = NoteForm(request.POST, prefix="note")
        if not form.is_valid():
            _conversation(request, pk)
            return self.conversation_view(request, pk, note_form=form)
        return self._act(
            request,
            pk,
            lambda: inbox.note_add(
                conversation_id=pk, actor=request.user, text=form.cleaned_data["text"], via=VIA
            ),
            "Note added (staff only).",
        )
