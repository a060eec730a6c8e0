"""check_card: the card's YAML against the Hub's vocabularies and the folder's files, offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from factory.dataset.card_check import check_card, size_categories, size_category
from tests.support.hub_fixtures import build_dataset_folder


def test_a_well_formed_folder_has_no_problems(tmp_path: Path) -> None:
    assert check_card(build_dataset_folder(tmp_path / "ok", shards=2)) == []


@pytest.mark.parametrize(
    ("card_meta", "expected"),
    [
        ({"license": "free-for-all"}, "license 'free-for-all' is not a Hub licence id"),
        ({"license": "apache-2.0"}, "differs from manifest.json's 'cc-by-nc-4.0'"),
        ({"size_categories": ["1K<n<10K"]}, "does not fit the default config's 8 rows ('n<1K')"),
        ({"size_categories": ["small"]}, "must be one of the official buckets"),
        ({"task_categories": ["chatting"]}, "task category 'chatting' is not a Hub task category"),
        ({"task_categories": None}, "task_categories is missing"),
        ({"language": ["english"]}, "language 'english' is not a known language code"),
        ({"pretty_name": None}, "pretty_name is missing"),
        ({"annotations_creators": ["robots"]}, "annotations_creators 'robots'"),
        ({"configs": None}, "configs is missing"),
        (
            {
                "configs": [
                    {
                        "config_name": "pairs",
                        "data_files": [{"split": "train", "path": "pairs/train-*.parquet"}],
                    }
                ]
            },
            "exactly one config must be `default: true`",
        ),
        (
            {
                "configs": [
                    {
                        "config_name": "pairs",
                        "default": True,
                        "data_files": [{"split": "train", "path": "pairs/train-*.parquet"}],
                    }
                ]
            },
            "splits ['train'] differ from manifest.json's ['test', 'train']",
        ),
        (
            {
                "configs": [
                    {
                        "config_name": "pairs",
                        "default": True,
                        "data_files": [
                            {"split": "train", "path": "pairs/*.parquet"},
                            {"split": "test", "path": "pairs/test-*.parquet"},
                        ],
                    }
                ]
            },
            "split 'train': data_files ['pairs/*.parquet'] match ['pairs/test-00000-of-00001.parquet', ",
        ),
    ],
)
def test_each_card_problem_is_named(tmp_path: Path, card_meta: dict[str, object], expected: str) -> None:
    problems = check_card(build_dataset_folder(tmp_path / "bad", card_meta=card_meta))
    assert any(expected in p for p in problems), problems
    assert all(p.startswith("README.md: ") for p in problems)


def test_a_stray_shard_on_disk_is_caught(tmp_path: Path) -> None:
    folder = build_dataset_folder(tmp_path / "stray")
    (folder / "pairs/train-00009-of-00010.parquet").write_bytes(b"PAR1")
    problems = check_card(folder)
    assert any("pairs/train-00009-of-00010.parquet" in p and "on disk" in p for p in problems), problems


def test_a_card_without_yaml_is_refused(tmp_path: Path) -> None:
    folder = build_dataset_folder(tmp_path / "plain")
    (folder / "README.md").write_text("# Just a title\n")
    assert check_card(folder) == ["README.md: no YAML header (the card must start with `---`)"]


def test_size_category_follows_the_official_buckets() -> None:
    buckets = size_categories()
    samples = [0, 999, 1_000, 9_999, 10_000, 99_999, 100_000, 999_999, 1_000_000]
    assert [size_category(n) for n in samples] == [
        "n<1K", "n<1K", "1K<n<10K", "1K<n<10K", "10K<n<100K", "10K<n<100K", "100K<n<1M", "100K<n<1M", "1M<n<10M",
    ]  # fmt: skip
    assert all(size_category(10**k) in buckets for k in range(14))
