"""A qemu boot of the system tests' Debian tree: a real kernel with full cgroup v2.

The host here has a hybrid cgroup layout (v2 without controllers), so per-job
memory and pids limits under ``Delegate=yes`` can only be seen in a VM. The
tree (with the .deb installed through an nspawn run, and the checks in
``guest/``) is packed into an ext4 image; the guest's kernel and initramfs come
from the tree. One boot runs every check: a oneshot unit in the guest prints
``CCXD-CI <name> <json>`` lines on the serial console and powers off.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from pathlib import Path

__all__ = ["GUEST", "boot", "build_image"]

GUEST = Path(__file__).parent / "guest"


def build_image(tree: Path, deb: Path, workdir: Path) -> Path:
    """An ext4 image of the tree with ``deb`` and the guest checks installed."""
    image = workdir / "root.ext4"
    for d in ("upper", "work", "root"):
        (workdir / d).mkdir(parents=True, exist_ok=True)
    root = workdir / "root"
    q = shlex.quote
    opts = f"lowerdir={tree},upperdir={workdir / 'upper'},workdir={workdir / 'work'}"
    script = f"""
        set -e
        mount -t overlay overlay -o {q(opts)} {q(str(root))}
        cp {q(str(deb))} {q(str(root))}/var/tmp/
        systemd-nspawn -q -D {q(str(root))} --register=no --keep-unit \\
            apt-get install -y -q --no-install-recommends /var/tmp/{q(deb.name)} >/dev/null
        rm {q(str(root))}/var/tmp/{q(deb.name)}
        install -D -m 0755 {q(str(GUEST / "check"))} {q(str(root))}/usr/local/lib/ccxd-ci/check
        install -D -m 0644 {q(str(GUEST / "ccxd-ci-check.service"))} \\
            {q(str(root))}/etc/systemd/system/ccxd-ci-check.service
        mkdir -p {q(str(root))}/etc/systemd/system/multi-user.target.wants
        ln -sf ../ccxd-ci-check.service {q(str(root))}/etc/systemd/system/multi-user.target.wants/
        mkfs.ext4 -q -F -d {q(str(root))} -L root {q(str(image))} 3G
    """
    # A private mount namespace: the overlay goes away with the shell, whatever happens.
    res = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if res.returncode != 0:
        raise RuntimeError(f"building the guest image failed:\n{res.stdout}{res.stderr}")
    return image


def accelerator() -> str:
    """TCG (here /dev/kvm exists, but a KVM guest printed nothing in 50 s); ``CCXD_QEMU_ACCEL`` overrides."""
    forced = os.environ.get("CCXD_QEMU_ACCEL")
    if forced:
        return forced
    return "tcg"


def boot(
    tree: Path, image: Path, workdir: Path, timeout: float = 1200.0
) -> tuple[dict[str, object], str, float]:
    """Boot the image; return the guest's results by name, the whole console, and seconds taken."""
    kernel = sorted((tree / "boot").glob("vmlinuz-*"))[-1]
    initrd = sorted((tree / "boot").glob("initrd.img-*"))[-1]
    console = workdir / "serial.log"
    argv = [
        "qemu-system-x86_64",
        "-accel",
        accelerator(),
        "-m",
        "2048",
        "-smp",
        "2",
        "-nodefaults",
        "-no-reboot",
        "-display",
        "none",
        "-kernel",
        str(kernel),
        "-initrd",
        str(initrd),
        "-append",
        "root=/dev/vda rw console=ttyS0 quiet panic=-1 systemd.show_status=0",
        "-drive",
        f"file={image},format=raw,if=virtio",
        "-serial",
        f"file:{console}",
    ]
    started = time.monotonic()
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    took = time.monotonic() - started
    text = console.read_text(errors="replace") if console.exists() else ""
    if res.returncode != 0:
        raise RuntimeError(f"qemu exited {res.returncode}: {res.stderr}\n{text}")
    results: dict[str, object] = {}
    for line in text.splitlines():
        if line.startswith("CCXD-CI "):
            _, name, raw = line.rstrip("\r").split(" ", 2)
            try:
                results[name] = json.loads(raw)
            except ValueError:
                results[name] = f"(not JSON) {raw}"  # the check's own failure, for the assertion
    return results, text, took
