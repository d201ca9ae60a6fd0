"""Every Redis key and stream name the services share, in one place."""

REQUEST_STREAM = "draftgate:requests"
ROUTER_GROUP = "routers"
REPLY_STREAM_PREFIX = "draftgate:replies:"
ROUTERS_ALIVE = "draftgate:routers:alive"
CANCEL_CHANNEL = "draftgate:cancel"
CANCELLED_PREFIX = "draftgate:cancelled:"
CACHE_WRITE_STREAM = "draftgate:cache:writes"
CACHE_WRITE_GROUP = "cache-writers"
MESSAGE_FIELD = b"m"
# One hash per upstream deployment: its rpm / tpm buckets, shared by every router.
RATELIMIT_PREFIX = "draftgate:ratelimit:"


def reply_stream(gateway_id: str) -> str:
    return f"{REPLY_STREAM_PREFIX}{gateway_id}"


def cancelled(request_id: str) -> str:
    """Set (with a TTL) when a client leaves: a router that picks the request up later drops it."""
    return f"{CANCELLED_PREFIX}{request_id}"


def ratelimit(deployment: str) -> str:
    """The rate-limit state of one deployment (by its configured name), shared by all routers."""
    return f"{RATELIMIT_PREFIX}{deployment}"


# Each router's view of its upstream pools (GET /status), refreshed on its heartbeat, with a TTL.
ROUTER_STATUS_PREFIX = "draftgate:routers:status:"


def router_status(consumer: str) -> str:
    """The status JSON of one router, by its consumer name (the member of ROUTERS_ALIVE)."""
    return f"{ROUTER_STATUS_PREFIX}{consumer}"

# The edge (issue #13). Virtual keys: one hash per key, named by the SHA-256 of the key itself (the
# key is never stored), and a hash of every key's id -> that SHA-256, for listing and revoking by id.
VIRTUAL_KEY_PREFIX = "draftgate:vkeys:"
VIRTUAL_KEY_IDS = "draftgate:vkeys:ids"
# Per-key rate-limit and budget state, shared by every gateway pod.
KEY_USAGE_PREFIX = "draftgate:keyusage:"


def virtual_key(digest: str) -> str:
    """One virtual key's record, by the SHA-256 (hex) of the key."""
    return f"{VIRTUAL_KEY_PREFIX}{digest}"


def key_usage(key_id: str) -> str:
    """A virtual key's usage, shared by every gateway: one hash of its rpm / tpm buckets (r, k, t: shared/
    gcra.lua) and its spend in USD this UTC day and month (d, ds: the day YYYY-MM-DD and its spend; m, ms:
    the month YYYY-MM and its). A spend whose day or month is past reads as 0 (services/gateway/limits.lua)."""
    return f"{KEY_USAGE_PREFIX}{key_id}"
# Conversations kept for sessions, and templates added through the admin API.
SESSION_PREFIX = "draftgate:session:"
TEMPLATES = "draftgate:templates"
# Calls in flight per tier across the cluster (cluster_max_concurrent), and the queue's state.
QUEUE_PREFIX = "draftgate:queue:"


def queue_slots(tier: str) -> str:
    """The tier's leased slots: a sorted set of lease ids scored by when each expires (ms, Redis's clock)."""
    return f"{QUEUE_PREFIX}{tier}:slots"


def queue_waiting(tier: str) -> str:
    """The calls waiting for a slot of the tier, scored the same way (the queued count)."""
    return f"{QUEUE_PREFIX}{tier}:waiting"


# Gateways -> the ledger service: one record per finished request; and clients' feedback.
LEDGER_STREAM = "draftgate:ledger"
LEDGER_GROUP = "ledger-writers"
FEEDBACK_STREAM = "draftgate:feedback"
# Routers -> auditors: sampled accepted drafts with their traces (issue #14).
AUDIT_STREAM = "draftgate:audit"
AUDIT_GROUP = "auditors"
# Auditors -> `calibrate fit --from-audit`: each audited draft's trace and grade (shared.messages.AuditLabel),
# read with XRANGE (no group), trimmed to audit.labelled_maxlen.
AUDIT_LABELLED_STREAM = "draftgate:audit:labelled"
# The audit's cluster-wide state: the latest audit.window verdicts (all, per tenant, per category; JSON
# records, newest first), the scopes seen, verdict totals, and the spend per UTC day.
AUDIT_RECENT = "draftgate:audit:recent"
AUDIT_RECENT_TENANT_PREFIX = "draftgate:audit:recent:tenant:"
AUDIT_RECENT_CATEGORY_PREFIX = "draftgate:audit:recent:category:"
AUDIT_SCOPES = "draftgate:audit:scopes"  # a hash: "tenant:<t>" / "category:<c>" -> last verdict's time
AUDIT_COUNTS = "draftgate:audit:counts"  # a hash: verdict -> count (client feedback too)
AUDIT_SPEND_PREFIX = "draftgate:audit:spend:"


def audit_recent_tenant(tenant: str) -> str:
    return f"{AUDIT_RECENT_TENANT_PREFIX}{tenant}"


def audit_recent_category(category: str) -> str:
    return f"{AUDIT_RECENT_CATEGORY_PREFIX}{category}"


def audit_spend(day: str) -> str:
    """The audit's spend in USD on one UTC day (YYYY-MM-DD), shared by every router."""
    return f"{AUDIT_SPEND_PREFIX}{day}"
