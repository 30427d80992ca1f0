"""Process primitives: spawning, reaping, /proc, process trees (the bottom layer: no other ccxd imports)."""
