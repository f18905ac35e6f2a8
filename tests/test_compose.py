"""docker-compose.yml and the Dockerfile, checked without a Docker engine: the compose spec's JSON schema, the services
and profiles the README promises, and the variables .env.example documents. Running the services' commands as local
processes is ``tests/apps/test_compose_services.py``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from apps.settings_doc import COMPOSE
from tests.composefile import COMPOSE_FILE, ENV_EXAMPLE, ROOT, load_compose, read_env_file, variables_used

DASHBOARDS = {"cs-console": ("cs", "console", 8501), "fin-dashboard": ("fin", "dashboard", 8502),
              "rec-dashboard": ("rec", "dashboard", 8503)}
TRIDENT_SERVICES = ("trainer", "trainer-gpu", "fin-worker", *DASHBOARDS, "rec-batch")


def check_jsonschema(path: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("check-jsonschema")
    exe = str(exe) if exe.is_file() else shutil.which("check-jsonschema")
    assert exe, "check-jsonschema is missing: pip install -e '.[dev]'"
    return subprocess.run([exe, "--builtin-schema", "vendor.compose-spec", str(path)], capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose()


def test_compose_file_matches_the_compose_spec():
    res = check_jsonschema(COMPOSE_FILE)
    assert res.returncode == 0, res.stdout + res.stderr


def test_a_broken_compose_file_fails_the_schema(tmp_path):
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    raw["services"]["rec-batch"]["depends_on"] = {"trainer": {"condition": "service_finished"}}  # not a condition
    raw["services"]["fin-worker"]["restarts"] = "always"  # no such key
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(yaml.safe_dump(raw))
    res = check_jsonschema(broken)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "rec-batch" in res.stdout and "restarts" in res.stdout


def test_postgres_has_a_healthcheck_and_a_volume(compose):
    pg = compose["services"]["postgres"]
    assert pg["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    assert any(v.split(":")[1] == "/var/lib/postgresql/data" and v.split(":")[0] in compose["volumes"]
               for v in pg["volumes"])


def test_every_trident_service_runs_the_one_image_with_shared_volumes(compose):
    for name in TRIDENT_SERVICES:
        svc = compose["services"][name]
        assert svc["build"]["context"] == ".", name
        assert svc["command"][0] == "trident", name
        assert {"artifacts:/app/artifacts", "var:/app/var"} <= set(svc["volumes"]), name
        assert svc["environment"]["TRIDENT_DATABASE_URL"] == "postgresql://trident:trident@postgres:5432/trident"
        assert svc["env_file"] == [{"path": ".env", "required": False}], name


def test_trainer_is_one_shot_and_the_services_wait_for_it(compose):
    services = compose["services"]
    assert services["trainer"]["command"] == ["trident", "suite", "prepare"]
    assert services["trainer"]["restart"] == "no" and "profiles" not in services["trainer"]
    for name in ("fin-worker", *DASHBOARDS, "rec-batch"):
        assert services[name]["depends_on"] == {"postgres": {"condition": "service_healthy"},
                                                "trainer": {"condition": "service_completed_successfully"}}, name


def test_services_find_what_the_trainer_prepares(compose):
    """The dashboards and the worker read the artifacts and the index where `trident suite prepare` writes them in
    the container (repository /app, volumes /app/artifacts and /app/var, no data sets mounted)."""
    from apps.common.settings import CoreSettings
    from apps.suite import Plan, SuiteSettings

    plan = Plan.build(CoreSettings(data_dir="/nonexistent/datasets", artifacts_dir="/app/artifacts",
                                   var_dir="/app/var"), SuiteSettings())
    expected = plan.env()
    for name in ("fin-worker", *DASHBOARDS, "rec-batch"):
        env = compose["services"][name]["environment"]
        for key in ("CS_ARTIFACT", "CS_INDEX_DIR", "FIN_ARTIFACT", "REC_ARTIFACT"):
            assert env[key] == expected[key], (name, key)


def test_gpu_trainer_is_opt_in_and_reserves_gpus(compose):
    gpu = compose["services"]["trainer-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["command"] == compose["services"]["trainer"]["command"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"] and device["driver"] == "nvidia" and device["count"] == "all"
    assert "/whl/cu" in gpu["build"]["args"]["TORCH_INDEX"] and gpu["image"] != compose["services"]["trainer"]["image"]
    # the CPU trainer waits for it when the profile is on, and ignores it when it is off
    assert compose["services"]["trainer"]["depends_on"]["trainer-gpu"] == {
        "condition": "service_completed_successfully", "required": False}


def test_dashboards_listen_on_8501_to_8503_with_a_health_check(compose):
    for name, (app, command, port) in DASHBOARDS.items():
        svc = compose["services"][name]
        assert svc["command"] == ["trident", app, command, "--address", "0.0.0.0", "--port", str(port)]
        assert svc["ports"] == [f"127.0.0.1:{port}:{port}"]  # the host's loopback unless the deployer says otherwise
        assert f"http://127.0.0.1:{port}/_stcore/health" in " ".join(svc["healthcheck"]["test"])


def test_dashboards_are_published_where_the_deployer_says():
    services = load_compose({"TRIDENT_PUBLISH_ADDRESS": "0.0.0.0", "FIN_DASHBOARD_PORT": "9502"})["services"]
    assert [services[name]["ports"] for name in DASHBOARDS] == [["0.0.0.0:8501:8501"], ["0.0.0.0:9502:8502"],
                                                                 ["0.0.0.0:8503:8503"]]
    assert services["postgres"]["ports"] == ["127.0.0.1:5433:5432"]  # the database stays on the loopback


def test_worker_runs_and_batch_job_is_behind_a_profile(compose):
    services = compose["services"]
    assert services["fin-worker"]["command"][:3] == ["trident", "fin", "worker"]  # on the queue: scales
    assert not {"container_name", "ports"} & set(services["fin-worker"])  # neither stops `--scale fin-worker=N`
    assert services["rec-batch"]["profiles"] == ["batch"]
    assert services["rec-batch"]["command"][:3] == ["trident", "rec", "batch"]
    assert {name for name, svc in services.items() if "profiles" not in svc} == {
        "postgres", "trainer", "fin-worker", *DASHBOARDS}


def test_every_service_command_is_a_trident_command(compose):
    from apps.cli import build_parser

    parser = build_parser()
    for name in TRIDENT_SERVICES:
        args = parser.parse_args(compose["services"][name]["command"][1:])
        assert callable(args.fn), name


def test_compose_variables_are_documented_in_env_example():
    used = variables_used(COMPOSE_FILE.read_text())
    documented = set(read_env_file(ENV_EXAMPLE))
    assert used <= documented, used - documented
    compose_only = {name for name, _, _ in COMPOSE}
    assert compose_only <= used, f"listed in settings_doc.COMPOSE but unused: {compose_only - used}"


def test_compose_defaults_equal_the_documented_ones():
    """With an empty environment the file resolves exactly as with .env.example's values."""
    assert load_compose({}) == load_compose()


def test_dockerfile_builds_one_cpu_image_for_a_non_root_user():
    text = (ROOT / "Dockerfile").read_text()
    lines = [line.split() for line in text.splitlines() if line and not line.startswith(("#", " "))]
    assert ["FROM", "python:3.11-slim"] in lines
    assert "ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu" in text
    assert 'pip install --index-url "${TORCH_INDEX}" torch==2.13.0' in text
    assert "torch==2.13.0" in (ROOT / "pyproject.toml").read_text()  # the image pins what the project pins
    assert ["USER", "trident"] in lines
    assert 'VOLUME ["/app/artifacts", "/app/var"]' in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "artifacts", "var", ".env", ".git"} <= set(ignored)
