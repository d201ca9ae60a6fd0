"""The request ledger: one SQL row per finished request, read from the gateways' Redis stream, and
the analytics computed from those rows."""
