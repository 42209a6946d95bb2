from __future__ import annotations

import math
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from allocate.geo import (
    EARTH_RADIUS_KM,
    Point,
    cities,
    countries,
    distance_km,
    locate,
    provinces,
    regions,
)
from normalize.regions import FULL_PROVINCE_NAMES, full_city

MUNICIPALITIES = ("北京市", "天津市", "上海市", "重庆市")
# Well-known city centres (degrees); the data holds the seat of each city's government.
CENTRES = {
    "杭州市": (30.27, 120.15), "广州市": (23.13, 113.26), "乌鲁木齐市": (43.83, 87.62),
    "拉萨市": (29.65, 91.12), "哈尔滨市": (45.80, 126.53), "成都市": (30.57, 104.07),
    "西安市": (34.34, 108.94), "武汉市": (30.59, 114.31), "南京市": (32.06, 118.80),
    "深圳市": (22.54, 114.06), "长沙市": (28.23, 112.94), "呼和浩特市": (40.84, 111.75),
    "银川市": (38.49, 106.23), "三亚市": (18.25, 109.51), "延边朝鲜族自治州": (42.90, 129.51),
}
# Cities whose government moved to a new district, now up to ~0.2° from the old centre.
MOVED = {"沈阳市": (41.80, 123.43), "昆明市": (25.04, 102.71), "海口市": (20.04, 110.34)}
texts = st.none() | st.text(max_size=12) | st.sampled_from(
    ["浙江省", "杭州", "北京", "朝阳区", "CN", "us", " ", "延边", "市", "自治州"])
points = st.tuples(st.floats(-90, 90), st.floats(-180, 180))


def near(a: Point | None, b: Point, degrees: float) -> bool:
    return a is not None and abs(a[0] - b[0]) <= degrees and abs(a[1] - b[1]) <= degrees


def test_every_province_level_region_has_a_location() -> None:
    assert set(provinces()) == FULL_PROVINCE_NAMES
    for name in FULL_PROVINCE_NAMES:
        assert locate(None, name, None) == provinces()[name]


def test_every_prefecture_level_region_is_there_under_its_standard_name() -> None:
    assert len(cities()) >= 330
    suffixes = ("自治州", "地区", "盟", "市")
    kinds = Counter(next(s for s in suffixes if name.endswith(s)) for name in cities())
    assert kinds["自治州"] >= 30 and kinds["地区"] >= 7 and kinds["盟"] >= 3
    assert all(full_city(name) == name for name in cities())


def test_every_region_belongs_to_a_known_province_and_lies_near_its_centre() -> None:
    for region in regions():
        assert region.province in FULL_PROVINCE_NAMES
        assert region.adcode[:2] == _adcode(region.province)[:2]
        assert distance_km(region.point, provinces()[region.province]) < 1500, region


def test_every_prefecture_has_a_province_with_both_prefectures_and_provinces_unique() -> None:
    names = [r.name for r in regions() if r.level in ("province", "prefecture")]
    assert len(names) == len(set(names))
    with_prefectures = {r.province for r in regions() if r.level == "prefecture"}
    assert with_prefectures == FULL_PROVINCE_NAMES - {*MUNICIPALITIES, "香港特别行政区",
                                                      "澳门特别行政区", "台湾省"}


@pytest.mark.parametrize(("city", "centre"), sorted(CENTRES.items()))
def test_well_known_cities_are_within_a_tenth_of_a_degree(city: str, centre: Point) -> None:
    assert near(cities()[city], centre, 0.1)


@pytest.mark.parametrize(("city", "centre"), sorted(MOVED.items()))
def test_cities_with_a_relocated_government_are_within_a_fifth_of_a_degree(
        city: str, centre: Point) -> None:
    assert near(cities()[city], centre, 0.2)


def test_municipalities_and_special_regions_are_at_their_centres() -> None:
    assert near(locate(None, "北京市", None), (39.90, 116.40), 0.1)
    assert near(locate("CN", "上海", "上海市"), (31.23, 121.47), 0.1)
    assert near(locate(None, "天津市", "天津"), (39.13, 117.20), 0.1)
    assert near(locate(None, "重庆", None), (29.56, 106.55), 0.1)
    assert near(locate(None, "香港特别行政区", "九龙"), (22.30, 114.17), 0.1)
    assert near(locate(None, "澳门", None), (22.19, 113.54), 0.1)
    assert near(locate(None, "台湾", "台北市"), (25.04, 121.56), 0.1)


def test_the_city_wins_over_its_province() -> None:
    hangzhou = cities()["杭州市"]
    assert locate(None, "浙江省", "杭州市") == hangzhou
    assert locate("CN", "浙江", "杭州") == hangzhou
    assert locate("cn", None, "杭州") == hangzhou
    assert locate(None, "黑龙江省", "哈尔滨市") == cities()["哈尔滨市"]


def test_short_forms_of_prefectures_find_the_one_they_begin() -> None:
    assert locate(None, "吉林", "延边") == cities()["延边朝鲜族自治州"]
    assert locate(None, None, "大兴安岭") == cities()["大兴安岭地区"]
    assert locate(None, "四川", "阿坝") == cities()["阿坝藏族羌族自治州"]
    assert locate(None, None, "吉林") == cities()["吉林市"]


def test_districts_of_municipalities_and_county_level_cities_under_a_province_are_found() -> None:
    chaoyang = locate(None, "北京市", "朝阳区")
    assert near(chaoyang, (39.92, 116.44), 0.1) and chaoyang != provinces()["北京市"]
    assert locate(None, "辽宁省", "朝阳市") == cities()["朝阳市"]
    assert near(locate(None, "重庆市", "万州区"), (30.81, 108.41), 0.1)
    assert near(locate(None, "湖北", "仙桃"), (30.36, 113.42), 0.1)
    assert near(locate(None, "新疆", "石河子市"), (44.31, 86.08), 0.1)


def test_an_unknown_city_falls_back_to_its_province_centre() -> None:
    assert locate(None, "浙江省", "不存在市") == provinces()["浙江省"]
    assert locate(None, "浙江省", "广州市") == provinces()["浙江省"]
    assert locate(None, "山东省", "莱芜市") == provinces()["山东省"]
    assert locate(None, "浙江省", None) == provinces()["浙江省"]
    assert locate(None, "浙江省", "  ") == provinces()["浙江省"]


def test_an_ambiguous_short_form_without_a_province_is_not_guessed() -> None:
    assert locate(None, None, "大") is None
    assert locate(None, None, "黔") is None


def test_cross_border_orders_go_to_the_country_centroid() -> None:
    assert near(locate("US", None, None), (37.09, -95.71), 0.5)
    assert near(locate("de", "Bayern", "München"), (51.17, 10.45), 0.5)
    assert near(locate(" JP ", None, "Tokyo"), (36.20, 138.25), 0.5)
    assert locate("GB", "浙江省", "杭州市") == countries()["GB"]


def test_all_countries_have_a_plausible_centroid() -> None:
    assert len(countries()) >= 249
    some = {"CN", "US", "DE", "JP", "KR", "SG", "SS", "CW", "HK", "MO", "TW", "XK"}
    assert some <= set(countries())
    assert all(len(code) == 2 and code.isupper() for code in countries())
    assert all(-90 <= lat <= 90 and -180 <= lon <= 180 for lat, lon in countries().values())


def test_unknown_destinations_have_no_location() -> None:
    assert locate(None, None, None) is None
    assert locate("CN", "", "") is None
    assert locate(None, "火星", None) is None
    assert locate(None, "California", "Los Angeles") is None
    assert locate("ZZ", None, None) is None
    assert locate("United States", None, None) is None


@given(texts, texts, texts)
def test_any_text_gives_a_point_or_none(country: str | None, province: str | None,
                                        city: str | None) -> None:
    point = locate(country, province, city)
    assert point is None or (-90 <= point[0] <= 90 and -180 <= point[1] <= 180)


def test_known_distances() -> None:
    hangzhou, shanghai = locate(None, None, "杭州"), locate(None, "上海", None)
    beijing, guangzhou = locate(None, "北京", None), locate(None, None, "广州")
    assert hangzhou and shanghai and beijing and guangzhou
    assert distance_km(hangzhou, shanghai) == pytest.approx(165, abs=15)
    assert distance_km(beijing, guangzhou) == pytest.approx(1890, abs=40)
    assert distance_km((0.0, 0.0), (0.0, 180.0)) == pytest.approx(math.pi * EARTH_RADIUS_KM)
    assert distance_km((90.0, 0.0), (-90.0, 0.0)) == pytest.approx(math.pi * EARTH_RADIUS_KM)


@given(points, points)
def test_distance_is_symmetric_bounded_and_zero_to_itself(a: Point, b: Point) -> None:
    assert distance_km(a, a) == pytest.approx(0, abs=1e-6)
    assert distance_km(a, b) == pytest.approx(distance_km(b, a), abs=1e-6)
    assert 0 <= distance_km(a, b) <= math.pi * EARTH_RADIUS_KM + 1e-6


@given(points, points, points)
def test_distance_obeys_the_triangle_inequality(a: Point, b: Point, c: Point) -> None:
    # haversine loses ~0.1 m near antipodes (asin near 1), so allow a metre
    assert distance_km(a, c) <= distance_km(a, b) + distance_km(b, c) + 1e-3


def _adcode(province: str) -> str:
    return next(r.adcode for r in regions() if r.name == province and r.level == "province")
