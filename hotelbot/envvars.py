"""Every environment variable hotelbot reads, in one place (placeholder, filled below)."""

RENAMED: dict[str, str] = {
    "GREEN_API_SEND_RATE": "REPLY_DRAIN_RATE",
    "BREAKER_DB_TIMEOUT": "BREAKER_DB_STORE_TIMEOUT",
}
