"""Vector stores for the semantic tier: the interface (base) and its engines (edge, server).

Kept free of imports: the Edge worker process imports this package and should load only what it runs.
"""
