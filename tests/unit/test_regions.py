from __future__ import annotations

from normalize.regions import FULL_PROVINCE_NAMES, full_city, full_province


def test_short_province_names_become_their_full_standard_names() -> None:
    assert full_province("广东") == "广东省"
    assert full_province("内蒙古") == "内蒙古自治区"
    assert full_province("上海") == "上海市"
    assert full_province(" 新疆 ") == "新疆维吾尔自治区"


def test_full_names_and_unknown_names_are_kept_as_sent() -> None:
    assert full_province("浙江省") == "浙江省"
    assert full_province("California") == "California"
    assert full_province("") is None


def test_there_are_34_province_level_regions() -> None:
    assert len(FULL_PROVINCE_NAMES) == 34


def test_cities_get_their_suffix_only_when_missing() -> None:
    assert full_city("杭州") == "杭州市"
    assert full_city("杭州市") == "杭州市"
    assert full_city("延边朝鲜族自治州") == "延边朝鲜族自治州"
    assert full_city("大兴安岭地区") == "大兴安岭地区"
    assert full_city("New York") == "New York"
