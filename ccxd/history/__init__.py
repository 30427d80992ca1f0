"""What ccxd remembers about jobs: recording, timeout estimates, retention."""
