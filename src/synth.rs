//! The synthetic customer base generator: a subscription business that behaves like a real one.
