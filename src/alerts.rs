//! Alert policy, cooldown, the durable SQLite outbox and the sinks (webhook, JSON lines).
