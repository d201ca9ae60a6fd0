"""Every Redis key and stream name the services share, in one place."""

REQUEST_STREAM = "draftgate:requests"
ROUTER_GROUP = "routers"
REPLY_STREAM_PREFIX = "draftgate:replies:"
ROUTERS_ALIVE = "draftgate:routers:alive"
CANCEL_CHANNEL = "draftgate:cancel"
CACHE_WRITE_STREAM = "draftgate:cache:writes"
CACHE_WRITE_GROUP = "cache-writers"
MESSAGE_FIELD = b"m"


def reply_stream(gateway_id: str) -> str:
    return f"{REPLY_STREAM_PREFIX}{gateway_id}"
