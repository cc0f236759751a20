"""transformers interop, both directions (run by tests/interop.rs, CPU, fp32 and bf16).

Usage: interop.py DIR. DIR/peirce is a model folder peirce saved, DIR/peirce_logits.safetensors
holds the token ids it ran and its logits. This script checks that transformers loads the
folder (model and tokenizer) and gives the same ids and logits, then builds a randomly
initialized Qwen2 in transformers and saves it, sharded, to DIR/hf (fp32) and DIR/hf_bf16,
with its logits on the same ids, for peirce to load and compare. Prints one JSON line.
"""
import json
import sys

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

root = sys.argv[1]
result = {}

# peirce -> transformers
stored = load_file(f"{root}/peirce_logits.safetensors")
ids = stored["ids"].view(1, -1)
text = open(f"{root}/text.txt", encoding="utf-8").read()
tokenizer = AutoTokenizer.from_pretrained(f"{root}/peirce")
hf_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
if hf_ids != ids[0].tolist():
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(f"{root}/peirce/tokenizer.json").encode(text).ids
    raise AssertionError(
        f"token ids differ:\ntransformers {hf_ids}\ntokenizers   {raw}\npeirce       {ids[0].tolist()}\n"
        f"{tokenizer.backend_tokenizer.pre_tokenizer} {type(tokenizer)}"
    )
assert tokenizer.decode(hf_ids) == text, "decoded text differs"
model = AutoModelForCausalLM.from_pretrained(f"{root}/peirce", dtype=torch.float32)
model.eval()
with torch.no_grad():
    logits = model(ids, attention_mask=torch.ones_like(ids)).logits[0]
diff = (logits - stored["logits"]).abs().max().item()
result["peirce_to_transformers_max_diff"] = diff
result["logit_scale"] = stored["logits"].abs().max().item()
assert diff < 1e-4, f"logits differ by {diff}"

# transformers -> peirce
config = Qwen2Config(
    vocab_size=model.config.vocab_size,
    hidden_size=48,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=6,
    num_key_value_heads=2,
    max_position_embeddings=512,
    rope_theta=1000000.0,
    tie_word_embeddings=False,
    initializer_range=0.1,
)
torch.manual_seed(0)
theirs = Qwen2ForCausalLM(config).eval()
for name, dtype in [("hf", torch.float32), ("hf_bf16", torch.bfloat16)]:
    theirs = theirs.to(dtype)
    theirs.save_pretrained(f"{root}/{name}", max_shard_size="40KB")
    tokenizer.save_pretrained(f"{root}/{name}")
    with torch.no_grad():
        out = theirs(ids, attention_mask=torch.ones_like(ids)).logits[0].float()
    save_file({"ids": ids[0].contiguous(), "logits": out.contiguous()}, f"{root}/{name}_logits.safetensors")
result["transformers_config_rope"] = getattr(theirs.config, "rope_parameters", None) or theirs.config.rope_theta
print(json.dumps(result, default=str))
