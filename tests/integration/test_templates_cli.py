from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, text

from normalize.process import normalize
from normalize.projection import write_orders
from normalize.rates import RateTable
from notify.templates import CHANNELS, EVENTS, LANGUAGES
from runtime.settings import Settings
from schemas.base import SHANGHAI
from schemas.events import OrderNormalized
from schemas.order import Order
from tests.builders import one_purchase, raw
from tests.conftest import run_cli

PDD_NO = "251215-481803633911509"


def _plain_env() -> dict[str, str]:
    """This process's environment without ORDERHUB_* settings a developer may have exported."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ORDERHUB_")}


def _project(engine: Engine, settings: Settings) -> Order:
    payload = one_purchase("pdd", order_id=PDD_NO,
                           paid_at=datetime(2026, 11, 11, 9, 30, tzinfo=SHANGHAI))
    order = normalize(raw(payload, channel="pdd", shop="pdd-shop-1"),
                      RateTable.from_mapping(settings.rates))
    received = datetime(2026, 11, 11, 1, 31, tzinfo=UTC)
    with engine.begin() as conn:
        write_orders(conn, [OrderNormalized(order=order, delivery_id="d1", received_at=received)])
    return order


def test_check_lists_every_built_in_template_and_exits_0() -> None:
    result = run_cli("templates", "check", env=_plain_env())
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(EVENTS) * len(CHANNELS) * len(LANGUAGES)
    shipped = next(line for line in lines if line.startswith("shipped.sms.zh_CN "))
    assert "sms" in shipped and "SMS_000000003 (placeholder)" in shipped
    assert "64 template(s) valid, 0 warning(s)" in result.stderr


def test_check_of_a_bad_directory_exits_2_naming_the_template_and_file(tmp_path: Path) -> None:
    (tmp_path / "zh_CN.yaml").write_text(
        'shipped:\n  sms:\n    provider_template: SMS_1\n    text: "{{ waybil }}"\n'
        '    params:\n      no: "{{ order_no }}"\n', encoding="utf-8")
    result = run_cli("templates", "check", "--dir", str(tmp_path), env=_plain_env())
    assert result.returncode == 2
    assert "shipped.sms.zh_CN" in result.stderr and str(tmp_path / "zh_CN.yaml") in result.stderr
    assert "unknown variable 'waybil'" in result.stderr
    assert result.stdout == ""


def test_check_warns_about_placeholders_on_channels_the_settings_send_through() -> None:
    env = {**_plain_env(), "ORDERHUB_NOTIFY__MATRIX": '{"shipped": ["sms", "log"]}'}
    result = run_cli("templates", "check", "--json", env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert len(report["templates"]) == 64
    assert [w.split(" ")[0] for w in report["warnings"]] == ["shipped.sms.zh_CN"]


def test_preview_renders_an_order_from_the_projection(settings: Settings, engine: Engine) -> None:
    _project(engine, settings)
    result = run_cli("templates", "preview", f"PDD{PDD_NO}", "shipped", "--carrier", "中通快递",
                     "--waybill", "78912345678901")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "[sms] shipped.sms.zh_CN SMS_000000003, 67 chars with 【某某母婴旗舰店】, 1 SMS" in out
    assert f"您的订单{PDD_NO}已发货，中通快递运单号78912345678901，请留意查收。" in out
    assert f"  order_no = {PDD_NO}" in out and "  waybill = 78912345678901" in out
    assert "[wechat] shipped.wechat.zh_CN" in out and "[log] shipped.log.zh_CN" in out
    assert "recipient name encrypted, phone encrypted" in out
    assert "~AgAAAA" not in out and "$Qm9h" not in out


def test_preview_takes_the_qc_grade_from_the_return_and_honours_language_and_channel(
    settings: Settings, engine: Engine
) -> None:
    _project(engine, settings)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO returns (order_id, state, lines, requested_at, grade) "
            "VALUES (:o, 'graded', '[]'::jsonb, now(), 'B')"), {"o": f"PDD{PDD_NO}"})
    result = run_cli("templates", "preview", f"PDD{PDD_NO}", "returned", "--channel", "sms",
                     "--language", "en_US", "--json")
    assert result.returncode == 0, result.stderr
    [preview] = json.loads(result.stdout)
    assert preview["template"] == "returned.sms.en_US"
    assert preview["text"] == f"Order {PDD_NO} return checked: defective."
    assert preview["params"] == {"order_no": PDD_NO, "qc_result": "defective"}


def test_preview_of_an_unknown_order_or_event_exits_2_saying_so(settings: Settings) -> None:
    missing = run_cli("templates", "preview", "PDD0", "shipped")
    assert missing.returncode == 2 and "no order 'PDD0'" in missing.stderr
    unknown = run_cli("templates", "preview", "PDD0", "teleported")
    assert unknown.returncode == 2 and "unknown event 'teleported'" in unknown.stderr
    assert "return_received" in unknown.stderr
