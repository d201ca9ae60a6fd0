"""`calibrate cache-pairs`: the semantic cache's verifier and similarity floor, fitted and chosen from the
labelled pair dataset (data/cache_pairs.jsonl). run.py is the step; the rest are its parts."""
