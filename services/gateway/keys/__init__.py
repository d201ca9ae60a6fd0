"""Virtual keys: made by an admin (POST /admin/keys, or `python -m services.gateway.keys create`), kept
hashed in Redis, each with a tenant, the models it may use, rpm / tpm limits, USD budgets per UTC day
and month, and an expiry. model.py is the pure part (records, validation), store.py the Redis part,
__main__.py the CLI; services/gateway/admin_keys.py is the HTTP API and services/gateway/limits.py
admits a request made with one."""
