"""The naive bot: a Django view that stores the message and enqueues a task that calls DeepSeek and
sends with Green API, then stores the reply. No breakers, retries, dead letters, leases or journal:
the baseline that ``bench.cost`` measures hotelbot against. Its two tables are created by the bench
(:data:`SCHEMA`), not by migrations."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS naive_message (
    id bigserial PRIMARY KEY,
    provider_message_id varchar(64) UNIQUE NOT NULL,
    chat_id varchar(64) NOT NULL,
    text text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS naive_reply (
    id bigserial PRIMARY KEY,
    message_id bigint NOT NULL REFERENCES naive_message (id),
    provider_message_id varchar(64) NOT NULL,
    text text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
"""
