from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from runtime.settings import Settings
from tests.conftest import run_cli

COMMANDS = [
    [], ["up"], ["stage"], ["drain"], ["ingest"], ["migrate"], ["orders"], ["orders", "show"],
    ["orders", "list"], ["warehouses"], ["warehouses", "add"], ["stock"], ["stock", "set"],
    ["topics"], ["topics", "create"], ["schemas"], ["schemas", "export"], ["dlq"], ["dlq", "list"],
    ["poll"], ["shops"], ["shops", "add"], ["shops", "list"], ["shops", "remove"],
    ["review"], ["review", "list"], ["review", "release"], ["review", "cancel"],
    ["approvals"], ["approvals", "list"], ["approvals", "approve"], ["approvals", "reject"],
    ["returns"], ["returns", "list"], ["returns", "receive"], ["returns", "qc"],
    ["warehouses", "load"], ["warehouses", "list"], ["stock", "adjust"], ["stock", "import"],
    ["stock", "show"], ["stock", "low"], ["stock", "safety"],
    ["templates"], ["templates", "check"], ["templates", "preview"],
    ["notifications"], ["notifications", "list"], ["notifications", "retry"],
    ["dlq", "show"], ["dlq", "replay"], ["status"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "orderhub")
def test_every_command_explains_itself_with_help(command: list[str]) -> None:
    result = run_cli(*command, "--help", timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout


def test_commands_without_a_running_hub_say_how_to_start_one(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERHUB_")}
    result = run_cli("orders", "list", cwd=tmp_path, env=env, timeout=60)
    assert result.returncode == 2
    assert "no running orderhub found" in result.stderr and "orderhub up" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ingest", "ebay", "{file}"],
         "unknown channel 'ebay'; supported: taobao, jd, pdd, douyin, wechat, shopify, amazon"),
        (["stage", "ingest"], "file import is `orderhub ingest CHANNEL PATH`"),
        (["stage", "shipping"], "unknown stage 'shipping'"),
        (["orders", "show", "SHOP1"], "no order 'SHOP1'"),
        (["orders", "list", "--status", "lost"], "unknown status 'lost'"),
        (["stock", "set", "WH-NOPE", "SKU", "3"], "no warehouse 'WH-NOPE'"),
    ],
)
def test_misuse_gets_a_message_a_person_understands(
    settings: Settings, tmp_path: Path, args: list[str], message: str
) -> None:
    file = tmp_path / "orders.json"
    file.write_text("{}")
    result = run_cli(*[a.replace("{file}", str(file)) for a in args], timeout=60)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_file_is_refused_before_anything_runs(settings: Settings) -> None:
    result = run_cli("ingest", "shopify", "/nonexistent/orders.json", timeout=60)
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_warehouses_and_stock_are_configured_from_the_cli(settings: Settings) -> None:
    added = run_cli("warehouses", "add", "WH-SZ", "--province", "广东省", "--city", "深圳市")
    assert added.returncode == 0, added.stderr
    stocked = run_cli("stock", "set", "WH-SZ", "TQF-TEE-RED-110", "12")
    assert "available 12" in stocked.stderr


def test_schemas_export_writes_one_json_schema_per_topic(tmp_path: Path) -> None:
    result = run_cli("schemas", "export", str(tmp_path / "schemas"), timeout=60)
    assert result.returncode == 0, result.stderr
    files = sorted(p.name for p in (tmp_path / "schemas").iterdir())
    assert len(files) == 10 and "orders.raw.schema.json" in files
    raw = json.loads((tmp_path / "schemas" / "orders.raw.schema.json").read_text())
    assert raw["x-topic"]["key"] == "{channel}:{shop}:{native order id}"
    assert {"channel", "payload", "schema_version"} <= set(raw["properties"])


def test_migrate_and_topics_create_are_idempotent(settings: Settings) -> None:
    for _ in range(2):
        assert run_cli("migrate").returncode == 0
        created = run_cli("topics", "create")
        assert created.returncode == 0
    assert "created 0 topic(s)" in created.stderr
