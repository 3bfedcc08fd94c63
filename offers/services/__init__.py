"""Writes of the offers app: definitions, issued offers (state machine), and the pure engine."""
