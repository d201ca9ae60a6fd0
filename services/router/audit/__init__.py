"""The closed-loop audit (issue #14): a share of accepted drafts is sampled onto a Redis stream with its
trace (sampling.py, called from the accept paths); an auditor loop inside each router re-asks the
heavyweight, compares the answers and stores the labelled trace for `calibrate fit --from-audit`
(auditor.py), within a daily budget shared by the cluster (budget.py), and keeps the cluster-wide
disagreement rates that the metrics and GET /v1/system/audit show (store.py)."""
