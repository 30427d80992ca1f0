import pytest

from ccxd.history.signature import signature


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("sleep 5", "sleep 10"),
        ("FOO=1 make test", "make test"),
        (
            'claude -p "summarise the design document in three bullets"',
            'claude -p "write a haiku about the sea and the sky"',
        ),
        ("cat /tmp/tmp.abc123/out.txt", "cat /tmp/tmp.zzz999/out.txt"),
        ("git show 3f2a9c1d8e", "git show a0b1c2d3e4f5"),
        ("run --id 550e8400-e29b-41d4-a716-446655440000", "run --id 123e4567-e89b-12d3-a456-426614174000"),
        ("echo   a", "echo a"),
    ],
)
def test_volatile_parts_share_a_signature(a: str, b: str) -> None:
    assert signature(a) == signature(b)


@pytest.mark.parametrize(("a", "b"), [("make test", "make build"), ("ls /home", "ls /etc")])
def test_different_commands_differ(a: str, b: str) -> None:
    assert signature(a) != signature(b)


def test_argv_lists_and_length_cap() -> None:
    assert signature(["sleep", "3"]) == "sleep <n>"
    assert len(signature("x" * 1000)) == 200
