from __future__ import annotations

import json
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from runtime.settings import Settings
from schemas.events import RawOrderReceived
from tests.builders import shopify_fixture
from tests.conftest import free_port, run_cli
from tests.integration.test_stage_metrics import get, lag_series, stage_process, wait_for

CHF_RATE = "8.10"


def _ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _letters(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(text(
            "SELECT id, stage, error_class, message FROM dead_letters ORDER BY id")).all())


def _order_ids(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return {r[0] for r in conn.execute(text("SELECT id FROM orders"))}


def _show(letter_id: int) -> dict[str, Any]:
    return dict(json.loads(_ok(run_cli("dlq", "show", str(letter_id), "--json")).stdout))


def _order_of(letter_id: int) -> str:
    """The canonical id of the order in a dead-lettered orders.raw message (key channel:shop:id)."""
    return f"SHOP{_show(letter_id)['key'].rsplit(':', 1)[1]}"


def test_an_order_dead_lettered_for_a_missing_rate_reaches_the_projection_after_fix_and_replay(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    orders = [shopify_fixture(id=6200407291001, currency="CHF"),
              shopify_fixture(id=6200407291002, currency="CHF")]
    path = tmp_path / "alpen.json"
    path.write_text(json.dumps(orders))
    _ok(run_cli("ingest", "shopify", str(path), "--shop", "alpen.myshopify.com"))

    with stage_process("normalize") as proc:  # the example rate table has no CHF
        wait_for("two dead letters", lambda: len(_letters(engine)) == 2, proc)
    letters = _letters(engine)
    assert [(s, c) for _, s, c, _ in letters] == [("normalize", "InvalidInput")] * 2
    assert all("no CNY rate for CHF" in message for *_, message in letters)
    first, second = (row[0] for row in letters)
    first_order, second_order = (_order_of(letter) for letter in (first, second))
    assert {first_order, second_order} == {"SHOP6200407291001", "SHOP6200407291002"}
    shown = _show(first)
    assert (shown["replays"], shown["replayed_at"], shown["original_encoding"]) == (0, None,
                                                                                    "utf-8")
    assert RawOrderReceived.model_validate_json(shown["original"]).payload["currency"] == "CHF"
    assert shown["stage"] == "normalize" and shown["topic"].endswith("orders.raw")

    # The fix: a CHF rate in the settings, and the stage restarted with it.
    fixed = {**settings.rates, "CHF": {"2020-01-01": CHF_RATE}}
    port = free_port()
    with stage_process("normalize", port, env={"ORDERHUB_RATES": json.dumps(fixed)}) as proc:
        def caught_up() -> bool:
            lags = lag_series(get(port, "/metrics")[1])
            return get(port, "/readyz")[0] == 200 and len(lags) == 12 and not any(lags.values())

        wait_for("the fixed worker caught up", caught_up, proc)
        assert _order_ids(engine) == set()  # consumed and committed: only a replay brings it

        replayed = _ok(run_cli("dlq", "replay", str(first)))
        assert f"replayed {first}: normalize InvalidInput" in replayed.stdout
        wait_for("the first order", lambda: first_order in _order_ids(engine), proc)
        assert second_order not in _order_ids(engine)

        by_stage = _ok(run_cli("dlq", "replay", "--stage", "normalize",
                               "--error-class", "InvalidInput"))
        assert f"replayed {second}:" in by_stage.stdout and f"replayed {first}:" not in (
            by_stage.stdout)  # only letters not replayed yet
        wait_for("the second order", lambda: second_order in _order_ids(engine), proc)

    assert [row[0] for row in _letters(engine)] == [first, second]  # nothing failed again
    shown = _show(first)
    assert shown["replays"] == 1 and shown["replayed_at"] is not None
    view = json.loads(_ok(run_cli("orders", "show", first_order, "--json")).stdout)
    assert view["currency"] == "CHF"
    assert Decimal(view["paid_cny"]) == (Decimal(view["paid_amount"]) * Decimal(CHF_RATE)
                                         ).quantize(Decimal("0.01"))
    listed = json.loads(_ok(run_cli("dlq", "list", "--stage", "normalize", "--json")).stdout)
    assert [(d["id"], d["replays"]) for d in listed] == [(second, 1), (first, 1)]


def test_dlq_misuse_gets_a_message_a_person_understands(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text('{"id": 1, "line_items": [\n')
    _ok(run_cli("ingest", "shopify", str(path)))
    [(ingest_letter, stage, _, _)] = _letters(engine)
    assert stage == "ingest"
    listed = _ok(run_cli("dlq", "list"))
    assert f"{ingest_letter} ingest" in listed.stdout and "invalid JSON" in listed.stdout
    assert "1 dead letter(s)" in listed.stderr
    shown = _ok(run_cli("dlq", "show", str(ingest_letter))).stdout
    assert "original_encoding: utf-8" in shown and '{"id": 1, "line_items": [' in shown

    for args, message in [
        (["dlq", "show", "999999"], "no dead letter 999999"),
        (["dlq", "replay", "999999"], "no dead letter 999999"),
        (["dlq", "replay"], "name the dead letters to replay"),
        (["dlq", "replay", str(ingest_letter), "--stage", "ingest"], "not both"),
        (["dlq", "replay", "--stage", "shipping"], "no dead letters of stage 'shipping'"),
        (["dlq", "replay", str(ingest_letter)], "cannot be replayed"),
    ]:
        result = run_cli(*args, timeout=60)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr
    assert _show(ingest_letter)["replays"] == 0
