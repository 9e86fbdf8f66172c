"""Remove the seeded ``database`` and ``redis`` breakers: no code calls through them, so forcing one
open reported success and changed nothing. The degradation work gives them real jobs (and rows)."""

from django.db import migrations

INFRA = [
    # name, description, consecutive failures, open seconds, slow-call seconds (as 0002 seeded them)
    ("database", "PostgreSQL: very tolerant", 10, 30.0, 5.0),
    ("redis", "Redis cache and broker", 5, 30.0, 1.0),
]


def unseed(apps, schema_editor):
    apps.get_model("reliability", "BreakerConfig").objects.filter(name__in=[n for n, *_ in INFRA]).delete()


def reseed(apps, schema_editor):
    BreakerConfig = apps.get_model("reliability", "BreakerConfig")
    for name, description, failures, recovery, slow in INFRA:
        BreakerConfig.objects.get_or_create(
            name=name,
            defaults={
                "description": description,
                "failure_threshold": failures,
                "recovery_timeout": recovery,
                "slow_call_duration": slow,
            },
        )


class Migration(migrations.Migration):
    dependencies = [("reliability", "0002_seed_breakers")]
    operations = [migrations.RunPython(unseed, reseed)]
