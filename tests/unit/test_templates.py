from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from normalize.process import normalize
from normalize.rates import DEFAULT_RATES, RateTable
from notify.templates import (
    CHANNELS,
    EVENTS,
    LANGUAGES,
    SMS_PARAM_MAX,
    VARIABLES,
    WECHAT_LIMITS,
    TemplateError,
    TemplateSet,
    fit_wechat,
    order_variables,
    sample_variables,
)
from schemas.base import SHANGHAI
from schemas.errors import ConfigurationError
from schemas.order import Order
from tests.builders import one_purchase, raw, shopify_fixture

RATES = RateTable.from_mapping(DEFAULT_RATES)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "notify.md"


def _shopify_order() -> Order:
    return normalize(raw(shopify_fixture()), RATES)


def _pdd_order() -> Order:
    payload = one_purchase("pdd", order_id="251215-481803633911509",
                           paid_at=datetime(2026, 11, 11, 9, 30, tzinfo=SHANGHAI))
    return normalize(raw(payload, channel="pdd", shop="pdd-shop-1"), RATES)


def _merchant_dir(tmp_path: Path, body: str, language: str = "zh_CN") -> Path:
    (tmp_path / f"{language}.yaml").write_text(body, encoding="utf-8")
    return tmp_path


def _refusal(tmp_path: Path, body: str, language: str = "zh_CN") -> str:
    with pytest.raises(TemplateError) as refused:
        TemplateSet.load(_merchant_dir(tmp_path, body, language))
    return str(refused.value)


def test_the_built_in_templates_load_without_errors_or_warnings() -> None:
    templates = TemplateSet.load()
    assert templates.warnings == ()
    assert len(templates.templates) == len(EVENTS) * len(CHANNELS) * len(LANGUAGES)


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("event", EVENTS)
def test_every_event_and_channel_has_a_built_in_template_in_each_language(
    event: str, channel: str, language: str
) -> None:
    template = TemplateSet.load().find(event, channel, language)
    assert template is not None and template.id == f"{event}.{channel}.{language}"
    assert template.source.name == f"{language}.yaml"
    if channel in ("sms", "wechat"):
        assert template.provider_template and template.params and template.is_placeholder


def test_every_built_in_chinese_sms_fits_one_segment_even_with_the_longest_sign() -> None:
    templates = TemplateSet.load(sms_sign_name="某某某某母婴用品官方旗舰")  # Aliyun allows 12
    lengths = {t.id: templates.sms_length(templates.samples[t.id])
               for t in templates.templates.values() if t.id.endswith(".sms.zh_CN")}
    assert len(lengths) == len(EVENTS) and max(lengths.values()) <= 70, lengths
    assert all(".en_US" in w for w in templates.warnings)


def test_an_unknown_variable_is_refused_naming_the_template_and_its_file(tmp_path: Path) -> None:
    message = _refusal(tmp_path, 'shipped:\n  log:\n    text: "{{ waybil }} {{ oops }}"\n')
    assert "shipped.log.zh_CN" in message and str(tmp_path / "zh_CN.yaml") in message
    assert "unknown variable 'waybil' (did you mean 'waybill'?)" in message
    assert "unknown variable 'oops'" in message


def test_a_syntax_error_is_refused_with_its_line(tmp_path: Path) -> None:
    message = _refusal(tmp_path, 'paid:\n  log:\n    text: "{% if amount %}paid"\n')
    assert "paid.log.zh_CN" in message and "syntax error on line 1" in message


def test_the_sandbox_refuses_attribute_access_such_as_dunder_class(tmp_path: Path) -> None:
    message = _refusal(tmp_path, "paid:\n  log:\n    text: \"{{ ''.__class__.__mro__ }}\"\n")
    assert "paid.log.zh_CN" in message and "SecurityError" in message
    message = _refusal(tmp_path, 'paid:\n  log:\n    text: "{{ order_no.__class__ }}"\n')
    assert "unsafe" in message


def test_every_problem_is_listed_in_one_error(tmp_path: Path) -> None:
    message = _refusal(tmp_path, (
        "shiped:\n  log:\n    text: x\n"
        "paid:\n  fax:\n    text: x\n"
        "  sms:\n    text: x\n    colour: red\n"
        "  wechat:\n    text: x\n    provider_template: T1\n    params:\n      keyword1: x\n"
    ))
    assert "unknown event 'shiped' (did you mean 'shipped'?)" in message
    assert "paid.fax.zh_CN" in message and "unknown channel 'fax'" in message
    assert "paid.sms.zh_CN" in message and "unknown key(s) colour" in message
    assert "missing params, provider_template" in message
    assert "paid.wechat.zh_CN" in message and "'keyword1' is not a valid wechat" in message
    assert message.startswith("5 problem(s)")


def test_a_file_that_is_not_named_after_a_language_is_refused(tmp_path: Path) -> None:
    message = _refusal(tmp_path, "paid:\n  log:\n    text: x\n", language="chinese")
    assert "chinese.yaml" in message and "must be a language" in message


def test_a_template_error_is_a_configuration_error_so_the_cli_exits_2(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        TemplateSet.load(tmp_path / "missing")


def test_an_sms_over_one_segment_is_warned_about_not_refused(tmp_path: Path) -> None:
    text = "您的订单{{ order_no }}" + "已发货" * 20
    directory = _merchant_dir(tmp_path, (
        f'shipped:\n  sms:\n    provider_template: SMS_123\n    text: "{text}"\n'
        '    params:\n      order_no: "{{ order_no }}"\n'))
    templates = TemplateSet.load(directory, sms_sign_name="童装店")
    assert len(templates.warnings) == 1
    warning = templates.warnings[0]
    assert "shipped.sms.zh_CN" in warning and "【童装店】" in warning
    assert "88 characters" in warning and "billed as 2" in warning


def test_a_merchant_directory_replaces_a_built_in_by_id_and_keeps_the_others(
    tmp_path: Path,
) -> None:
    directory = _merchant_dir(tmp_path, (
        "shipped:\n  sms:\n    provider_template: SMS_424242\n"
        '    text: "{{ buyer_name }}您好，订单{{ order_no }}已由{{ carrier }}发出"\n'
        '    params:\n      name: "{{ buyer_name }}"\n      order_no: "{{ order_no }}"\n'
        '      carrier: "{{ carrier }}"\n'))
    templates = TemplateSet.load(directory)
    shipped = templates.find("shipped", "sms", "zh_CN")
    assert shipped is not None and shipped.provider_template == "SMS_424242"
    assert shipped.source == directory / "zh_CN.yaml" and not shipped.is_placeholder
    paid = templates.find("paid", "sms", "zh_CN")
    assert paid is not None and paid.source.parent.name == "templates"
    rendered = templates.render(shipped, order_variables(_pdd_order(), "shipped", carrier="顺丰"))
    # PDD sends the name encrypted: buyer_name is empty rather than ciphertext.
    assert rendered.text == "您好，订单251215-481803633911509已由顺丰发出"
    assert rendered.params == {"name": "", "order_no": "251215-481803633911509",
                               "carrier": "顺丰"}


def test_a_missing_language_falls_back_to_zh_cn() -> None:
    template = TemplateSet.load().find("paid", "sms", "fr_FR")
    assert template is not None and template.id == "paid.sms.zh_CN"


def test_find_is_none_for_an_event_without_any_template() -> None:
    assert TemplateSet.load().find("exploded", "sms", "zh_CN") is None


def test_the_shipped_sms_carries_order_carrier_and_waybill() -> None:
    templates = TemplateSet.load()
    template = templates.find("shipped", "sms", "zh_CN")
    assert template is not None
    variables = order_variables(_pdd_order(), "shipped", carrier="中通快递", waybill="78912345")
    rendered = templates.render(template, variables)
    assert rendered.text == ("您的订单251215-481803633911509已发货，"
                             "中通快递运单号78912345，请留意查收。")
    assert rendered.params == {"order_no": "251215-481803633911509", "carrier": "中通快递",
                               "waybill": "78912345"}


def test_a_wechat_thing_is_cut_to_twenty_characters_and_times_are_written_the_wechat_way(
    tmp_path: Path,
) -> None:
    directory = _merchant_dir(tmp_path, (
        "paid:\n  wechat:\n    provider_template: TPL\n    text: x\n    params:\n"
        '      thing1: "{{ item_summary }}，感谢您在{{ channel_name }}下单"\n'
        '      time2: "{{ paid_at }}"\n      amount3: "{{ amount }}"\n'
        '      character_string4: "单号{{ order_no }}"\n      phrase5: "{{ reason }}"\n'))
    templates = TemplateSet.load(directory)
    template = templates.find("paid", "wechat", "zh_CN")
    assert template is not None
    params = templates.render(template, order_variables(_pdd_order(), "paid")).params
    assert len(params["thing1"]) == 20 and params["thing1"].endswith("…")
    assert params["time2"] == "2026年11月11日 09:30"
    assert params["amount3"] == "¥154.70"
    assert params["character_string4"] == "251215-481803633911509"
    assert params["phrase5"] == "-"  # WeChat refuses an empty value


@given(kind=st.sampled_from(sorted(WECHAT_LIMITS)), value=st.text(max_size=80))
def test_a_wechat_value_never_exceeds_its_keyword_limit(kind: str, value: str) -> None:
    limit = 20 if kind == "name" else WECHAT_LIMITS[kind]
    assert len(fit_wechat(kind, value)) <= limit


def test_an_sms_parameter_is_cut_to_aliyuns_limit(tmp_path: Path) -> None:
    directory = _merchant_dir(tmp_path, (
        "refunded:\n  sms:\n    provider_template: SMS_1\n    text: x\n"
        '    params:\n      why: "{{ reason }}"\n'))
    templates = TemplateSet.load(directory)
    template = templates.find("refunded", "sms", "zh_CN")
    assert template is not None
    variables = order_variables(_pdd_order(), "refunded", reason="质量问题" * 20)
    assert len(templates.render(template, variables).params["why"]) == SMS_PARAM_MAX


def test_a_template_that_fails_at_send_time_raises_template_error_naming_it(
    tmp_path: Path,
) -> None:
    directory = _merchant_dir(tmp_path, 'paid:\n  log:\n    text: "{{ 100 // (units|int) }}"\n')
    templates = TemplateSet.load(directory)
    template = templates.find("paid", "log", "zh_CN")
    assert template is not None
    variables = {**order_variables(_pdd_order(), "paid"), "units": "0"}
    with pytest.raises(TemplateError, match=r"paid\.log\.zh_CN .*ZeroDivisionError"):
        templates.render(template, variables)
    with pytest.raises(TemplateError, match="'units' is undefined"):
        templates.render(template, {})


def test_order_variables_come_from_the_canonical_order() -> None:
    variables = order_variables(_shopify_order(), "shipped", carrier="UPS",
                                waybill="1Z999AA10123456784", language="en_US")
    assert set(variables) == VARIABLES
    assert variables["order_no"] == "820982911946154508"
    assert variables["order_id"] == "SHOP820982911946154508"
    assert variables["channel_name"] == "Shopify"
    assert variables["amount"] == "$267.58" and variables["amount_value"] == "267.58"
    assert variables["currency"] == "USD" and variables["units"] == "3"
    assert variables["item_summary"] == "IPod Nano -…×1 (3 items)"
    assert variables["paid_at"] == "2026-01-24 12:10"
    assert (variables["carrier"], variables["waybill"]) == ("UPS", "1Z999AA10123456784")
    assert variables["buyer_name"] == "S**"  # plaintext from Shopify: masked, never shown whole


def test_order_variables_in_chinese_never_show_an_encrypted_name() -> None:
    variables = order_variables(_pdd_order(), "returned", qc_grade="b")
    assert variables["channel_name"] == "拼多多"
    assert variables["item_summary"].endswith("×2 等3件")
    assert (variables["qc_grade"], variables["qc_result"]) == ("B", "商品有瑕疵")
    assert variables["buyer_name"] == ""
    assert variables["amount"] == "¥154.70"


def test_order_variables_refuse_an_unknown_event() -> None:
    with pytest.raises(TemplateError, match="unknown event 'teleported'"):
        order_variables(_pdd_order(), "teleported")


@pytest.mark.parametrize("event", EVENTS)
def test_sample_variables_fill_every_variable(event: str) -> None:
    assert set(sample_variables(event)) == VARIABLES


def test_the_docs_describe_every_variable_and_their_examples_load(tmp_path: Path) -> None:
    docs = DOCS.read_text(encoding="utf-8")
    assert [name for name in sorted(VARIABLES) if f"`{name}`" not in docs] == []
    examples = [block.split("```")[0] for block in docs.split("```yaml")[1:]]
    assert len(examples) == 2
    for example in examples:
        templates = TemplateSet.load(_merchant_dir(tmp_path, example))
        assert templates.templates["shipped.sms.zh_CN"].source == tmp_path / "zh_CN.yaml"
