"""--limit: seeded, stratified by the group columns, never the first N."""

from __future__ import annotations

from collections import Counter

import pytest

from vlmface.data import load_samples, stratified_limit
from vlmface.tasks import load_task


@pytest.fixture(scope="module")
def utk_samples(utkface_dir):
    return load_samples(load_task("utkface"), data_dir=utkface_dir).samples


GROUPS = ["race5", "gender", "age5"]


def test_same_seed_same_ids_other_seed_other_ids(utk_samples):
    first = [s.id for s in stratified_limit(utk_samples, GROUPS, 500, seed=0)]
    again = [s.id for s in stratified_limit(list(reversed(utk_samples)), GROUPS, 500, seed=0)]
    other = [s.id for s in stratified_limit(utk_samples, GROUPS, 500, seed=1)]
    assert len(first) == len(set(first)) == 500
    assert first == again
    assert len(set(first) & set(other)) < 200


def test_limit_is_not_the_first_n(utk_samples):
    chosen = {s.id for s in stratified_limit(utk_samples, GROUPS, 500, seed=0)}
    first_500 = {s.id for s in sorted(utk_samples, key=lambda s: s.id)[:500]}
    assert len(chosen & first_500) < 100


def test_race_mix_follows_the_full_set(utk_samples):
    full = Counter(s.labels["race5"] for s in utk_samples)
    chosen = Counter(s.labels["race5"] for s in stratified_limit(utk_samples, GROUPS, 500, seed=0))
    for race, count in full.items():
        expected = 500 * count / len(utk_samples)
        assert abs(chosen[race] - expected) <= 3, (race, chosen[race], expected)
    by_combo = Counter((s.labels["race5"], s.labels["gender"]) for s in stratified_limit(utk_samples, GROUPS, 500))
    assert by_combo[("Black", "Female")] == pytest.approx(500 * 204 / 9778, abs=3)


def test_limit_above_size_keeps_everything(utk_samples):
    assert len(stratified_limit(utk_samples[:50], GROUPS, 500)) == 50
    with pytest.raises(ValueError):
        stratified_limit(utk_samples, GROUPS, 0)
