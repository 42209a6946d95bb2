"""Chinese region names in their full standard form (广东 → 广东省, 杭州 → 杭州市)."""

from __future__ import annotations

_SPECIAL = {
    "北京": "北京市", "天津": "天津市", "上海": "上海市", "重庆": "重庆市",
    "内蒙古": "内蒙古自治区", "广西": "广西壮族自治区", "西藏": "西藏自治区",
    "宁夏": "宁夏回族自治区", "新疆": "新疆维吾尔自治区",
    "香港": "香港特别行政区", "澳门": "澳门特别行政区",
}
_PROVINCES = (
    "河北", "山西", "辽宁", "吉林", "黑龙江", "江苏", "浙江", "安徽", "福建", "江西", "山东",
    "河南", "湖北", "湖南", "广东", "海南", "四川", "贵州", "云南", "陕西", "甘肃", "青海", "台湾",
)
PROVINCES: dict[str, str] = {**_SPECIAL, **{p: f"{p}省" for p in _PROVINCES}}
FULL_PROVINCE_NAMES: frozenset[str] = frozenset(PROVINCES.values())
_CITY_SUFFIXES = ("市", "自治州", "盟", "地区", "区", "县", "旗")


def full_province(name: str | None) -> str | None:
    """The standard full name of a province-level region; unknown names are kept as sent."""
    if name is None or not name.strip():
        return None
    text = name.strip()
    if text in FULL_PROVINCE_NAMES:
        return text
    return PROVINCES.get(text, text)


def full_city(name: str | None) -> str | None:
    """A prefecture-level city with its suffix (杭州 → 杭州市); names with a suffix are kept."""
    if name is None or not name.strip():
        return None
    text = name.strip()
    if text.endswith(_CITY_SUFFIXES) or not _is_chinese(text):
        return text
    return f"{text}市"


def _is_chinese(text: str) -> bool:
    return all("\u4e00" <= ch <= "\u9fff" for ch in text)
