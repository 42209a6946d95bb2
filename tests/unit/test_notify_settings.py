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
