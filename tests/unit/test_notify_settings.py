from __future__ import annotations

import pytest
from pydantic import ValidationError

from runtime.settings import NotifySettings, Settings, WebhookSettings


def test_an_empty_secret_variable_means_unset_never_an_empty_signing_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORDERHUB_WEBHOOKS__SHOPIFY_SECRET", "")
    monkeypatch.setenv("ORDERHUB_NOTIFY__WEBHOOK_SECRET", "")
    monkeypatch.setenv("ORDERHUB_NOTIFY__WEBHOOK_URL", "")
    s = Settings()
    assert s.webhooks.shopify_secret is None
    assert (s.notify.webhook_secret, s.notify.webhook_url) == (None, None)
    assert WebhookSettings(shopify_secret="k").shopify_secret is not None


def test_the_default_matrix_logs_every_event_but_paid_and_reaches_no_buyer() -> None:
    matrix = NotifySettings().matrix
    assert "paid" not in matrix and set(matrix) >= {"allocated", "shipped", "returned"}
    assert {c for cs in matrix.values() for c in cs} == {"log"}


def test_an_unknown_event_or_channel_in_the_matrix_is_refused_by_name() -> None:
    with pytest.raises(ValidationError, match="shiped"):
        NotifySettings(matrix={"shiped": ("buyer",)})
    with pytest.raises(ValidationError, match="email"):
        NotifySettings(matrix={"shipped": ("email",)})


def test_the_matrix_survives_the_trip_to_a_child_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = Settings(notify=NotifySettings(matrix={"shipped": ("buyer", "webhook")},
                                       webhook_secret="s3cret"))
    for key, value in s.to_env().items():
        monkeypatch.setenv(key, value)
    again = Settings()
    assert again.notify.matrix == {"shipped": ("buyer", "webhook")}
    assert again.notify.webhook_secret is not None
    assert again.notify.webhook_secret.get_secret_value() == "s3cret"


def test_a_round_that_cannot_be_tried_within_its_lease_is_refused_with_the_way_out() -> None:
    # 500 rows at 5 WeChat messages a second take 100 s, plus a 10 s timeout: past the 60 s
    # lease, after which another sender may claim and send the same rows again.
    with pytest.raises(ValidationError, match=r"batch=500 at wechat_rate_per_s=5 .* 110 s.*"
                                              r"ORDERHUB_NOTIFY__BATCH.*LEASE_S"):
        NotifySettings(wechat_appid="wx1", wechat_secret="s", wechat_rate_per_s=5)
    assert NotifySettings(wechat_appid="wx1", wechat_secret="s", wechat_rate_per_s=5,
                          batch=200).batch == 200
    assert NotifySettings(wechat_appid="wx1", wechat_secret="s", wechat_rate_per_s=5,
                          lease_s=120).lease_s == 120
    # A provider that is not configured (credentials missing) paces nothing, whatever its rate.
    assert NotifySettings(wechat_rate_per_s=1).batch == 500
    assert NotifySettings(wechat_appid="wx1", wechat_rate_per_s=1).batch == 500
    # The slowest configured provider decides: SMS at 50/s is fine, the webhook at 8/s is not.
    with pytest.raises(ValidationError, match="webhook_rate_per_s=8"):
        NotifySettings(sms_access_key_id="k", sms_access_key_secret="s",
                       webhook_url="http://hook", webhook_secret="s", webhook_rate_per_s=8)
