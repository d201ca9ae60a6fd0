"""Calibration steps behind `python -m services.router.calibrate`, one module per step.

cache-pairs: pairs.py (load the labelled pairs), embed.py (cosine of each pair with the configured
embedder), fit.py (the learned verifier), evaluate.py (precision and recall over similarity floors),
choose.py (the operating point), plot.py (the precision-recall PNG), configfile.py (write the point into
a config YAML), cache_pairs.py (the whole run).
"""
