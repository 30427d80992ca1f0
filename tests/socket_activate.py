"""Hand listening sockets to a program the way systemd does: ``socket_activate.py FD:NAME… -- ARGV``.

The descriptors become 3, 4, … in order; ``LISTEN_PID`` is this process's pid,
which stays the program's pid through ``exec``.
"""

from __future__ import annotations

import fcntl
import os
import sys


def main() -> None:
    split = sys.argv.index("--")
    specs = [arg.split(":", 1) for arg in sys.argv[1:split]]
    argv = sys.argv[split + 1 :]
    fds = [int(fd) for fd, _ in specs]
    # Move every passed fd out of the way first, so dup2 onto 3, 4, … never clobbers one.
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100) for fd in fds]
    for fd in fds:
        os.close(fd)
    for i, fd in enumerate(high):
        os.dup2(fd, 3 + i)  # dup2 makes the copy inheritable
        os.close(fd)
    os.environ.update(
        LISTEN_PID=str(os.getpid()),
        LISTEN_FDS=str(len(specs)),
        LISTEN_FDNAMES=":".join(name for _, name in specs),
    )
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main()
