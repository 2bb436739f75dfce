import pickle
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from domain.deadlines import SendWindow
from domain.policy import (
    CollectionConfig,
    LadderStep,
    Policy,
    PolicyError,
    ResidualConfig,
    RetryConfig,
    SepaConfig,
    load_policy,
    parse_policy,
    policy_from_dict,
    policy_to_dict,
)

POLICY_DIR = Path(__file__).resolve().parents[2] / "policies"

# A valid policy; each broken case below changes one thing in it.
VALID = """\
name: broken
retries:
  after: [1d, 3d]
ladder:
  - stage: reminder
    after: 3d
    notice: reminder
  - stage: mahnung_1
    after: 14d
    notice: mahnung_1
    fee: 250
    lock_access: true
  - stage: collection
    after: 38d
    handoff: true
collection:
  write_off_below: 5000
  route: auto
  require_approval: false
interest: statutory
"""


def write(tmp_path: Path, text: str, stem: str = "broken") -> Path:
    path = tmp_path / f"{stem}.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# ---------------------------------------------------------------- shipped policies


def test_default_policy_is_the_spec_example() -> None:
    policy = load_policy("default", POLICY_DIR)
    assert policy == Policy(
        name="default",
        retries=RetryConfig(after=["1d", "3d", "5d", "7d"], payday_alignment=True),
        ladder=[
            LadderStep(stage="reminder", after="3d", notice="reminder"),
            LadderStep(stage="mahnung_1", after="14d", notice="mahnung_1", fee=250),
            # issue 11: the lock comes after the first Mahnung's deadline, in its own notice
            LadderStep(stage="lock", after="21d", notice="access_locked", lock_access=True),
            LadderStep(stage="mahnung_2", after="24d", notice="mahnung_2", fee=250),
            LadderStep(stage="collection", after="38d", handoff=True),
        ],
        collection=CollectionConfig(write_off_below=5000, route="auto", require_approval=False),
        interest="statutory",
        sepa=SepaConfig(pre_notification="5d"),
        collect="principal",
        residual=ResidualConfig(write_off_below=500),
        send_window=SendWindow(start="08:00", end="18:00", days="working"),
    )
    assert policy.day_based()
    assert policy.retry_offsets() == [timedelta(days=d) for d in (1, 3, 5, 7)]
    assert [step.offset() for step in policy.ladder] == [
        timedelta(days=3),
        timedelta(days=14),
        timedelta(days=21),
        timedelta(days=24),
        timedelta(days=38),
    ]
    # the free reminder and the 2,50 € cap on consumer dunning fees (DOMAIN.md §1)
    assert policy.ladder[0].fee == 0
    assert all(step.fee <= 250 for step in policy.ladder)


def test_demo_policy_runs_in_about_a_minute() -> None:
    policy = load_policy("demo", POLICY_DIR)
    assert policy.name == "demo"
    assert policy.retries.after == ["10s", "20s"]
    assert [(s.stage, s.after, s.fee, s.lock_access, s.handoff) for s in policy.ladder] == [
        ("reminder", "15s", 0, False, False),
        ("mahnung_1", "30s", 250, False, False),
        ("lock", "38s", 0, True, False),
        ("mahnung_2", "45s", 250, False, False),
        ("collection", "60s", 0, False, True),
    ]
    assert [s.notice for s in policy.ladder] == [
        "reminder",
        "mahnung_1",
        "access_locked",
        "mahnung_2",
        None,
    ]
    assert policy.collection == CollectionConfig(5000, "auto", False)
    assert policy.interest == "statutory"
    # every stage is reached within 60 s of the due date
    assert max(s.offset() for s in policy.ladder) == timedelta(seconds=60)


def test_demo_has_the_same_shape_as_default() -> None:
    default = load_policy("default", POLICY_DIR)
    demo = load_policy("demo", POLICY_DIR)
    strip = [(s.stage, s.notice, s.fee, s.lock_access, s.handoff) for s in default.ladder]
    assert strip == [(s.stage, s.notice, s.fee, s.lock_access, s.handoff) for s in demo.ladder]
    assert default.collection == demo.collection


def test_helpers() -> None:
    policy = load_policy("default", POLICY_DIR)
    step = policy.find_step("mahnung_1")
    assert step is not None and step.fee == 250
    assert policy.find_step("none") is None
    handoff = policy.handoff_step()
    assert handoff is not None and handoff.stage == "collection"


# ---------------------------------------------------------------- load_policy errors


def test_unknown_policy_name_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as excinfo:
        load_policy("premium", tmp_path)
    err = excinfo.value
    assert err.file == str(tmp_path / "premium.yaml")
    assert err.key == "(top)"
    assert "not found" in err.reason
    assert str(err) == f"{tmp_path / 'premium.yaml'}: (top): {err.reason}"


@pytest.mark.parametrize("name", ["../default", "de fault", "", "default.yaml", "a/b"])
def test_invalid_policy_name(name: str) -> None:
    with pytest.raises(PolicyError) as excinfo:
        load_policy(name, POLICY_DIR)
    assert excinfo.value.key == "name"
    assert "[A-Za-z0-9_-]+" in excinfo.value.reason


def test_policy_error_is_a_value_error_and_pickles() -> None:
    err = PolicyError("x.yaml", "ladder[1].after", "invalid duration")
    assert isinstance(err, ValueError)
    assert str(err) == "x.yaml: ladder[1].after: invalid duration"
    clone = pickle.loads(pickle.dumps(err))
    assert (clone.file, clone.key, clone.reason) == (err.file, err.key, err.reason)


def test_valid_base_document_loads(tmp_path: Path) -> None:
    write(tmp_path, VALID)
    assert load_policy("broken", tmp_path).name == "broken"


# ---------------------------------------------------------------- broken policies

BROKEN: list[tuple[str, str, str, str]] = [
    # (case id, YAML text, expected key, expected substring of the reason)
    ("unknown top key", VALID + "colour: red\n", "colour", "unknown key"),
    (
        "unknown ladder key",
        VALID.replace("    handoff: true", "    handoff: true\n    lock: true"),
        "ladder[2].lock",
        "unknown key",
    ),
    (
        "unknown collection key",
        VALID.replace("  route: auto", "  route: auto\n  court: AG Wedding"),
        "collection.court",
        "unknown key",
    ),
    (
        "bad duration",
        VALID.replace("after: 14d", "after: 14days"),
        "ladder[1].after",
        "<int><unit>",
    ),
    (
        "duration without unit",
        VALID.replace("after: 14d", "after: 14"),
        "ladder[1].after",
        "int 14",
    ),
    ("bad retry duration", VALID.replace("[1d, 3d]", "[1d, 3x]"), "retries.after[1]", "'3x'"),
    ("bool as fee", VALID.replace("fee: 250", "fee: true"), "ladder[1].fee", "not a boolean"),
    ("float fee", VALID.replace("fee: 250", "fee: 2.5"), "ladder[1].fee", "must be an integer"),
    ("string fee", VALID.replace("fee: 250", "fee: '2,50'"), "ladder[1].fee", "must be an integer"),
    ("negative fee", VALID.replace("fee: 250", "fee: -250"), "ladder[1].fee", "must be >= 0"),
    (
        "duplicate stage",
        VALID.replace("stage: collection", "stage: reminder"),
        "ladder[2].stage",
        "duplicate stage 'reminder'",
    ),
    (
        "reserved stage none",
        VALID.replace("stage: reminder", "stage: none"),
        "ladder[0].stage",
        "reserved",
    ),
    (
        "reserved stage retrying",
        VALID.replace("stage: reminder", "stage: retrying"),
        "ladder[0].stage",
        "reserved",
    ),
    (
        "stage name pattern",
        VALID.replace("stage: reminder", "stage: Erinnerung 1"),
        "ladder[0].stage",
        "[a-z0-9_]+",
    ),
    (
        "notice name pattern",
        VALID.replace("notice: reminder", "notice: ../reminder.txt"),
        "ladder[0].notice",
        "invalid template name",
    ),
    (
        "handoff not last",
        VALID.replace("    lock_access: true", "    lock_access: true\n    handoff: true"),
        "ladder[1].handoff",
        "only the last step",
    ),
    (
        "non-bool lock_access",
        VALID.replace("lock_access: true", "lock_access: 1"),
        "ladder[1].lock_access",
        "true or false",
    ),
    (
        "ladder out of order",
        VALID.replace("after: 38d", "after: 10d"),
        "ladder[2].after",
        "10d is earlier than the previous step's 14d",
    ),
    (
        "bad route",
        VALID.replace("route: auto", "route: lawyer"),
        "collection.route",
        "court, inkasso, auto",
    ),
    (
        "bool write_off_below",
        VALID.replace("write_off_below: 5000", "write_off_below: false"),
        "collection.write_off_below",
        "not a boolean",
    ),
    (
        "negative write_off_below",
        VALID.replace("write_off_below: 5000", "write_off_below: -1"),
        "collection.write_off_below",
        ">= 0",
    ),
    (
        "string require_approval",
        VALID.replace("require_approval: false", "require_approval: 'no'"),
        "collection.require_approval",
        "true or false",
    ),
    (
        "collection not a mapping",
        VALID.split("collection:")[0] + "collection: court\ninterest: statutory\n",
        "collection",
        "must be a mapping",
    ),
    (
        "bad interest",
        VALID.replace("interest: statutory", "interest: 5%"),
        "interest",
        "statutory, none",
    ),
    (
        "unsorted retries",
        VALID.replace("[1d, 3d]", "[1d, 5d, 3d]"),
        "retries.after[2]",
        "strictly increasing",
    ),
    (
        "equal retries",
        VALID.replace("[1d, 3d]", "[1d, 1d]"),
        "retries.after[1]",
        "strictly increasing",
    ),
    ("zero retry", VALID.replace("[1d, 3d]", "[0s, 3d]"), "retries.after[0]", "must be positive"),
    (
        "too many retries",
        VALID.replace("[1d, 3d]", "[1d, 2d, 3d, 4d, 5d, 6d, 7d, 8d, 9d]"),
        "retries.after",
        "at most 8 retries",
    ),
    ("retries not a list", VALID.replace("[1d, 3d]", "1d"), "retries.after", "must be a list"),
    (
        "missing retries",
        VALID.replace("retries:\n  after: [1d, 3d]\n", ""),
        "retries",
        "missing required key",
    ),
    ("name mismatch", VALID.replace("name: broken", "name: default"), "name", "file name 'broken'"),
    ("name not a string", VALID.replace("name: broken", "name: 42"), "name", "must be a string"),
    (
        "yaml syntax error",
        VALID.replace("  after: [1d, 3d]", "  after: [1d, 3d"),
        "(yaml)",
        "line 4",
    ),
    (
        "yaml duplicate key",
        VALID.replace("    fee: 250", "    fee: 250\n    fee: 500"),
        "(yaml)",
        "duplicate key 'fee'",
    ),
    (
        "missing ladder",
        VALID.split("ladder:")[0] + "interest: none\n",
        "ladder",
        "missing required key",
    ),
    ("empty ladder", VALID.split("ladder:")[0] + "ladder: []\n", "ladder", "at least one step"),
    (
        "ladder not a list",
        VALID.split("ladder:")[0] + "ladder: reminder\n",
        "ladder",
        "must be a list",
    ),
    (
        "ladder step not a mapping",
        VALID.split("ladder:")[0] + "ladder:\n  - reminder\n",
        "ladder[0]",
        "must be a mapping",
    ),
    (
        "ladder step without after",
        VALID.replace("    after: 3d\n", ""),
        "ladder[0].after",
        "missing required key",
    ),
    ("document is a list", "- name: broken\n", "(top)", "must be a mapping"),
    ("empty document", "# nothing here\n", "(top)", "empty document"),
]


@pytest.mark.parametrize(
    ("text", "key", "reason"), [c[1:] for c in BROKEN], ids=[c[0] for c in BROKEN]
)
def test_broken_policy_is_rejected(tmp_path: Path, text: str, key: str, reason: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as excinfo:
        load_policy("broken", tmp_path)
    err = excinfo.value
    assert err.file == str(path)
    assert err.key == key
    assert reason in err.reason
    assert str(err) == f"{path}: {key}: {err.reason}"


def test_yaml_error_names_line_and_column(tmp_path: Path) -> None:
    write(tmp_path, "name: broken\nretries:\n  after: [1d\nladder: []\n")
    with pytest.raises(PolicyError) as excinfo:
        load_policy("broken", tmp_path)
    assert excinfo.value.key == "(yaml)"
    assert excinfo.value.reason.startswith("line 4, column ")


def test_parse_policy_without_file() -> None:
    with pytest.raises(PolicyError) as excinfo:
        parse_policy({"name": "x"}, "x.yaml")
    assert str(excinfo.value) == "x.yaml: retries: missing required key"


def test_optional_sections_default() -> None:
    policy = parse_policy(
        {
            "name": "minimal",
            "retries": {"after": []},
            "ladder": [{"stage": "reminder", "after": "0s"}],
        },
        "policies/minimal.yml",
    )
    assert policy.collection == CollectionConfig(
        write_off_below=0, route="auto", require_approval=False
    )
    assert policy.interest == "statutory"
    assert policy.retry_offsets() == []
    assert policy.ladder == [LadderStep(stage="reminder", after="0s")]
    assert policy.handoff_step() is None


def test_equal_ladder_offsets_are_allowed() -> None:
    ladder = [
        {"stage": "mahnung_2", "after": "24d"},
        {"stage": "lock", "after": "24d", "lock_access": True},
    ]
    policy = parse_policy({"name": "p", "retries": {"after": ["1d"]}, "ladder": ladder}, "p.yaml")
    assert [s.offset() for s in policy.ladder] == [timedelta(days=24)] * 2


# ---------------------------------------------------------------- pinning round trip


@pytest.mark.parametrize("name", ["default", "demo"])
def test_round_trip_through_dict(name: str) -> None:
    policy = load_policy(name, POLICY_DIR)
    data = policy_to_dict(policy)
    assert policy_from_dict(data) == policy
    # the dict has the shape of the YAML file, so it validates again
    assert parse_policy(data, f"{name}.yaml") == policy
    assert "notice" not in data["ladder"][-1]  # the collection step has no notice


def test_policy_from_dict_does_not_revalidate() -> None:
    # A pinned policy must keep loading even if validation rules change later.
    data = policy_to_dict(load_policy("default", POLICY_DIR))
    data["ladder"][0]["fee"] = 99999
    data["future_field"] = "ignored"
    assert policy_from_dict(data).ladder[0].fee == 99999


def test_policy_round_trips_through_temporal_converter() -> None:
    converter = pytest.importorskip("temporalio.converter")
    policy = load_policy("default", POLICY_DIR)
    payloads = converter.DataConverter.default.payload_converter.to_payloads([policy])
    (decoded,) = converter.DataConverter.default.payload_converter.from_payloads(payloads, [Policy])
    assert decoded == policy


def test_sepa_pre_notification_defaults_to_the_rulebooks_14_days(tmp_path: Path) -> None:
    text = "name: p\nretries:\n  after: [1d]\nladder:\n  - stage: reminder\n    after: 3d\n"
    (tmp_path / "p.yaml").write_text(text)
    policy = load_policy("p", tmp_path)
    assert policy.sepa.pre_notification == "14d" and policy.sepa.lead() == timedelta(days=14)
    # a policy pinned before the key existed reads the same default
    data = policy_to_dict(policy)
    del data["sepa"]
    assert policy_from_dict(data).sepa.lead() == timedelta(days=14)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("soon", "invalid duration"),
        ("40d", "at most 31d"),
        ("[2d]", "must be a duration"),
    ],
)
def test_sepa_pre_notification_rejects_bad_values(tmp_path: Path, value: str, reason: str) -> None:
    text = (
        "name: p\nretries:\n  after: [1d]\nladder:\n  - stage: reminder\n    after: 3d\n"
        f"sepa:\n  pre_notification: {value}\n"
    )
    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(PolicyError) as exc:
        load_policy("p", tmp_path)
    assert exc.value.key == "sepa.pre_notification" and reason in exc.value.reason


def test_sepa_section_rejects_unknown_keys(tmp_path: Path) -> None:
    text = (
        "name: p\nretries:\n  after: [1d]\nladder:\n  - stage: reminder\n    after: 3d\n"
        "sepa:\n  prenotification: 2d\n"
    )
    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(PolicyError) as exc:
        load_policy("p", tmp_path)
    assert exc.value.key.startswith("sepa")


def test_payday_alignment_must_be_a_bool(tmp_path: Path) -> None:
    text = (
        "name: p\nretries:\n  after: [1d]\n  payday_alignment: sometimes\n"
        "ladder:\n  - stage: reminder\n    after: 3d\n"
    )
    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(PolicyError) as exc:
        load_policy("p", tmp_path)
    assert exc.value.key == "retries.payday_alignment" and "true or false" in exc.value.reason


# ---------------------------------------------------------------- fee rules at load (issue 11)


def test_a_fee_on_the_first_reminder_is_refused_naming_file_and_key(tmp_path: Path) -> None:
    # The reminder that first causes the default is not chargeable (§ 286 (1), § 280 (2) BGB).
    text = VALID.replace("    notice: reminder\n", "    notice: reminder\n    fee: 100\n", 1)
    assert "fee: 100" in text
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as exc:
        load_policy("broken", tmp_path)
    assert exc.value.file == str(path)
    assert exc.value.key == "ladder[0].fee"
    assert "first reminder" in exc.value.reason and "§ 286 (1)" in exc.value.reason
    assert str(exc.value).startswith(f"{path}: ladder[0].fee: ")


def test_a_fee_before_any_notice_is_refused(tmp_path: Path) -> None:
    # A step without a notice ahead of the first reminder cannot charge either: no Mahnung yet.
    text = """\
name: broken
retries:
  after: [1d]
ladder:
  - stage: early
    after: 1d
    fee: 100
  - stage: reminder
    after: 3d
    notice: reminder
"""
    write(tmp_path, text)
    with pytest.raises(PolicyError) as exc:
        load_policy("broken", tmp_path)
    assert exc.value.key == "ladder[0].fee"


def test_an_implausible_fee_is_refused_naming_file_and_key(tmp_path: Path) -> None:
    # 15,00 € per Mahnung: far above the EUR 2.50 that material and postage justify.
    text = VALID.replace("fee: 250", "fee: 1500", 1)
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as exc:
        load_policy("broken", tmp_path)
    assert exc.value.file == str(path)
    assert exc.value.key == "ladder[1].fee"
    assert "EUR 15.00" in exc.value.reason and "plausibility cap of EUR 2.50" in exc.value.reason
    assert "ladder[1].fee_justification" in exc.value.reason


def test_the_cap_itself_is_plausible_and_one_cent_more_is_not(tmp_path: Path) -> None:
    write(tmp_path, VALID)  # fee: 250 on mahnung_1
    assert load_policy("broken", tmp_path).ladder[1].fee == 250
    write(tmp_path, VALID.replace("fee: 250", "fee: 251", 1))
    with pytest.raises(PolicyError, match=r"ladder\[1\]\.fee: EUR 2\.51 is above"):
        load_policy("broken", tmp_path)


def test_a_justified_fee_above_the_cap_loads_and_round_trips(tmp_path: Path) -> None:
    justification = "Einschreiben mit Rückschein: 2,65 € Porto + 0,85 € Druck (Beleg 2026-11)"
    text = VALID.replace("fee: 250", f'fee: 350\n    fee_justification: "{justification}"', 1)
    write(tmp_path, text)
    policy = load_policy("broken", tmp_path)
    assert policy.ladder[1].fee == 350
    assert policy.ladder[1].fee_justification == justification
    data = policy_to_dict(policy)
    assert data["ladder"][1]["fee_justification"] == justification
    assert policy_from_dict(data) == policy
    assert parse_policy(data, "broken.yaml") == policy


def test_an_empty_justification_does_not_count(tmp_path: Path) -> None:
    write(tmp_path, VALID.replace("fee: 250", "fee: 350\n    fee_justification: '  '", 1))
    with pytest.raises(PolicyError) as exc:
        load_policy("broken", tmp_path)
    assert exc.value.key == "ladder[1].fee_justification"


def test_the_cap_is_configurable(tmp_path: Path) -> None:
    write(tmp_path, VALID.replace("fee: 250", "fee: 300", 1))
    assert load_policy("broken", tmp_path, fee_cap=300).ladder[1].fee == 300
    with pytest.raises(PolicyError, match="plausibility cap of EUR 2.00"):
        load_policy("broken", tmp_path, fee_cap=200)


# ---------------------------------------------------------------- collect, residual, send_window


def test_new_keys_default_when_absent(tmp_path: Path) -> None:
    write(tmp_path, VALID)
    policy = load_policy("broken", tmp_path)
    assert policy.collect == "principal"
    assert policy.residual == ResidualConfig(write_off_below=0)
    assert policy.send_window == SendWindow(start="08:00", end="18:00", days="working")


def test_new_keys_are_read(tmp_path: Path) -> None:
    text = VALID + (
        "collect: claim\nresidual:\n  write_off_below: 300\n"
        "send_window:\n  start: '09:30'\n  end: '17:00'\n  days: weekdays\n"
    )
    write(tmp_path, text)
    policy = load_policy("broken", tmp_path)
    assert policy.collect == "claim"
    assert policy.residual.write_off_below == 300
    assert policy.send_window == SendWindow(start="09:30", end="17:00", days="weekdays")
    assert policy_from_dict(policy_to_dict(policy)) == policy


@pytest.mark.parametrize(
    ("extra", "key", "reason"),
    [
        ("collect: everything\n", "collect", "must be one of principal, claim"),
        ("residual:\n  write_off_below: -1\n", "residual.write_off_below", "must be >= 0"),
        ("residual:\n  below: 1\n", "residual.below", "unknown key"),
        ("send_window:\n  start: '8:00'\n", "send_window.start", "HH:MM"),
        ("send_window:\n  end: '25:00'\n", "send_window.end", "HH:MM"),
        ("send_window:\n  start: '18:00'\n  end: '08:00'\n", "send_window.end", "after start"),
        ("send_window:\n  days: sundays\n", "send_window.days", "working, weekdays, all"),
        ("on_default: call\n", "on_default", "must be one of keep_schedule, call_in, stop"),
        ("on_default: 1\n", "on_default", "must be one of keep_schedule, call_in, stop"),
    ],
)
def test_new_keys_are_validated(tmp_path: Path, extra: str, key: str, reason: str) -> None:
    path = write(tmp_path, VALID + extra)
    with pytest.raises(PolicyError) as exc:
        load_policy("broken", tmp_path)
    assert (exc.value.file, exc.value.key) == (str(path), key)
    assert reason in exc.value.reason


def test_on_default_and_unlock_are_read(tmp_path: Path) -> None:
    unlock = VALID.replace("require_approval: false", "require_approval: false\n  unlock: {}")
    path = write(tmp_path, unlock.format("paid"))
    with pytest.raises(PolicyError) as exc:
        load_policy("broken", tmp_path)
    assert (exc.value.file, exc.value.key) == (str(path), "collection.unlock")
    assert "must be one of claim_paid, principal_paid, never, got 'paid'" in exc.value.reason
    write(tmp_path, unlock.format("principal_paid") + "on_default: call_in\n")
    policy = load_policy("broken", tmp_path)
    assert policy.on_default == "call_in" and policy.collection.unlock == "principal_paid"
    assert policy_from_dict(policy_to_dict(policy)) == policy
    write(tmp_path, VALID)
    policy = load_policy("broken", tmp_path)
    assert policy.on_default == "keep_schedule" and policy.collection.unlock == "claim_paid"


def test_a_policy_pinned_before_the_new_keys_gets_their_defaults() -> None:
    data = policy_to_dict(load_policy("default", POLICY_DIR))
    for key in ("collect", "residual", "send_window", "on_default"):
        del data[key]
    del data["collection"]["unlock"]
    policy = policy_from_dict(data)
    assert policy.on_default == "keep_schedule" and policy.collection.unlock == "claim_paid"
    assert policy.collect == "principal" and policy.residual.write_off_below == 0
    assert policy.send_window == SendWindow()


def test_the_demo_ladder_is_not_day_based() -> None:
    assert not load_policy("demo", POLICY_DIR).day_based()
    assert load_policy("demo", POLICY_DIR).send_window.days == "all"


def test_only_the_demo_policy_is_marked_demo(tmp_path: Path) -> None:
    assert load_policy("demo", POLICY_DIR).demo is True
    assert load_policy("default", POLICY_DIR).demo is False
    # Pinned policies of earlier releases have no `demo` key: they read as not demo, and a
    # non-demo policy pins exactly as before.
    assert "demo" not in policy_to_dict(load_policy("default", POLICY_DIR))
    assert policy_to_dict(load_policy("demo", POLICY_DIR))["demo"] is True
    text = (
        "name: p\ndemo: yes please\nretries:\n  after: [1d]\nladder:\n  - stage: r\n    after: 3d\n"
    )
    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(PolicyError) as exc:
        load_policy("p", tmp_path)
    assert exc.value.key == "demo" and "true or false" in exc.value.reason
