from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class ConsoleConfig(AppConfig):
    name = "console"
    verbose_name = "Staff console"


class OpsAdminConfig(admin_apps.AdminConfig):
    """Used in INSTALLED_APPS instead of ``django.contrib.admin``: the default site is the console's
    (:class:`console.site.OpsAdminSite`, imported lazily, once the app registry is ready)."""

    default = False  # "console" alone in INSTALLED_APPS means ConsoleConfig
    default_site = "console.site.OpsAdminSite"
