"""Log ends and group lag for the benchmark, read so that they are right on Tansu 0.6.0.

See `runtime.kafka.log_ends`: Tansu answers ListOffsets(latest) with the base offset of the
partition's last record batch + 1, so ends come from the fetch path instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from runtime import kafka
from runtime.settings import Settings
from runtime.stages import STAGES, group_id

Ends = dict[tuple[str, int], int]


def log_ends(bootstrap: str, topics: Iterable[str], partitions: int) -> Ends:
    """Each partition's true end offset."""
    return kafka.log_ends(bootstrap, [(t, p) for t in topics for p in range(partitions)])


def stage_groups(settings: Settings, names: Iterable[str]) -> dict[str, list[str]]:
    """Consumer group → input topics of the named stages."""
    prefix, wanted = settings.kafka.topic_prefix, set(names)
    return {group_id(settings, n): [s.full_name(prefix) for s in entry.sources]
            for n, entry in STAGES.items() if n in wanted}


def group_lag(bootstrap: str, groups: Mapping[str, Iterable[str]], ends: Ends) -> int:
    """Messages below the given ends that the groups have not committed yet."""
    behind = 0
    for group, topics in groups.items():
        wanted = set(topics)
        tps = [tp for tp in ends if tp[0] in wanted]
        for tp, offset in kafka.committed_offsets(bootstrap, group, tps).items():
            behind += max(ends[tp] - max(offset, 0), 0)
    return behind
