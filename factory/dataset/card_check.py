"""Offline checks of a dataset card's YAML header against the Hub's vocabularies and the folder's files."""

from __future__ import annotations

import fnmatch
import json
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from factory.core.config_files import BoundedLoader
from factory.core.dataset_folder import read_manifest
from factory.core.errors import UserError

HARMFUL_TAG = "not-for-all-audiences"

# Licence ids as the Hub spells them (the subset a synthetic dataset plausibly carries; extend as needed).
# Kept here because no library has them: huggingface_hub 2.4 ships no licence or task vocabulary (the Hub
# checks them server-side, `DatasetCard.validate` -> /api/validate-yaml), and datasets 5.2 ships only
# languages, creators and size buckets (read below) plus a deprecated task list without e.g. text-ranking.
HUB_LICENSES = frozenset(
    {
        "apache-2.0", "mit", "openrail", "bigscience-openrail-m", "creativeml-openrail-m", "bigcode-openrail-m",
        "afl-3.0", "artistic-2.0", "bsl-1.0", "bsd", "bsd-2-clause", "bsd-3-clause", "bsd-3-clause-clear",
        "c-uda", "cc", "cc0-1.0", "cc-by-2.0", "cc-by-2.5", "cc-by-3.0", "cc-by-4.0", "cc-by-sa-3.0",
        "cc-by-sa-4.0", "cc-by-nc-2.0", "cc-by-nc-3.0", "cc-by-nc-4.0", "cc-by-nd-4.0", "cc-by-nc-nd-3.0",
        "cc-by-nc-nd-4.0", "cc-by-nc-sa-2.0", "cc-by-nc-sa-3.0", "cc-by-nc-sa-4.0", "cdla-sharing-1.0",
        "cdla-permissive-1.0", "cdla-permissive-2.0", "wtfpl", "ecl-2.0", "epl-1.0", "epl-2.0", "etalab-2.0",
        "eupl-1.1", "eupl-1.2", "agpl-3.0", "gfdl", "gpl", "gpl-2.0", "gpl-3.0", "lgpl", "lgpl-2.1",
        "lgpl-3.0", "isc", "h-research", "intel-research", "lppl-1.3c", "ms-pl", "apple-ascl", "apple-amlr",
        "mpl-2.0", "odc-by", "odbl", "openmdw-1.0", "openrail++", "osl-3.0", "postgresql", "ofl-1.1",
        "ncsa", "unlicense", "zlib", "pddl", "lgpl-lr", "deepfloyd-if-license", "fair-noncommercial-research-license",
        "llama2", "llama3", "llama3.1", "llama3.2", "llama3.3", "llama4", "gemma", "unknown", "other",
    }
)  # fmt: skip

# Task categories the Hub lists for datasets (the text and tabular ones a preference dataset could use).
HUB_TASK_CATEGORIES = frozenset(
    {
        "text-classification", "token-classification", "table-question-answering", "question-answering",
        "zero-shot-classification", "translation", "summarization", "feature-extraction", "text-generation",
        "fill-mask", "sentence-similarity", "text-ranking", "text-retrieval", "table-to-text",
        "multiple-choice", "reinforcement-learning", "tabular-classification", "tabular-regression",
        "time-series-forecasting", "graph-ml", "robotics", "other",
    }
)  # fmt: skip


def _resource_json(name: str) -> Any:
    # datasets ships the official vocabularies; read them as data files so `datasets` is not imported.
    return json.loads(resources.files("datasets.utils.resources").joinpath(name).read_text())


def size_categories() -> list[str]:
    """The official `size_categories` buckets, smallest first ("unknown" first)."""
    return list(_resource_json("size_categories.json"))


def size_category(num_rows: int) -> str:
    """The official bucket holding `num_rows` (e.g. 500 -> "n<1K")."""
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]
    bounds += [(10**7, "1M<n<10M"), (10**8, "10M<n<100M"), (10**9, "100M<n<1B"), (10**10, "1B<n<10B")]
    bounds += [(10**11, "10B<n<100B"), (10**12, "100B<n<1T")]
    for bound, name in bounds:
        if num_rows < bound:
            return name
    return "n>1T"


def split_card(text: str) -> tuple[dict[str, Any] | None, str]:
    """The card's YAML header as a mapping (None when absent) and the body after it."""
    if not text.startswith("---"):
        return None, text
    end = text.find("\n---", 3)
    if end < 0:
        raise ValueError("the YAML header has no closing `---`")
    header = yaml.load(text[3:end], Loader=BoundedLoader) or {}  # a SafeLoader with bounds
    if not isinstance(header, dict):
        raise ValueError("the YAML header is not a mapping")
    body = text[end + 4 :]
    return header, body.lstrip("\n")


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def check_card_text(text: str, manifest: dict[str, Any] | None, folder: Path | None = None) -> list[str]:
    """Problems with a card's YAML; cross-checks against `manifest` (its JSON form) and files under `folder`."""
    try:
        meta, _ = split_card(text)
    except (ValueError, yaml.YAMLError) as exc:
        return [f"README.md: {str(exc).splitlines()[0]}"]
    if meta is None:
        return ["README.md: no YAML header (the card must start with `---`)"]
    problems: list[str] = []

    license_id = meta.get("license")
    if not isinstance(license_id, str) or license_id not in HUB_LICENSES:
        problems.append(
            f"README.md: license {license_id!r} is not a Hub licence id (e.g. cc-by-nc-4.0, apache-2.0)"
        )
    elif manifest is not None and manifest.get("license") != license_id:
        problems.append(
            f"README.md: license {license_id!r} differs from manifest.json's {manifest.get('license')!r}"
        )

    if not isinstance(meta.get("pretty_name"), str) or not meta["pretty_name"].strip():
        problems.append("README.md: pretty_name is missing")

    languages = _as_list(meta.get("language"))
    known_languages = _resource_json("languages.json")
    problems += [
        f"README.md: language {lang!r} is not a known language code"
        for lang in languages
        if lang not in known_languages
    ]

    tasks = _as_list(meta.get("task_categories"))
    if not tasks:
        problems.append("README.md: task_categories is missing")
    problems += [
        f"README.md: task category {t!r} is not a Hub task category"
        for t in tasks
        if t not in HUB_TASK_CATEGORIES
    ]

    sizes = _as_list(meta.get("size_categories"))
    official = size_categories()
    if len(sizes) != 1 or sizes[0] not in official:
        problems.append(
            f"README.md: size_categories must be one of the official buckets {official}, got {sizes}"
        )
    elif manifest is not None:
        # The bucket describes the default config (the one `load_dataset(repo)` returns), as factory/dataset/card.py does.
        default = [c for c in manifest["configs"].values() if c.get("default")]
        rows = sum(s["num_rows"] for s in default[0]["splits"].values()) if default else 0
        if default and sizes[0] != size_category(rows):
            problems.append(
                f"README.md: size_categories {sizes[0]!r} does not fit the default config's {rows} rows "
                f"({size_category(rows)!r})"
            )

    creators = _resource_json("creators.json")["annotations"]
    for creator in _as_list(meta.get("annotations_creators")):
        if creator not in creators:
            problems.append(f"README.md: annotations_creators {creator!r} is not one of {creators}")

    problems += _check_configs(meta.get("configs"), manifest, folder)
    return problems


def _check_configs(configs: Any, manifest: dict[str, Any] | None, folder: Path | None) -> list[str]:
    if not isinstance(configs, list) or not configs:
        return ["README.md: configs is missing (one entry per config with data_files per split)"]
    problems: list[str] = []
    defaults = [c.get("config_name") for c in configs if isinstance(c, dict) and c.get("default") is True]
    if len(defaults) != 1:
        problems.append(f"README.md: exactly one config must be `default: true`, got {defaults or 'none'}")
    wanted = manifest["configs"] if manifest is not None else None
    seen: set[str] = set()
    for i, config in enumerate(configs):
        name = config.get("config_name") if isinstance(config, dict) else None
        if not isinstance(name, str):
            problems.append(f"README.md: configs[{i}] has no config_name")
            continue
        seen.add(name)
        files = config.get("data_files")
        if not isinstance(files, list) or not all(
            isinstance(f, dict) and "split" in f and "path" in f for f in files
        ):
            problems.append(f"README.md: config {name!r}: data_files must be a list of {{split, path}}")
            continue
        if wanted is None:
            continue
        if name not in wanted:
            problems.append(f"README.md: config {name!r} is not in manifest.json")
            continue
        if (name in defaults) != bool(wanted[name].get("default")):
            problems.append(f"README.md: config {name!r}: `default` differs from manifest.json")
        splits = {f["split"]: _as_list(f["path"]) for f in files}
        if set(splits) != set(wanted[name]["splits"]):
            problems.append(
                f"README.md: config {name!r} splits {sorted(splits)} differ from manifest.json's {sorted(wanted[name]['splits'])}"
            )
            continue
        for split, patterns in splits.items():
            listed = sorted(wanted[name]["splits"][split]["files"])
            matched = sorted({f for f in listed for p in patterns if fnmatch.fnmatchcase(f, p)})
            if matched != listed:
                problems.append(
                    f"README.md: config {name!r} split {split!r}: data_files {patterns} do not match {listed}"
                )
            if folder is not None:
                on_disk = sorted(
                    p.relative_to(folder).as_posix()
                    for pat in patterns
                    for p in folder.glob(pat)
                    if p.is_file()
                )
                if on_disk != listed:
                    problems.append(
                        f"README.md: config {name!r} split {split!r}: data_files {patterns} match {on_disk} on disk, "
                        f"manifest.json lists {listed}"
                    )
    if wanted is not None:
        problems += [
            f"README.md: config {n!r} from manifest.json has no entry in configs"
            for n in sorted(set(wanted) - seen)
        ]
    return problems


def check_card(folder: Path) -> list[str]:
    """Problems with `folder`/README.md's YAML (licence, size bucket, task categories, configs vs files); [] = ok."""
    folder = Path(folder)
    readme = folder / "README.md"
    if not readme.is_file():
        return [f"{readme}: missing"]
    manifest: dict[str, Any] | None = None
    problems: list[str] = []
    try:
        manifest = read_manifest(folder).model_dump(mode="json", by_alias=True)
    except UserError as exc:
        problems.append(f"{exc}; configs not cross-checked")
    return problems + check_card_text(readme.read_text(encoding="utf-8"), manifest, folder)
