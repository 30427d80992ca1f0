"""Resource control and accounting per job (cgroup v2, cgroup v1, or none)."""
