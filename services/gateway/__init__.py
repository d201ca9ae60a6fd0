"""The gateway: the OpenAI-compatible edge that hands requests to routers over Redis."""
