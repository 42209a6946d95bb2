"""`orderhub templates check|preview`: buyer message templates, validated and shown for an order."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from runtime.cli_kit import CliHelpers, Registered
from schemas.errors import ConfigurationError

if TYPE_CHECKING:
    from notify.templates import Template, TemplateSet
    from runtime.settings import NotifySettings
    from schemas.order import Order

templates_app = typer.Typer(help="Buyer message templates (SMS, WeChat, webhook, log).",
                            no_args_is_help=True)
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
PROVIDER_CHANNELS = {"sms": ("sms",), "wechat": ("wechat",), "buyer": ("wechat", "sms")}


_cli = Registered()


def register(app: typer.Typer, helpers: CliHelpers) -> None:
    """Attach `templates` to the CLI, with its own helpers (not imported from runtime.cli,
    which `python -m runtime.cli` would load a second time)."""
    _cli.set(helpers)
    app.add_typer(templates_app, name="templates")


def _load(directory: Path | None) -> tuple[TemplateSet, NotifySettings]:
    from notify.templates import TemplateSet

    notify = _cli().settings().notify
    found = TemplateSet.load(directory or notify.templates_dir, sms_sign_name=notify.sms_sign_name)
    return found, notify


@templates_app.command("check")
def templates_check(
    directory: Annotated[Path | None, typer.Option(
        "--dir", help="The merchant's templates (default: ORDERHUB_NOTIFY__TEMPLATES_DIR).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Load the built-in templates and the merchant's; exit 2 naming every invalid one."""
    templates, notify = _load(directory)
    warnings = [*templates.warnings, *settings_warnings(templates, notify)]
    rows = [_summary(templates, t) for t in templates.templates.values()]
    if as_json:
        _cli().print_json({"templates": rows, "warnings": warnings})
        return
    for r in rows:
        provider = f"  {r['provider_template']}" if r["provider_template"] else ""
        mark = " (placeholder)" if r["placeholder"] else ""
        typer.echo(f"{r['id']:<30} {r['channel']:<8} {r['length']:>4} chars{provider}{mark}"
                   f"  {r['source']}")
    for w in warnings:
        _cli().say(f"warning: {w}")
    _cli().say(f"{len(rows)} template(s) valid, {len(warnings)} warning(s)")


def _summary(templates: TemplateSet, t: Template) -> dict[str, Any]:
    sample = templates.samples[t.id]
    length = templates.sms_length(sample) if t.channel == "sms" else len(sample.text)
    return {"id": t.id, "channel": t.channel, "length": length,
            "provider_template": t.provider_template, "placeholder": t.is_placeholder,
            "source": str(t.source)}


def settings_warnings(templates: TemplateSet, notify: NotifySettings) -> list[str]:
    """Languages without templates, and placeholders where settings would send through them."""
    from notify.templates import EVENTS

    languages = sorted({notify.language, *notify.languages.values()})
    known = {t.language for t in templates.templates.values()}
    warnings = [f"language {lang} (settings.notify) has no templates: zh_CN is used"
                for lang in languages if lang not in known]
    sent = [(event, channel) for event in EVENTS for configured in notify.matrix.get(event, ())
            for channel in PROVIDER_CHANNELS.get(configured, ())]
    used = [t for event, channel in sent for lang in languages
            if (t := templates.find(event, channel, lang)) is not None and t.is_placeholder]
    warnings += [f"{t.id} ({t.source}): {t.provider_template} is a placeholder; put your "
                 f"approved {t.channel} template there before sending" for t in used]
    return list(dict.fromkeys(warnings))


@templates_app.command("preview")
def templates_preview(
    order_id: Annotated[str, typer.Argument(help="Canonical order id, e.g. SHOP6200407294252.")],
    status: Annotated[str, typer.Argument(
        help="The event: paid, allocated, shipped, delivered, cancelled, refunded, "
        "return_received, returned.")],
    channel: Annotated[str | None, typer.Option(
        help="Only this channel: sms, wechat, webhook or log (default: all).")] = None,
    language: Annotated[str | None, typer.Option(
        help="zh_CN, en_US, … (default: ORDERHUB_NOTIFY__LANGUAGES for the order's channel, "
        "else ORDERHUB_NOTIFY__LANGUAGE).")] = None,
    carrier: Annotated[str | None, typer.Option(
        help="Carrier (default: the order's shipment).")] = None,
    waybill: Annotated[str | None, typer.Option(
        help="Waybill (default: the order's shipment).")] = None,
    reason: Annotated[str | None, typer.Option(help="Why (default: the order's history).")] = None,
    grade: Annotated[str | None, typer.Option(
        help="QC grade A, B or C (default: the order's return).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Render an event's messages for an order from the projection (nothing is sent)."""
    from notify.templates import CHANNELS, EVENTS

    if status not in EVENTS:
        raise ConfigurationError(f"unknown event {status!r}; one of: {', '.join(EVENTS)}")
    if channel is not None and channel not in CHANNELS:
        raise ConfigurationError(f"unknown channel {channel!r}; one of: {', '.join(CHANNELS)}")
    templates, notify = _load(None)
    found = _cli().in_db(lambda conn: _order_facts(conn, order_id, status))
    if found is None:
        raise ConfigurationError(f"no order {order_id!r} (ids look like SHOP6200407294252; "
                                 "see `orderhub orders list`)")
    order, facts = found
    given = {"carrier": carrier, "waybill": waybill, "reason": reason, "qc_grade": grade}
    facts.update({k: v for k, v in given.items() if v is not None})
    lang = language or notify.languages.get(order.channel.value, notify.language)
    previews = [_preview(templates, order, status, c, lang, facts)
                for c in ((channel,) if channel else CHANNELS)]
    if as_json:
        _cli().print_json(previews)
        return
    typer.echo(f"{order.id} {status}; recipient {_recipient(order)}")
    for p in previews:
        _echo(p)


def _order_facts(conn: Any, order_id: str, event: str) -> tuple[Order, dict[str, str]] | None:
    """The order as projected, and what the event's variables need from its history."""
    from sqlalchemy import text

    from runtime.views import order_view
    from schemas.order import Order

    view = order_view(conn, order_id)
    if view is None:
        return None
    order = Order.model_validate({k: view[k] for k in Order.model_fields})
    shipped = [s for s in view["shipments"] if s["carrier"] or s["waybill"]]
    reasons = [e["data"].get("reason") for e in view["events"]
               if e["status"] == event and isinstance(e["data"], dict)]
    grade = conn.execute(text("SELECT grade FROM returns WHERE order_id = :id"),
                         {"id": order_id}).scalar()
    facts = {"carrier": shipped[-1]["carrier"] if shipped else None,
             "waybill": shipped[-1]["waybill"] if shipped else None,
             "reason": next((r for r in reversed(reasons) if r), None), "qc_grade": grade}
    return order, {k: str(v) for k, v in facts.items() if v}


def _preview(templates: TemplateSet, order: Order, event: str, channel: str, language: str,
             facts: dict[str, str]) -> dict[str, Any]:
    from notify.templates import order_variables, sms_segments, sms_sign

    t = templates.find(event, channel, language)
    if t is None:
        return {"channel": channel, "template": None}
    rendered = templates.render(t, order_variables(order, event, language=t.language, **facts))
    length = templates.sms_length(rendered) if channel == "sms" else len(rendered.text)
    counted = f"with {sms_sign(templates.sms_sign_name)}, {sms_segments(length)} SMS"
    return {"channel": channel, "template": t.id, "provider_template": t.provider_template,
            "text": rendered.text, "params": rendered.params, "page": rendered.page,
            "length": length, "counted": counted if channel == "sms" else ""}


def _echo(preview: dict[str, Any]) -> None:
    if preview["template"] is None:
        typer.echo(f"\n[{preview['channel']}] no template: skipped")
        return
    provider = f" {preview['provider_template']}" if preview["provider_template"] else ""
    typer.echo(f"\n[{preview['channel']}] {preview['template']}{provider}, "
               f"{preview['length']} chars {preview['counted']}".rstrip())
    typer.echo(f"  {preview['text']}")
    for name, value in preview["params"].items():
        typer.echo(f"  {name} = {value}")
    if preview["page"]:
        typer.echo(f"  page = {preview['page']}")


def _recipient(order: Order) -> str:
    """The buyer, masked: name as a message would show it, phone's last four digits only."""
    from notify.templates import masked_name

    recipient = order.recipient
    if recipient is None:
        return "no recipient"
    phone = (recipient.phone or "").strip()
    if not phone or "*" in phone:  # masked by the channel already
        shown = phone or "-"
    elif phone[0] in "~$#" or len(phone) > 20:
        shown = "encrypted"
    else:
        shown = "*" * 7 + phone[-4:]
    name = masked_name(recipient.name) or ("encrypted" if recipient.name else "-")
    return f"name {name}, phone {shown}"
