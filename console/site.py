"""The admin site: secure by default for a deployment that serves many hotels.

Every ModelAdmin registered on this site is **operations-only** (superusers and the operations
group, ``console.tenancy.is_operations``) unless it derives from :class:`ScopedAdmin`, which
cuts its queryset to the rows the user may see. So a third-party admin (users, groups, beat
schedules) or a new model nobody thought about is never shown to a hotel's staff by accident.

Scoped admins answer **404** for an object outside the user's scope on the change, delete and
history pages (Django's own answer for a missing id is a redirect to the index with a message; a
404 for both "missing" and "not yours" means ids cannot be probed). Actions, list filters and
foreign-key choices all run on the scoped querysets.

The site also serves the ops dashboard at ``/admin/reliability/dashboard/`` (staff with the view
permission of dead letters; breakers for operations only) and the staff inbox at ``/admin/inbox/``
(``console/inbox/``), and links both from the index page.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, path
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _

from console import tenancy

#: Who may open the ops dashboard (its content is then cut to the user's hotels).
DASHBOARD_PERMISSION = "reliability.view_deadletter"


class ScopedAdmin(admin.ModelAdmin):
    """An admin whose rows belong to tenants (hotels): subclasses implement :meth:`scope`."""

    #: Ids outside the user's scope answer 404 on change/delete/history pages.
    def scope(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        raise NotImplementedError

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return self.scope(request, super().get_queryset(request))

    def _in_scope_or_404(self, request: HttpRequest, object_id: str) -> None:
        if self.get_object(request, unquote(object_id)) is None:
            raise Http404(f"No {self.opts.verbose_name} matches the given query.")

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        self._in_scope_or_404(request, object_id)
        return super().change_view(request, object_id, form_url, extra_context)

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> HttpResponse:
        self._in_scope_or_404(request, object_id)
        return super().delete_view(request, object_id, extra_context)

    def history_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> HttpResponse:
        self._in_scope_or_404(request, object_id)
        return super().history_view(request, object_id, extra_context)

    def _get_obj_does_not_exist_redirect(self, request: HttpRequest, opts: Any, object_id: str) -> Any:
        raise Http404(f"No {opts.verbose_name} matches the given query.")

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        kwargs.setdefault("queryset", scoped_choices(self.admin_site, db_field.related_model, request))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        kwargs.setdefault("queryset", scoped_choices(self.admin_site, db_field.related_model, request))
        return super().formfield_for_manytomany(db_field, request, **kwargs)


def scoped_choices(site: admin.AdminSite, model: type[Model], request: HttpRequest) -> QuerySet[Any]:
    """The rows of ``model`` the user may pick: its scoped admin's queryset; every row for
    operations; none for others when the model is operations-only."""
    related = site._registry.get(model)
    if isinstance(related, ScopedAdmin):
        return related.get_queryset(request)
    if tenancy.is_operations(request.user):
        return model._default_manager.all()
    return model._default_manager.none()


class OperationsOnly:
    """Mixed into every non-scoped admin by :meth:`OpsAdminSite.register`."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return tenancy.is_operations(request.user) and super().has_module_permission(request)  # type: ignore[misc]

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return tenancy.is_operations(request.user) and super().has_view_permission(request, obj)  # type: ignore[misc]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return tenancy.is_operations(request.user) and super().has_change_permission(request, obj)  # type: ignore[misc]

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return tenancy.is_operations(request.user) and super().has_add_permission(request, *args)  # type: ignore[misc]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return tenancy.is_operations(request.user) and super().has_delete_permission(request, obj)  # type: ignore[misc]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset: QuerySet[Any] = super().get_queryset(request)  # type: ignore[misc]
        return queryset if tenancy.is_operations(request.user) else queryset.none()

    def _operations_or_403(self, request: HttpRequest) -> None:
        if not tenancy.is_operations(request.user):
            raise PermissionDenied  # the same answer for every id, existing or not

    def change_view(self, request: HttpRequest, object_id: str, *args: Any, **kwargs: Any) -> HttpResponse:
        self._operations_or_403(request)
        return super().change_view(request, object_id, *args, **kwargs)  # type: ignore[misc]

    def delete_view(self, request: HttpRequest, object_id: str, *args: Any, **kwargs: Any) -> HttpResponse:
        self._operations_or_403(request)
        return super().delete_view(request, object_id, *args, **kwargs)  # type: ignore[misc]

    def history_view(self, request: HttpRequest, object_id: str, *args: Any, **kwargs: Any) -> HttpResponse:
        self._operations_or_403(request)
        return super().history_view(request, object_id, *args, **kwargs)  # type: ignore[misc]

    def _get_obj_does_not_exist_redirect(self, request: HttpRequest, opts: Any, object_id: str) -> Any:
        raise Http404(f"No {opts.verbose_name} matches the given query.")


class PlainActionCheckbox:
    """Mixed into every admin by :meth:`OpsAdminSite.register`: each changelist row's selection
    checkbox written out as HTML instead of rendered through a form widget's templates (Django's
    ``ModelAdmin.action_checkbox``): the same markup, about a fifth of the CPU of a 100-row
    changelist (docs/scale.md)."""

    def action_checkbox(self, obj: Any) -> SafeString:
        label = format_html(_("Select this object for an action - {}"), str(obj))
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            ACTION_CHECKBOX_NAME,
            str(obj.pk),
            label,
        )


class OpsAdminSite(admin.AdminSite):
    site_header = "hotelbot administration"
    site_title = "hotelbot admin"
    index_template = "admin/hotelbot_index.html"

    def register(self, model_or_iterable: Any, admin_class: Any = None, **options: Any) -> None:
        admin_class = admin_class or admin.ModelAdmin
        if not issubclass(admin_class, ScopedAdmin) and not issubclass(admin_class, OperationsOnly):
            admin_class = type(f"OperationsOnly{admin_class.__name__}", (OperationsOnly, admin_class), {})
        if not issubclass(admin_class, PlainActionCheckbox):
            admin_class = type(admin_class.__name__, (PlainActionCheckbox, admin_class), {})
        super().register(model_or_iterable, admin_class, **options)

    def get_urls(self) -> list[URLResolver | URLPattern]:
        from console.inbox.views import Inbox

        return [
            path(
                "reliability/dashboard/",
                self.admin_view(self.dashboard_view),
                name="reliability_dashboard",
            ),
            *Inbox(self).urls(),  # the staff inbox: /admin/inbox/ (console/inbox/)
            *super().get_urls(),
        ]

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        """Staff who may see dead letters (``reliability.view_deadletter``; 403 otherwise): the
        page is their hotels' open letters and replies (and, for operations, the breakers)."""
        from console import dashboard

        if not request.user.has_perm(DASHBOARD_PERMISSION):
            raise PermissionDenied
        data = dashboard.dashboard_data(user=request.user, now=timezone.now())
        context = {**self.each_context(request), "title": "Ops dashboard", "data": data}
        return TemplateResponse(request, "reliability/dashboard.html", context)
