"""ehrbridge: connects voice agents to EHR systems through an event-sourced world model."""

__version__ = "0.1.0"
