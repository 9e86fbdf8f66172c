"""Every ModelAdmin of the project, on the site of :mod:`console.site` (imported by Django's
admin autodiscovery: ``console.admin``)."""

from console.admin import degradation, messaging, reliability, reports, texts  # noqa: F401
