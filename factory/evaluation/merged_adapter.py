"""A PEFT/LoRA adapter folder as a plain model folder a server can load: base + adapter, merged once.

Model servers take a model folder, so `--model ADAPTER_DIR` is merged into the report folder's
`.work/merged/NAME-<digest>` (digest of the adapter's files and its base) on first use, in a child
process: the eval process never holds the weights, and the merge's memory is returned when it ends. A
re-run into the same report folder reuses it; deleting `.work` frees the space.
The folder gets the adapter's tokenizer when the adapter has one (its chat template), else the base's.

    python -m factory.evaluation.merged_adapter ADAPTER_DIR TARGET_DIR    (what `merged_dir` runs)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from factory.core.errors import UserError
from factory.core.hashing import folder_fingerprint
from factory.core.models import bundled_model_dir, load_source, model_revision

_CACHE_VERSION = "v1"


def adapter_base(folder: Path) -> tuple[str, str | None]:
    """(base model, revision) of an adapter folder; `bundled` when `safepref train` recorded that the
    bundled model was its base (`base_model.json`), or when the base is the bundled model's folder."""
    try:
        recorded = json.loads((folder / "base_model.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        recorded = None
    if isinstance(recorded, dict) and recorded.get("model") == "bundled":
        return "bundled", None
    where = str(folder / "adapter_config.json")
    try:
        config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read adapter config: {exc}", where=where) from None
    base = config.get("base_model_name_or_path") if isinstance(config, dict) else None
    if not isinstance(base, str) or not base:
        raise UserError("base_model_name_or_path is missing", where=where)
    if base == str(bundled_model_dir()):
        return "bundled", None
    revision = config.get("revision")
    return base, revision if isinstance(revision, str) else None


def merged_dir(folder: Path, work_dir: Path) -> Path:
    """Where the merged model of the adapter in `folder` lives under `work_dir` (it may not exist yet)."""
    base, revision = adapter_base(folder)
    identity = f"{_CACHE_VERSION}\0{folder_fingerprint(folder)}\0{base}\0{revision}"
    if base == "bundled":
        identity += f"\0{model_revision(base, revision)}"
    digest = hashlib.sha256(identity.encode()).hexdigest()[:20]
    return work_dir / "merged" / f"{folder.resolve().name}-{digest}"


def ensure_merged(folder: Path, work_dir: Path) -> Path:
    """The merged model folder of the adapter in `folder`, merging it first if needed (in a child
    process; the folder appears by an atomic rename, so a killed merge leaves nothing half written)."""
    target = merged_dir(folder, work_dir)
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".merge-", dir=target.parent))
    try:
        package_root = str(Path(__file__).resolve().parents[2])  # the child imports this package
        path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": path}
        done = subprocess.run(
            [sys.executable, "-m", "factory.evaluation.merged_adapter", str(folder), str(tmp)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=env,
        )
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            reason = lines[-1].removeprefix("error: ") if lines else f"exit code {done.returncode}"
            raise UserError(f"cannot merge the adapter: {reason}", where=str(folder))
        try:
            tmp.rename(target)
        except OSError:  # another eval merged it first
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _merge(folder: Path, out: Path) -> None:
    """Load the base in float32, apply and merge the adapter, save in the base's dtype with a tokenizer."""
    import torch
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    base, revision = adapter_base(folder)
    source = load_source(base)
    try:
        saved_dtype = getattr(AutoConfig.from_pretrained(source, revision=revision), "dtype", None)
        model = AutoModelForCausalLM.from_pretrained(source, revision=revision, dtype=torch.float32)
        merged = PeftModel.from_pretrained(model, str(folder)).merge_and_unload()
    except (OSError, ValueError, RuntimeError) as exc:
        raise UserError(str(exc).splitlines()[0]) from None
    if isinstance(saved_dtype, str):
        saved_dtype = getattr(torch, saved_dtype, None)
    if isinstance(saved_dtype, torch.dtype):
        merged = merged.to(saved_dtype)
    merged.save_pretrained(out)
    own = any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json"))
    tokenizer = AutoTokenizer.from_pretrained(
        str(folder) if own else source, revision=None if own else revision
    )
    tokenizer.save_pretrained(out)


def main(argv: list[str]) -> int:
    folder, out = Path(argv[0]), Path(argv[1])
    try:
        _merge(folder, out)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
