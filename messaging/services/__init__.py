"""The message path's writes, one module per step: ``intake`` (webhook → inbound message + reply
job), ``replies`` (claim, generate, send exactly once), ``statuses`` (delivery statuses)."""
