"""ccxd's benchmark suite: every figure a ratio against a peer or a physical limit.

Run ``bench/run`` (``--quick`` to prove the harness works); results go to a
Markdown table and a JSON file.
"""
