"""Where an order goes: coordinates for Chinese regions and countries, and great-circle distance."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from types import MappingProxyType

from normalize.regions import FULL_PROVINCE_NAMES, full_city, full_province

Point = tuple[float, float]
"""(latitude, longitude) in degrees."""

EARTH_RADIUS_KM = 6371.0088  # IUGG mean radius
_CHINA = frozenset({"CN", "CHN", "CHINA", "中国"})
_MIN_PREFIX = 2  # a one-character short form ("大") names no region unambiguously


@dataclass(frozen=True)
class Region:
    """A Chinese region: `level` is province, prefecture, or county (a district or county-level
    city that addresses put in the city field: 朝阳区 of 北京市, 仙桃市 of 湖北省)."""

    adcode: str
    name: str
    province: str
    level: str
    point: Point


@dataclass(frozen=True)
class _Gazetteer:
    regions: tuple[Region, ...]
    provinces: Mapping[str, Point]
    cities: Mapping[str, Point]
    places: tuple[Region, ...]  # every region below province level
    places_by_name: Mapping[str, tuple[Region, ...]]
    countries: Mapping[str, Point]


def locate(country: str | None, province: str | None, city: str | None) -> Point | None:
    """The best-known point for a destination: city, else province, else country; else None."""
    code = (country or "").strip().upper()
    if code and code not in _CHINA:
        return _gazetteer().countries.get(code)
    return _locate_in_china(province, city)


def distance_km(a: Point, b: Point) -> float:
    """Great-circle (haversine) distance between two (lat, lon) points, in kilometres."""
    (lat1, lon1), (lat2, lon2) = (map(math.radians, p) for p in (a, b))
    h = (math.sin((lat2 - lat1) / 2) ** 2
         + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2)
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, max(0.0, h))))


def regions() -> tuple[Region, ...]:
    """Every Chinese region with a location, in adcode order."""
    return _gazetteer().regions


def provinces() -> Mapping[str, Point]:
    """The 34 province-level regions by full name, at the seat of their government."""
    return _gazetteer().provinces


def cities() -> Mapping[str, Point]:
    """The prefecture-level regions (地级市, 地区, 自治州, 盟) by full name."""
    return _gazetteer().cities


def countries() -> Mapping[str, Point]:
    """Country centroids by ISO 3166-1 alpha-2 code."""
    return _gazetteer().countries


def _locate_in_china(province: str | None, city: str | None) -> Point | None:
    geo = _gazetteer()
    name = full_province(province)
    known = name if name in FULL_PROVINCE_NAMES else None
    place = _find_place(geo, known, city.strip() if city else "")
    if place is not None:
        return place
    return geo.provinces.get(known) if known else None


def _find_place(geo: _Gazetteer, province: str | None, city: str) -> Point | None:
    if not city:
        return None
    names = {city, full_city(city) or city}
    exact = _only_match((r for n in names for r in geo.places_by_name.get(n, ())), province)
    if exact is not None:
        return exact
    whole = full_province(city) or city
    if whole in geo.provinces:
        # 北京市 as the city of 北京市; a province sent in the city field stands for its centre.
        return geo.provinces[whole] if province in (None, whole) else None
    if len(city) < _MIN_PREFIX:
        return None
    # A short form: 延边 → 延边朝鲜族自治州, 阿坝 → 阿坝藏族羌族自治州.
    return _only_match((r for r in geo.places if r.name.startswith(city)), province)


def _only_match(places: Iterable[Region], province: str | None) -> Point | None:
    """The point of the one place in the province (in all China when it is unknown), if one."""
    found = [r.point for r in places if province in (None, r.province)]
    return found[0] if len(found) == 1 else None


@cache
def _gazetteer() -> _Gazetteer:
    regions = tuple(Region(row["adcode"], row["name"], row["province"], row["level"],
                           (float(row["latitude"]), float(row["longitude"])))
                    for row in _rows("cn_regions.csv"))
    places = tuple(r for r in regions if r.level != "province")
    by_name: dict[str, tuple[Region, ...]] = {}
    for place in places:
        by_name[place.name] = (*by_name.get(place.name, ()), place)
    countries = {row["iso2"]: (float(row["latitude"]), float(row["longitude"]))
                 for row in _rows("country_centroids.csv")}
    return _Gazetteer(
        regions=regions,
        provinces=MappingProxyType({r.name: r.point for r in regions if r.level == "province"}),
        cities=MappingProxyType({r.name: r.point for r in regions if r.level == "prefecture"}),
        places=places,
        places_by_name=MappingProxyType(by_name),
        countries=MappingProxyType(countries),
    )


def _rows(name: str) -> list[dict[str, str]]:
    text = files("allocate").joinpath("data", name).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))
