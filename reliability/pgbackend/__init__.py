"""The PostgreSQL database backend: django-prometheus's, with pooled connections checked by a poll."""
