"""Settings come from the environment; production refuses to start without its secrets."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RANA_", "DJANGO_"))}
    base.pop("DEBUG", None)
    base.pop("SECRET_KEY", None)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, "RANA_ENV_FILE": "", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def production_env(tmp_path) -> dict[str, str]:
    return {
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "RANA_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "ALLOWED_HOSTS": "rana.example.com",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'prod.sqlite3'}",
    }


def test_production_without_secret_key_fails_naming_the_variable(tmp_path):
    env = production_env(tmp_path)
    del env["SECRET_KEY"]
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG=0" in result.stderr


def test_production_without_encryption_keys_fails_naming_the_variable(tmp_path):
    env = production_env(tmp_path)
    del env["RANA_ENCRYPTION_KEYS"]
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "RANA_ENCRYPTION_KEYS must be set when DEBUG=0" in result.stderr


def test_deploy_check_passes_with_a_complete_production_environment(tmp_path):
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_local_defaults_just_work_without_any_variable(tmp_path):
    result = manage("check", env={"DATABASE_URL": f"sqlite:///{tmp_path / 'dev.sqlite3'}"})
    assert result.returncode == 0, result.stderr


def test_the_env_file_fills_in_what_the_environment_does_not_set(tmp_path):
    env_file = tmp_path / "rana.env"
    env_file.write_text("DEBUG=0\n")  # production, with no secrets
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'dev.sqlite3'}", "RANA_ENV_FILE": str(env_file)}
    result = manage("check", env=env)
    assert result.returncode != 0 and "SECRET_KEY must be set when DEBUG=0" in result.stderr
    assert manage("check", env={**env, "DEBUG": "1"}).returncode == 0  # the environment wins


def test_the_test_run_reads_no_env_file():
    from django.conf import settings

    assert os.environ["RANA_ENV_FILE"] == "" and settings.ENV_FILE == ""
