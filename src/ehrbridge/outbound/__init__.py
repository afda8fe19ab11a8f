"""Outbound: the gate that decides what may go to a sink, and later the outbox and dispatch
(docs/design.md §8, §9)."""
