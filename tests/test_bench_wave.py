"""The due-wave bench's switches for the wave without the product's own work."""

from __future__ import annotations

from pathlib import Path

from bench.due_wave import quiet_policies
from domain.policy import MESSAGE_KINDS, load_policy


def test_quiet_policies_send_no_customer_message_and_keep_the_rest(tmp_path: Path) -> None:
    shipped = Path(__file__).resolve().parent.parent / "policies"
    quiet = quiet_policies(tmp_path)
    names = sorted(p.stem for p in shipped.glob("*.yaml"))
    assert names and sorted(p.stem for p in quiet.glob("*.yaml")) == names
    for name in names:
        before, after = load_policy(name, shipped), load_policy(name, quiet)
        assert any(before.messages.enabled(k) for k in MESSAGE_KINDS), name
        assert not any(after.messages.enabled(k) for k in MESSAGE_KINDS), name
        # the dunning itself is the shipped policy's
        assert (after.retries, after.ladder, after.sepa) == (
            before.retries,
            before.ladder,
            before.sepa,
        )
