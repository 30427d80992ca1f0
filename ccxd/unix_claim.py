"""Claiming the daemon's Unix socket: its directory, the lock file, a stale socket, systemd's socket."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import socket
import stat
from pathlib import Path

from ccxd import activation, paths, trust
from ccxd.sockets import bind_unix_socket

__all__ = ["AlreadyRunning", "UnixSocketClaim"]

log = logging.getLogger("ccxd.daemon")


class AlreadyRunning(Exception):
    """Another ccxd owns the socket."""


class UnixSocketClaim:
    """The daemon's Unix socket and the lock that makes it this daemon's.

    ``configured`` says the config set ``socket_path``: such a directory is
    checked for squatters rather than made private.  :attr:`path` becomes the
    address of the socket systemd passed, when it passed one.
    """

    def __init__(self, path: Path, configured: bool) -> None:
        self.path = path
        self._configured = configured
        self._lock_fd: int | None = None
        self.activated = activation.ActivatedSockets()

    def open(self) -> socket.socket:
        """Take systemd's sockets, the lock, then the Unix socket (bound here unless systemd passed it)."""
        self.activated = activation.take()
        if self.activated.unix is not None:
            return self._activated_unix(self.activated.unix)
        path = self.path
        if path.parent == paths.runtime_dir() or not self._configured:
            paths.ensure_private_dir(path.parent)
        else:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:  # clients refuse a socket others could have put there: say so now
                trust.check_socket_dir(path)
            except trust.Untrusted as exc:
                raise PermissionError(str(exc)) from None
        self._take_lock()
        if path.exists() or path.is_symlink():
            # We hold the lock, so whatever is there was left by a daemon that died.
            log.info("removing stale socket %s", path)
            path.unlink()
        return bind_unix_socket(path)

    def unlink(self) -> None:
        """Remove the socket file, unless systemd owns it."""
        if self.activated.unix is None:  # an activated socket belongs to systemd
            with contextlib.suppress(OSError):
                self.path.unlink()

    def _activated_unix(self, sock: socket.socket) -> socket.socket:
        """Serve the socket systemd bound: never unlink or re-create it (it outlives us)."""
        name = sock.getsockname()
        if isinstance(name, str) and name.startswith("/"):
            if name != str(self.path):
                log.info("socket_path %s is unused: systemd passed %s", self.path, name)
            self.path = Path(name)
        self._take_lock()
        return sock

    def _take_lock(self) -> None:
        lock_path = self.path.with_name(self.path.name + ".lock")
        # Never through a symlink: one planted there would have us truncate its target.
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            raise PermissionError(
                f"the lock file {lock_path} is a symbolic link, which ccxd never follows "
                "(another user may have planted it): remove it"
            ) from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
            os.close(fd)
            raise PermissionError(f"the lock file {lock_path} is not a regular file of ours: remove it")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise AlreadyRunning(
                f"another ccxd (pid {holder}) is already serving {self.path}"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd
