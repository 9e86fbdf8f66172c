"""The staff console, the top floor: the admin site and every ModelAdmin, the ops dashboard, the DRF
API (/api/v1/), reports, audit views and tenant scoping. It reads messaging selectors and reliability
engines directly; nothing imports it except hotelbot/urls.py (and settings, which name the app)."""
