"""Re-seed the ``redis`` breaker (0004 removed it while nothing called through it): it now guards
broker publishes and the workers' broker probes, so a Redis outage is skipped fast cluster-wide
(issue 9, Redis down). A short open time: a worker's probe is the half-open call that detects
Redis's return."""

from django.db import migrations

NAME = "redis"


def seed(apps, schema_editor):
    apps.get_model("reliability", "BreakerConfig").objects.get_or_create(
        name=NAME,
        defaults={
            "description": "Redis (broker publishes and probes): skip fast while it is down",
            "failure_threshold": 3,
            "recovery_timeout": 10.0,
            "slow_call_duration": 1.0,
        },
    )


def unseed(apps, schema_editor):
    apps.get_model("reliability", "BreakerConfig").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("reliability", "0011_degradation")]
    operations = [migrations.RunPython(seed, unseed)]
