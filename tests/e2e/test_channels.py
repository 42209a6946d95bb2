from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import Engine, text

from ingest.process import ADAPTERS
from runtime.settings import Settings
from tests.builders import FIXTURES
from tests.conftest import run_cli

REJECTED_BY_INGEST = ("error", "tmc_")  # channel error responses, partial push messages
PREFIXES = {"taobao": "TB", "jd": "JD", "pdd": "PDD", "douyin": "DY", "wechat": "WX",
            "shopify": "SHOP", "amazon": "AMZ"}


def test_every_channel_s_api_responses_become_canonical_orders_through_the_cli(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    expected_rejections = 0
    for channel in PREFIXES:
        assert channel in {c.value for c in ADAPTERS}
        paths = sorted((FIXTURES / channel).glob("*.json"))
        rejected = sum(p.name.startswith(REJECTED_BY_INGEST) for p in paths)
        expected_rejections += rejected
        # One file per channel: a JSON array whose items are the API responses as captured.
        bundle = tmp_path / f"{channel}.json"
        bundle.write_text(json.dumps([json.loads(p.read_text()) for p in paths]))
        result = run_cli("ingest", channel, str(bundle), "--shop", f"{channel}-shop")
        assert result.returncode == 0, result.stderr
        assert (f"; {rejected} rejected" in result.stderr) == bool(rejected), result.stderr
    drained = run_cli("drain", "--timeout", "240")
    assert drained.returncode == 0, drained.stderr[-3000:]

    with engine.connect() as conn:
        by_channel = dict(conn.execute(text(
            "SELECT channel, count(*) FROM orders GROUP BY channel")).all())
        ids = conn.execute(text("SELECT channel, id, document FROM orders")).all()
        letters = conn.execute(text("SELECT stage, message FROM dead_letters")).all()
    assert set(by_channel) == set(PREFIXES), by_channel
    for channel, order_id, document in ids:
        assert order_id.startswith(PREFIXES[channel])
        assert document["created_at"].endswith("+08:00")
        if document["recipient"] and document["recipient"]["country"] == "CN":
            province = document["recipient"]["province"]
            assert province is None or province.endswith(("省", "市", "自治区", "特别行政区"))
    assert [s for s, _ in letters] == ["ingest"] * expected_rejections, letters
    big = [i for _, i, _ in ids if i.startswith("DY")]
    assert big and all(len(i) >= 21 for i in big)  # 19-digit Douyin ids, exact
    listed = json.loads(run_cli("orders", "list", "--json").stdout)
    assert len(listed) == len(ids)


def test_fixture_folders_cover_every_channel() -> None:
    channels = {p.name for p in Path(FIXTURES).iterdir() if p.is_dir()} - {"master"}
    assert channels == {*PREFIXES, "csv"}  # master/: warehouses and stock, not a channel
