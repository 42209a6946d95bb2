"""Buyer message templates: sandboxed Jinja2 per event × channel × language, checked when loaded."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

import jinja2
import yaml
from jinja2 import meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from schemas.base import SHANGHAI
from schemas.errors import ConfigurationError
from schemas.order import Channel, Order, OrderLine, OrderStatus

EVENTS = ("paid", "allocated", "shipped", "delivered", "cancelled", "refunded",
          "return_received", "returned")
CHANNELS = ("sms", "wechat", "webhook", "log")
LANGUAGES = ("zh_CN", "en_US")
DEFAULT_LANGUAGE = "zh_CN"
BUILTIN_DIR = Path(__file__).with_name("templates")
LANGUAGE_NAME = re.compile(r"[a-z]{2,3}_[A-Z]{2}")

# What templates may use; docs/notify.md#variables says what each holds. order_variables fills all.
VARIABLES: frozenset[str] = frozenset({
    "order_no", "order_id", "event", "status", "channel", "channel_name", "shop", "item_summary",
    "item_title", "units", "lines", "amount", "amount_value", "currency", "paid_at", "carrier",
    "waybill", "reason", "qc_grade", "qc_result", "buyer_name"})

SMS_SEGMENT = 70  # characters of one SMS, the 【sign】 included
SMS_LONG_SEGMENT = 67  # characters per part of a longer one (Aliyun bills by part)
SMS_PARAM_MAX = 35  # Aliyun refuses a longer variable value (isv.PARAM_LENGTH_LIMIT)
SAMPLE_SIGN = "某某母婴旗舰店"  # counted when no sign is configured: a realistic 7 characters
SMS_PARAM_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
WECHAT_KEYWORD = re.compile(
    r"(thing|character_string|number|letter|symbol|phrase|name|amount|time|date|phone_number"
    r"|car_number)\d+")
PLACEHOLDER = re.compile(r"SMS_000000\d{3}|PLACEHOLDER-.*")
ITEM_TITLE_MAX = 12

REQUIRED_KEYS: Mapping[str, frozenset[str]] = MappingProxyType({
    "sms": frozenset({"text", "provider_template", "params"}),
    "wechat": frozenset({"text", "provider_template", "params"}),
    "webhook": frozenset({"text"}),
    "log": frozenset({"text"}),
})
OPTIONAL_KEYS: Mapping[str, frozenset[str]] = MappingProxyType({"wechat": frozenset({"page"})})


class TemplateError(ConfigurationError):
    """Templates that cannot be used; the message lists every problem with template and file."""

    def __init__(self, problems: str | Iterable[str]) -> None:
        self.problems = (problems,) if isinstance(problems, str) else tuple(problems)
        if len(self.problems) == 1:
            super().__init__(self.problems[0])
        else:
            super().__init__(f"{len(self.problems)} problem(s) in notification templates:\n- "
                             + "\n- ".join(self.problems))


@dataclass(frozen=True)
class Template:
    """One message: the Jinja2 sources of its text, provider parameters and page."""

    id: str
    event: str
    channel: str
    language: str
    text: str
    provider_template: str | None
    params: Mapping[str, str]
    page: str | None
    source: Path

    @property
    def is_placeholder(self) -> bool:
        """True while the provider template is a built-in placeholder, not an approved one."""
        return self.provider_template is not None and bool(
            PLACEHOLDER.fullmatch(self.provider_template))


@dataclass(frozen=True)
class Rendered:
    """A template filled in for one order: what is sent and logged."""

    template: str
    text: str
    params: dict[str, str] = field(default_factory=dict)
    page: str | None = None


class _Compiled(NamedTuple):
    text: jinja2.Template
    params: dict[str, jinja2.Template]
    page: jinja2.Template | None


class TemplateSet:
    """Every usable template, by id (`shipped.sms.zh_CN`); build it with `TemplateSet.load`."""

    def __init__(self, templates: Mapping[str, Template], compiled: Mapping[str, _Compiled],
                 samples: Mapping[str, Rendered], warnings: Iterable[str],
                 sms_sign_name: str | None) -> None:
        self.templates = MappingProxyType(dict(sorted(templates.items())))
        self.samples = MappingProxyType(dict(samples))
        self.warnings = tuple(warnings)
        self.sms_sign_name = sms_sign_name
        self._compiled = dict(compiled)

    @classmethod
    def load(cls, directory: Path | None = None, *,
             sms_sign_name: str | None = None) -> TemplateSet:
        """Built-ins, then `directory` (same layout) overriding by id; TemplateError if invalid."""
        problems: list[str] = []
        templates = _read_directory(BUILTIN_DIR, problems)
        if directory is not None:
            if directory.is_dir():
                templates.update(_read_directory(directory, problems))
            else:
                problems.append(f"{directory}: templates directory does not exist")
        env = environment()
        compiled: dict[str, _Compiled] = {}
        samples: dict[str, Rendered] = {}
        for t in templates.values():
            checked = _check(env, t, problems)
            if checked is not None:
                compiled[t.id], samples[t.id] = checked
        if problems:
            raise TemplateError(problems)
        warnings = [w for t in templates.values()
                    if (w := _length_warning(t, samples[t.id], sms_sign_name))]
        return cls(templates, compiled, samples, warnings, sms_sign_name)

    def find(self, event: str, channel: str, language: str) -> Template | None:
        """The template for this event and channel in `language`, else in zh_CN, else None."""
        for lang in (language, DEFAULT_LANGUAGE):
            template = self.templates.get(f"{event}.{channel}.{lang}")
            if template is not None:
                return template
        return None

    def render(self, template: Template, variables: Mapping[str, str]) -> Rendered:
        """Fill `template` in; TemplateError (naming it) when it cannot be rendered."""
        compiled = self._compiled.get(template.id)
        if compiled is None or self.templates.get(template.id) is not template:
            compiled = _compile(environment(), template)
        return _render(template, compiled, variables)

    def sms_length(self, rendered: Rendered) -> int:
        """Characters an SMS counts: 【sign】 + text."""
        return sms_length(rendered.text, self.sms_sign_name)


def environment() -> ImmutableSandboxedEnvironment:
    """The sandbox templates run in: plain text, undefined names are errors, no globals."""
    # Messages are plain text (SMS, WeChat keywords, logs), never HTML: escaping would corrupt them.
    env = ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined, autoescape=False)
    env.globals.clear()
    return env


def sms_sign(sign: str | None) -> str:
    """The 【sign】 Aliyun puts before an SMS (the sample one when none is configured)."""
    return f"【{(sign or '').strip('【】 ') or SAMPLE_SIGN}】"


def sms_length(text: str, sign: str | None) -> int:
    return len(sms_sign(sign) + text)


def sms_segments(length: int) -> int:
    """How many SMS a message of `length` characters (sign included) is sent as."""
    return 1 if length <= SMS_SEGMENT else math.ceil(length / SMS_LONG_SEGMENT)


# --- reading the YAML files ---------------------------------------------------------------------

def _read_directory(directory: Path, problems: list[str]) -> dict[str, Template]:
    templates: dict[str, Template] = {}
    for path in sorted(directory.glob("*.yml")):
        problems.append(f"{path}: template files are read only as .yaml; rename it")
    for path in sorted(directory.glob("*.yaml")):
        templates.update(_read_file(path, problems))
    return templates


def _read_file(path: Path, problems: list[str]) -> dict[str, Template]:
    language = path.stem
    if not LANGUAGE_NAME.fullmatch(language):
        problems.append(f"{path}: the file name must be a language, e.g. zh_CN.yaml or en_US.yaml")
        return {}
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        problems.append(f"{path}: cannot read it: {e}")
        return {}
    if document is None:
        return {}
    if not isinstance(document, dict):
        problems.append(f"{path}: expected events at the top level ({', '.join(EVENTS)})")
        return {}
    templates: dict[str, Template] = {}
    for event, channels in document.items():
        for t in _read_event(path, language, str(event), channels, problems):
            templates[t.id] = t
    return templates


def _read_event(path: Path, language: str, event: str, channels: Any,
                problems: list[str]) -> list[Template]:
    if event not in EVENTS:
        problems.append(f"{path}: unknown event {event!r}{_hint(event, EVENTS)}; "
                        f"events: {', '.join(EVENTS)}")
        return []
    if not isinstance(channels, dict):
        problems.append(f"{path}: {event}: expected channels ({', '.join(CHANNELS)})")
        return []
    read = (_read_template(path, event, str(c), language, body, problems)
            for c, body in channels.items())
    return [t for t in read if t is not None]


def _read_template(path: Path, event: str, channel: str, language: str, body: Any,
                   problems: list[str]) -> Template | None:
    tid = f"{event}.{channel}.{language}"
    where = f"{tid} ({path})"
    if channel not in CHANNELS:
        problems.append(f"{where}: unknown channel {channel!r}{_hint(channel, CHANNELS)}; "
                        f"channels: {', '.join(CHANNELS)}")
        return None
    if not isinstance(body, dict):
        problems.append(f"{where}: expected keys {', '.join(sorted(REQUIRED_KEYS[channel]))}")
        return None
    found = len(problems)
    _check_keys(where, channel, body, problems)
    params = _read_params(where, channel, body["params"], problems) if "params" in body else {}
    for key in ("text", "provider_template", "page"):
        if key in body and not (isinstance(body[key], str) and body[key].strip()):
            problems.append(f"{where}: {key} must be non-empty text, got {body[key]!r}")
    if len(problems) > found:
        return None
    return Template(id=tid, event=event, channel=channel, language=language, text=body["text"],
                    provider_template=body.get("provider_template"),
                    params=MappingProxyType(params), page=body.get("page"), source=path)


def _check_keys(where: str, channel: str, body: dict[Any, Any], problems: list[str]) -> None:
    required = REQUIRED_KEYS[channel]
    allowed = required | OPTIONAL_KEYS.get(channel, frozenset())
    unknown = sorted(str(k) for k in body if k not in allowed)
    missing = sorted(required - set(body))
    if unknown:
        problems.append(f"{where}: unknown key(s) {', '.join(unknown)}; {channel} templates "
                        f"have {', '.join(sorted(allowed))}")
    if missing:
        problems.append(f"{where}: missing {', '.join(missing)}")


def _read_params(where: str, channel: str, params: Any, problems: list[str]) -> dict[str, str]:
    if not isinstance(params, dict) or (channel in ("sms", "wechat") and not params):
        problems.append(f"{where}: params must map each provider variable to its text")
        return {}
    names = SMS_PARAM_NAME if channel == "sms" else WECHAT_KEYWORD
    for name, value in params.items():
        if not names.fullmatch(str(name)):
            problems.append(f"{where}: {name!r} is not a valid {channel} variable name"
                            + ("; WeChat keywords look like thing1, character_string2, amount3"
                               if channel == "wechat" else ""))
        if not isinstance(value, str):
            problems.append(f"{where}: params.{name} must be text, got {value!r}")
    return {str(k): str(v) for k, v in params.items()}


def _hint(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --- compiling, checking and rendering ----------------------------------------------------------

def _sources(template: Template) -> dict[str, str]:
    sources = {"text": template.text}
    sources.update({f"params.{name}": src for name, src in template.params.items()})
    if template.page is not None:
        sources["page"] = template.page
    return sources


def _check(env: ImmutableSandboxedEnvironment, template: Template,
           problems: list[str]) -> tuple[_Compiled, Rendered] | None:
    """Compile, check the names used, and render once with sample values."""
    where = f"{template.id} ({template.source})"
    found = len(problems)
    for part, source in _sources(template).items():
        try:
            used = meta.find_undeclared_variables(env.parse(source))
        except jinja2.TemplateSyntaxError as e:
            problems.append(f"{where}: {part}: syntax error on line {e.lineno}: {e.message}")
            continue
        for name in sorted(used - VARIABLES):
            problems.append(f"{where}: {part}: unknown variable {name!r}"
                            f"{_hint(name, VARIABLES)}; see docs/notify.md#templates")
    if len(problems) > found:
        return None
    compiled = _compile(env, template)
    try:
        sample = _render(template, compiled, sample_variables(template.event, template.language))
    except TemplateError as e:
        problems.extend(e.problems)
        return None
    return compiled, sample


def _compile(env: ImmutableSandboxedEnvironment, template: Template) -> _Compiled:
    try:
        return _Compiled(
            env.from_string(template.text),
            {name: env.from_string(src) for name, src in template.params.items()},
            None if template.page is None else env.from_string(template.page))
    except jinja2.TemplateSyntaxError as e:
        raise TemplateError([f"{template.id} ({template.source}): syntax error: {e}"]) from e


def _render(template: Template, compiled: _Compiled, variables: Mapping[str, str]) -> Rendered:
    values = dict(variables)
    try:
        text = compiled.text.render(values).strip()
        params = {name: _fit(template.channel, name, t.render(values).strip())
                  for name, t in compiled.params.items()}
        page = None if compiled.page is None else compiled.page.render(values).strip()
    # A template is the merchant's code: whatever it raises (sandbox refusal, an undefined
    # name, a bad filter argument) is a problem of that template, reported with its id.
    except Exception as e:
        raise TemplateError([f"{template.id} ({template.source}): cannot render: "
                             f"{type(e).__name__}: {e}"]) from e
    return Rendered(template=template.id, text=text, params=params, page=page)


def _length_warning(template: Template, sample: Rendered, sign: str | None) -> str | None:
    if template.channel != "sms":
        return None
    length = sms_length(sample.text, sign)
    if length <= SMS_SEGMENT:
        return None
    return (f"{template.id} ({template.source}): {length} characters with the sign "
            f"{sms_sign(sign)} and sample values, over one SMS ({SMS_SEGMENT}): "
            f"sent and billed as {sms_segments(length)}")


# --- provider limits ----------------------------------------------------------------------------

WECHAT_LIMITS: Mapping[str, int] = MappingProxyType({
    "thing": 20, "character_string": 32, "number": 32, "letter": 32, "symbol": 5, "phrase": 5,
    "name": 10, "phone_number": 17, "car_number": 8, "time": 32, "date": 32, "amount": 14})


def _fit(channel: str, name: str, value: str) -> str:
    """A parameter value the provider accepts (WeChat answers 47003 to any value over its type)."""
    if channel == "sms":
        return value[:SMS_PARAM_MAX - 1] + "…" if len(value) > SMS_PARAM_MAX else value
    if channel != "wechat":
        return value
    kind = name.rstrip("0123456789")
    return fit_wechat(kind, value) or "-"  # WeChat refuses an empty value too


def fit_wechat(kind: str, value: str) -> str:
    """`value` shaped for a WeChat keyword of type `kind` (thing, character_string, …)."""
    limit = WECHAT_LIMITS.get(kind, 20)
    if kind == "thing":
        return value if len(value) <= limit else value[:limit - 1] + "…"
    if kind in ("character_string", "phone_number", "car_number"):
        value = "".join(c for c in value if c.isascii() and c.isprintable() and not c.isspace())
    elif kind == "number":
        value = "".join(c for c in value if c.isdigit() or c == ".")
    elif kind == "letter":
        value = "".join(c for c in value if c.isascii() and c.isalpha())
    elif kind == "amount":
        value = _wechat_amount(value)
    elif kind in ("time", "date"):
        value = _wechat_time(value)
    elif kind == "name" and value.isascii():
        limit = 20
    return value[:limit]


def _wechat_amount(value: str) -> str:
    """One currency symbol and the number: `HK$1,299.00` → `$1299.00`."""
    number = re.search(r"\d+(?:\.\d+)?", value.replace(",", ""))
    if number is None:
        return ""
    symbol = next((c for c in value if c in "¥￥$€£₩"), "")
    return symbol + number.group()


def _wechat_time(value: str) -> str:
    """`2026-11-11 09:00` → `2026年11月11日 09:00`, the form WeChat's time and date accept."""
    m = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T](\d{1,2}:\d{2}))?(?::\d{2})?", value)
    if m is None:
        return value
    year, month, day, clock = m.groups()
    return f"{year}年{int(month)}月{int(day)}日" + (f" {clock}" if clock else "")


# --- order variables ----------------------------------------------------------------------------

class _Wording(NamedTuple):
    channel_names: Mapping[Channel, str]
    qc_results: Mapping[str, str]
    more: str  # item_summary's tail, with {units}
    item: str  # a title-less line


ZH = _Wording(
    {Channel.TAOBAO: "淘宝", Channel.JD: "京东", Channel.PDD: "拼多多", Channel.DOUYIN: "抖音",
     Channel.WECHAT: "微信小店", Channel.SHOPIFY: "Shopify", Channel.AMAZON: "Amazon",
     Channel.CSV: "官方商城"},
    {"A": "质检合格", "B": "商品有瑕疵", "C": "无法二次销售"}, " 等{units}件", "商品")
EN = _Wording(
    {Channel.TAOBAO: "Taobao", Channel.JD: "JD", Channel.PDD: "Pinduoduo", Channel.DOUYIN: "Douyin",
     Channel.WECHAT: "WeChat Shop", Channel.SHOPIFY: "Shopify", Channel.AMAZON: "Amazon",
     Channel.CSV: "our store"},
    {"A": "passed", "B": "defective", "C": "not resellable"}, " ({units} items)", "item")
CURRENCY_SYMBOLS: Mapping[str, str] = MappingProxyType({
    "CNY": "¥", "USD": "$", "EUR": "€", "GBP": "£", "JPY": "JP¥", "HKD": "HK$", "TWD": "NT$",
    "KRW": "₩", "AUD": "A$", "CAD": "C$", "SGD": "S$"})

DECIMAL_PLACES: Mapping[str, int] = MappingProxyType({"JPY": 0, "KRW": 0})


def wording(language: str) -> _Wording:
    return ZH if language.startswith("zh") else EN


def order_variables(order: Order, event: str, *, carrier: str | None = None,
                    waybill: str | None = None, reason: str | None = None,
                    qc_grade: str | None = None, language: str = DEFAULT_LANGUAGE
                    ) -> dict[str, str]:
    """Every variable of VARIABLES for `order` and `event`, in `language`'s words (pure)."""
    if event not in EVENTS:
        raise TemplateError([f"unknown event {event!r}; events: {', '.join(EVENTS)}"])
    words = wording(language)
    grade = (qc_grade or "").strip().upper()
    money = format(money_shown(order.paid_amount, order.currency), "f")
    return {
        "order_no": order.native_id, "order_id": order.id, "event": event,
        "status": order.status.value, "channel": order.channel.value,
        "channel_name": words.channel_names[order.channel], "shop": order.shop,
        "item_summary": item_summary(order.lines, words),
        "item_title": _title(order.lines[0], words),
        "units": str(sum(line.quantity for line in order.lines)), "lines": str(len(order.lines)),
        "amount": CURRENCY_SYMBOLS.get(order.currency, f"{order.currency} ") + money,
        "amount_value": money, "currency": order.currency,
        "paid_at": order.paid_at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")
        if order.paid_at else "",
        "carrier": carrier or "", "waybill": waybill or "", "reason": reason or "",
        "qc_grade": grade, "qc_result": words.qc_results.get(grade, ""),
        "buyer_name": masked_name(order.recipient.name if order.recipient else None),
    }


def money_shown(amount: Decimal, currency: str) -> Decimal:
    """`154.7` → `154.70`: the currency's minor units, as a buyer reads a price."""
    places = DECIMAL_PLACES.get(currency, 2)
    return amount.quantize(Decimal(1).scaleb(-places))


def item_summary(lines: tuple[OrderLine, ...], words: _Wording) -> str:
    """`儿童纯棉短袖T恤…×2 等3件`: the first line, and the total when there are more lines."""
    first = lines[0]
    units = sum(line.quantity for line in lines)
    tail = words.more.format(units=units) if len(lines) > 1 else ""
    return f"{_title(first, words)}×{first.quantity}{tail}"


def _title(line: OrderLine, words: _Wording) -> str:
    title = " ".join(line.title.split()) or line.sku or words.item
    return title if len(title) <= ITEM_TITLE_MAX else title[:ITEM_TITLE_MAX].rstrip() + "…"


def masked_name(name: str | None) -> str:
    """A name for a message: kept if the channel masked it, masked if not, empty if encrypted."""
    if not name or not name.strip():
        return ""
    name = name.strip()
    if name[0] in "~$#" or (len(name) > 20 and " " not in name):  # ciphertext: never shown
        return ""
    if "*" in name:
        return name
    return name[0] + "*" * min(max(len(name) - 1, 1), 2)


def sample_variables(event: str, language: str = DEFAULT_LANGUAGE) -> dict[str, str]:
    """Variables of a realistic, long-ish order: what SMS lengths are measured with."""
    return order_variables(_sample_order(), event, carrier="中通快递", waybill="SF1234567890123",
                           reason="买家申请取消", qc_grade="C", language=language)


def _sample_order() -> Order:
    at = datetime(2026, 11, 11, 0, 3, 12, tzinfo=SHANGHAI)
    line = {"sku": "KID-TEE-110-PNK", "title": "2026夏季新款儿童纯棉短袖T恤男童女童宝宝上衣",
            "quantity": 2, "unit_price": Decimal("399.00"), "line_total": Decimal("798.00")}
    second = {**line, "sku": "KID-SHORTS-110", "quantity": 1, "unit_price": Decimal("501.00"),
              "line_total": Decimal("501.00")}
    return Order.model_validate({
        "id": "TB4123456789012345678", "channel": Channel.TAOBAO, "shop": "sample-shop",
        "native_id": "4123456789012345678", "native_status": "WAIT_SELLER_SEND_GOODS",
        "status": OrderStatus.PAID, "created_at": at, "paid_at": at, "updated_at": at,
        "currency": "CNY", "goods_amount": Decimal("1299.00"), "shipping_amount": Decimal("0"),
        "discount_amount": Decimal("0"), "paid_amount": Decimal("1299.00"),
        "paid_cny": Decimal("1299.00"), "lines": [line, second],
        "recipient": {"name": "张**", "phone": "138****5678"},
    })
