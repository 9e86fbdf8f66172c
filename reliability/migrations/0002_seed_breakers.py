from django.db import migrations

SEED = [
    # name, description, consecutive failures, open seconds, slow-call seconds
    ("green_api", "Green API (WhatsApp sending): tolerant", 5, 60.0, 10.0),
    ("deepseek", "DeepSeek AI replies: sensitive, a canned answer stands in", 3, 120.0, 20.0),
    ("database", "PostgreSQL: very tolerant", 10, 30.0, 5.0),
    ("redis", "Redis cache and broker", 5, 30.0, 1.0),
]


def seed(apps, schema_editor):
    BreakerConfig = apps.get_model("reliability", "BreakerConfig")
    for name, description, failures, recovery, slow in SEED:
        BreakerConfig.objects.get_or_create(
            name=name,
            defaults={
                "description": description,
                "failure_threshold": failures,
                "recovery_timeout": recovery,
                "slow_call_duration": slow,
            },
        )


def unseed(apps, schema_editor):
    apps.get_model("reliability", "BreakerConfig").objects.filter(name__in=[s[0] for s in SEED]).delete()


class Migration(migrations.Migration):
    dependencies = [("reliability", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
