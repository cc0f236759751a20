"""The verl round trip of peirce's exported datasets (run by tests/verl.rs in the verl
virtualenv of scripts/verl.sh; docs/architecture.md, "The verl export").

    python verl_check.py TOKENIZER_DIR CORPUS.jsonl NAME=DATASET_DIR ...

For every dataset folder: verl's own RLHFDataset loads `train.parquet` and `test.parquet`
with the dataset's tokenizer and the exported chat template, and the prompt verl's rollout
builds from each row (its Continuous Token builder, as the agent loop does) decodes to
exactly peirce's rendered prompt (the `prompt` of the same row in the JSONL files); so does
the paper's fork's reading (the first message's content, tokenized as it is), token for
token. Then verl's own loader loads the exported `reward.py`, and every corpus line (written
by the Rust side with peirce's scores), logic tasks and boxed math alike, scores exactly as
peirce scored it; every perfect response built from a ground truth scores full marks (+3 for
a logic task, 1 for boxed math). Prints one JSON summary line; any mismatch exits non-zero
naming it.
"""

import json
import sys
import tempfile
from pathlib import Path

from omegaconf import OmegaConf
from transformers import AutoTokenizer
from verl.trainer.ppo.reward import get_custom_reward_fn
from verl.utils.dataset.rl_dataset import RLHFDataset
from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder


def fail(message):
    print(f"verl round trip: {message}", file=sys.stderr)
    sys.exit(1)


def check_prompts(name, folder, tokenizer, model_type, cache):
    template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    config = OmegaConf.create(
        {
            "prompt_key": "prompt",
            "max_prompt_length": 1_000_000,
            "filter_overlong_prompts": True,
            "filter_overlong_prompts_workers": 1,
            "apply_chat_template_kwargs": {"chat_template": template},
            "cache_dir": cache,
        }
    )
    builder = create_continuous_token_builder(
        tokenizer,
        hf_model_type=model_type,
        chat_template_kwargs=dict(config.apply_chat_template_kwargs),
    )
    checked = 0
    for split in ("train", "test"):
        records = [json.loads(line) for line in (folder / f"{split}.jsonl").read_text(encoding="utf-8").split("\n") if line.strip()]
        dataset = RLHFDataset(data_files=str(folder / f"{split}.parquet"), tokenizer=tokenizer, config=config)
        if len(dataset) != len(records):
            fail(f"{name}/{split}: verl kept {len(dataset)} rows of {len(records)}")
        for index, record in enumerate(records):
            row = dataset[index]
            if row["extra_info"]["id"] != record["id"]:
                fail(f"{name}/{split} row {index}: id {row['extra_info']['id']} != {record['id']}")
            ids = builder.build_initial_tokens(row["raw_prompt"])
            verl_prompt = tokenizer.decode(ids, skip_special_tokens=False)
            if verl_prompt != record["prompt"]:
                fail(f"{name}/{split} row {index}: verl's prompt\n{verl_prompt!r}\n!= peirce's\n{record['prompt']!r}")
            # The paper's fork: the first message's content, tokenized as it is.
            fork_ids = tokenizer(row["raw_prompt"][0]["content"], add_special_tokens=False)["input_ids"]
            if list(fork_ids) != list(ids):
                fail(f"{name}/{split} row {index}: the fork's tokens differ from verl's")
            checked += 1
    return checked


def main():
    tokenizer_dir, corpus_path, *datasets = sys.argv[1:]
    folders = dict(item.split("=", 1) for item in datasets)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model_type = json.loads((Path(tokenizer_dir) / "config.json").read_text(encoding="utf-8"))["model_type"]
    summary = {"prompts": 0, "scored": 0, "perfect": 0, "boxed": 0}
    with tempfile.TemporaryDirectory() as cache:
        for name, folder in folders.items():
            summary["prompts"] += check_prompts(name, Path(folder), tokenizer, model_type, cache)
    rewards = {}
    for name, folder in folders.items():
        config = OmegaConf.create(
            {"reward": {"custom_reward_function": {"path": str(Path(folder) / "reward.py"), "name": "compute_score"}}}
        )
        rewards[name] = get_custom_reward_fn(config)
    # JSON lines end at "\n" only: str.splitlines() would also split at the U+2028, U+0085 ...
    # that JSON leaves unescaped inside strings.
    for number, line in enumerate(Path(corpus_path).read_text(encoding="utf-8").split("\n"), 1):
        case = json.loads(line)
        reward = rewards[case["dataset"]]
        arguments = dict(
            data_source=case["data_source"],
            solution_str=case["response"],
            ground_truth=case["ground_truth"],
            extra_info=case["extra_info"],
        )
        boxed = case["extra_info"]["answer_kind"] == "boxed"
        result = reward(**arguments)
        expected = (case["total"], 1.0 if case["format_ok"] else 0.0, 1.0 if case["answer"] == "correct" else 0.0)
        got = (result["score"], result["format_ok"], result["acc"])
        if got != expected:
            fail(f"corpus line {number} ({case['dataset']}): reward.py gives {got}, peirce {expected}: {case['response']!r} against {case['ground_truth']!r}")
        if case["perfect"]:
            best = 1.0 if boxed else 3.0
            if result["score"] != best:
                fail(f"corpus line {number}: a ground truth scores {result['score']}, not {best}")
            summary["perfect"] += 1
        summary["scored"] += 1
        summary["boxed"] += boxed
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
