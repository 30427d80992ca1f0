"""Running jobs: spawning, reaping, process trees, queueing and timeouts."""
