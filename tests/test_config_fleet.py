"""Fleet settings: what ``ccxd`` accepts, and the one line (exit 78) it refuses the rest with."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_config import ccxd, settings

GOOD_URL = "redis://ccxd:s3cret@10.0.0.1:6379/0"


def ccxctl(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp), "XDG_CONFIG_HOME": str(tmp / "cfg")}
    return subprocess.run(
        [sys.executable, "-m", "ccxctl", *args], env=env, capture_output=True, text=True, timeout=30
    )


def fleet_key(tmp: Path, name: str = "fleet.key") -> Path:
    path = tmp / name
    res = ccxctl("fleet-key", str(path), tmp=tmp)
    assert res.returncode == 0, res.stderr
    return path


def with_config(tmp: Path, text: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    cfg = tmp / "cfg" / "ccxd"
    cfg.mkdir(parents=True, exist_ok=True)
    (cfg / "config.toml").write_text(text)
    return ccxd("--print-config", env=env or {}, tmp=tmp)


def refusal(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 78, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    return lines[0]


def test_a_complete_fleet_config_is_accepted_and_shown(tmp_root):
    key = fleet_key(tmp_root)
    res = with_config(
        tmp_root,
        f'fleet = true\nredis_url = "{GOOD_URL}"\nfleet_key_file = "{key}"\nnode_name = "build-a"\n'
        'node_labels = { gpu = "1", os = "debian" }\nnode_slots = 6\nnode_lease = 4.5\n',
    )
    assert res.returncode == 0, res.stderr
    s = settings(res.stdout)
    assert s["fleet"][0] == "true" and s["node_name"][0] == '"build-a"'
    assert s["node_labels"][0] == '{ "gpu" = "1", "os" = "debian" }'  # TOML, as the file may hold it
    assert (s["node_slots"][0], s["node_lease"][0]) == ("6", "4.5")
    assert "s3cret" not in res.stdout


def test_defaults_leave_a_lone_daemon_as_it_was(tmp_root):
    s = settings(ccxd("--print-config", env={}, tmp=tmp_root).stdout)
    assert s["fleet"] == ("false", "default")
    assert (s["node_name"][0], s["node_slots"][0], s["node_lease"][0]) == ('""', "0", "10.0")


def test_node_id_is_the_old_name_of_node_name(tmp_root):
    s = settings(with_config(tmp_root, 'node_id = "old-name"\n').stdout)
    assert s["node_name"][0] == '"old-name"' and "node_id" not in s
    same = with_config(tmp_root, 'node_id = "a"\nnode_name = "a"\n')
    assert settings(same.stdout)["node_name"][0] == '"a"'
    line = refusal(with_config(tmp_root, 'node_id = "a"\nnode_name = "b"\n'))
    assert "node_id is the old name of node_name and both are set, differently" in line
    assert "node_id = 'a', node_name = 'b'" in line and "keep node_name only" in line
    (tmp_root / "cfg" / "ccxd" / "config.toml").unlink()
    env = ccxd("--print-config", env={"CCXD_NODE_ID": "from-env"}, tmp=tmp_root)
    assert settings(env.stdout)["node_name"] == ('"from-env"', "$CCXD_NODE_ID")


def test_labels_from_the_environment(tmp_root):
    res = ccxd("--print-config", env={"CCXD_NODE_LABELS": "gpu=1, os=debian"}, tmp=tmp_root)
    assert settings(res.stdout)["node_labels"] == ('{ "gpu" = "1", "os" = "debian" }', "$CCXD_NODE_LABELS")
    res = ccxd("--print-config", env={"CCXD_NODE_LABELS": '{"zone": "b"}'}, tmp=tmp_root)
    assert settings(res.stdout)["node_labels"][0] == '{ "zone" = "b" }'
    line = refusal(ccxd("--print-config", env={"CCXD_NODE_LABELS": "gpu"}, tmp=tmp_root))
    assert line.endswith(
        "$CCXD_NODE_LABELS: node_labels: 'gpu' is not KEY=VALUE (items are separated by commas)"
    )


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('node_labels = { "a b" = "1" }\n', "node_labels: label name 'a b': expected 1 to 63 letters"),
        ('node_labels = { gpu = "1/2" }\n', "node_labels: label value '1/2' (of 'gpu'): expected 1 to 63"),
        ("node_labels = { " + ", ".join(f'k{i} = "v"' for i in range(33)) + " }\n", "33 labels, at most 32"),
        ("node_lease = 1.5\n", "node_lease = 1.5: expected `float` >= 2.0"),
        ("node_slots = -1\n", "node_slots = -1: expected `int` >= 0"),
    ],
)
def test_bad_node_settings_are_refused_in_one_line(tmp_root, text, needle):
    assert needle in refusal(with_config(tmp_root, text))


def test_fleet_mode_needs_a_shared_authenticated_redis(tmp_root):
    key = fleet_key(tmp_root)
    line = refusal(with_config(tmp_root, f'fleet = true\nfleet_key_file = "{key}"\n'))
    assert "fleet = true" in line and "needs the Redis every node shares: set redis_url" in line
    memory = refusal(with_config(tmp_root, f'fleet = true\nstore = "memory"\nredis_url = "{GOOD_URL}"\n'))
    assert "store = \"redis\" (store = 'memory'" in memory
    unix = refusal(with_config(tmp_root, 'fleet = true\nredis_url = "unix:///run/redis.sock"\n'))
    assert "is a Unix socket; the nodes of a fleet share a Redis over TCP" in unix
    # Accepting the risk for a lone daemon does not make it acceptable for a fleet.
    open_redis = refusal(
        with_config(
            tmp_root,
            'fleet = true\nredis_url = "redis://10.0.0.1:6379"\nredis_allow_unauthenticated = true\n'
            f'fleet_key_file = "{key}"\n',
        )
    )
    assert "has no password; a fleet's Redis must authenticate every node" in open_redis


def test_a_sentinel_url_is_accepted_and_its_password_hidden(tmp_root):
    key = fleet_key(tmp_root)
    url = "redis+sentinel://ccxd:s3cret@10.0.0.1:26379,10.0.0.2:26379/mymaster?sentinel_password=s3cret"
    res = with_config(tmp_root, f'fleet = true\nredis_url = "{url}"\nfleet_key_file = "{key}"\n')
    assert res.returncode == 0, res.stderr
    assert "s3cret" not in res.stdout and "redis+sentinel://ccxd:***@" in res.stdout


def test_fleet_mode_refuses_a_bad_node_name(tmp_root):
    key = fleet_key(tmp_root)
    text = f'fleet = true\nredis_url = "{GOOD_URL}"\nfleet_key_file = "{key}"\nnode_name = "-a b"\n'
    line = refusal(with_config(tmp_root, text))
    assert "node_name = '-a b'" in line and "is no node name: expected a letter or digit" in line
    # Outside a fleet the name is only a word in records, as it always was.
    assert with_config(tmp_root, 'node_name = "-a b"\n').returncode == 0


def test_fleet_mode_needs_a_private_fleet_key_of_32_bytes(tmp_root):
    base = f'fleet = true\nredis_url = "{GOOD_URL}"\n'
    default = tmp_root / "cfg" / "ccxd" / "fleet.key"
    missing = refusal(with_config(tmp_root, base))
    assert f"{default} does not exist: make one with `ccxctl fleet-key {default}`" in missing
    short = tmp_root / "short.key"
    short.write_bytes(b"0123456789abcdef\n")
    short.chmod(0o600)
    line = refusal(with_config(tmp_root, base + f'fleet_key_file = "{short}"\n'))
    assert f"{short} holds 16 bytes, fewer than 32" in line
    shared = fleet_key(tmp_root, "shared.key")
    shared.chmod(0o640)
    line = refusal(with_config(tmp_root, base + f'fleet_key_file = "{shared}"\n'))
    assert f"{shared} may be read or written by others (mode 0640), so it is no secret" in line
    link = tmp_root / "link.key"
    link.symlink_to(fleet_key(tmp_root, "real.key"))
    assert "cannot read" in refusal(with_config(tmp_root, base + f'fleet_key_file = "{link}"\n'))
    # The default place works once ccxctl fleet-key wrote it.
    assert ccxctl("fleet-key", str(default), tmp=tmp_root).returncode == 0
    assert with_config(tmp_root, base).returncode == 0


def test_fleet_key_writes_a_private_random_key_once(tmp_root):
    path = tmp_root / "k"
    res = ccxctl("fleet-key", str(path), tmp=tmp_root)
    assert res.returncode == 0 and f'fleet_key_file = "{path}"' in res.stdout
    text = path.read_text()
    assert len(text) == 65 and text.endswith("\n") and int(text, 16) > 0
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert path.read_text() != fleet_key(tmp_root, "other").read_text()
    again = ccxctl("fleet-key", str(path), tmp=tmp_root)
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert (
        again.stderr == f"ccxctl: {path} exists already: a fleet key is never overwritten (remove it first)\n"
    )
    assert path.read_text() == text
    nowhere = ccxctl("fleet-key", str(tmp_root / "no" / "k"), tmp=tmp_root)
    assert nowhere.returncode == 1 and "No such file or directory" in nowhere.stderr


def test_ccxd_makes_the_key_its_own_fleet_config_asks_for(tmp_root):
    default = tmp_root / "cfg" / "ccxd" / "fleet.key"
    refusal(with_config(tmp_root, f'fleet = true\nredis_url = "{GOOD_URL}"\n'))  # no key yet
    made = ccxd("--make-fleet-key", str(default), env={}, tmp=tmp_root)
    assert made.returncode == 0 and "a new fleet key" in made.stdout, made.stderr
    assert len(default.read_text().strip()) == 64 and os.stat(default).st_mode & 0o777 == 0o600
    assert ccxd("--print-config", env={}, tmp=tmp_root).returncode == 0
    again = ccxd("--make-fleet-key", str(default), env={}, tmp=tmp_root)
    assert (
        again.returncode == 1
        and again.stderr
        == f"ccxd: {default} exists already: a fleet key is never overwritten (remove it first)\n"
    )
