"""The review loop: judges, the human review queue and their verdicts (docs/design.md §8)."""
