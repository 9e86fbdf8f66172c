"""Celery adapters of the reliability layer: each calls one service."""

from __future__ import annotations

from celery import shared_task

from reliability import dead_letters


@shared_task(name="reliability.tasks.redrive_dead_letters", ignore_result=True)
def redrive_dead_letters() -> dict[str, int]:
    outcome = dead_letters.redrive_due()
    return {"retried": outcome.retried, "resolved": outcome.resolved, "refused": outcome.refused}


# --- Degradation (issue 9) ---
@shared_task(name="reliability.tasks.evaluate_degradation", ignore_result=True)
def evaluate_degradation() -> int:
    from reliability import degradation

    return int(degradation.degradation_evaluate().level)
