#!/usr/bin/env python3
"""The Python side of `scripts/gpu-bench`: the same work as `peirce-worker bench`, done with
Hugging Face `transformers` and PyTorch eager, printed as one JSON line.

Generation: a randomly initialized `Qwen2ForCausalLM` (sdpa attention) runs
`model.generate` on the same batch of equal-length random prompts, greedy (or sampled with
`--temperature`), with no end-of-sequence id, so every row gets exactly `--new-tokens`.

Training: one REINFORCE++ step written as `torch/src/train.rs` (`policy_step`) and
`rl.rs` write it, in plain PyTorch eager: per micro-batch a no-grad forward of the frozen
reference, a forward and backward of the policy (the head and log-softmax run `chunk`
positions at a time), the clipped-ratio loss with the k3 KL and the entropy bonus, then
global gradient-norm clipping and `torch.optim.AdamW` (its default implementation). The
host reads the loss parts once per micro-batch, as the Rust step does.

It measures wall-clock time after warm-up with the device synchronized around each timing;
it does not compile anything (`torch.compile`, static caches): eager is the reference.
"""

import argparse
import json
import time

import torch
import transformers
from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM


def qwen2_config(preset):
    """The shapes of `peirce-worker bench --preset`."""
    if preset == "qwen2-0.5b":
        shape = dict(
            vocab_size=151936, hidden_size=896, intermediate_size=4864,
            num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
            max_position_embeddings=32768, rms_norm_eps=1e-6, rope_theta=1e6,
        )
    elif preset == "qwen2.5-1.5b":
        shape = dict(
            vocab_size=151936, hidden_size=1536, intermediate_size=8960,
            num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
            max_position_embeddings=32768, rms_norm_eps=1e-6, rope_theta=1e6,
        )
    elif preset == "qwen2.5-7b":
        shape = dict(
            vocab_size=152064, hidden_size=3584, intermediate_size=18944,
            num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
            max_position_embeddings=32768, rms_norm_eps=1e-6, rope_theta=1e6,
        )
    elif preset == "tiny":
        shape = dict(
            vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, rope_theta=1e4, rms_norm_eps=1e-6,
        )
    else:
        raise SystemExit(f"unknown preset `{preset}` (qwen2-0.5b, qwen2.5-1.5b, qwen2.5-7b, tiny)")
    return Qwen2Config(
        **shape, tie_word_embeddings=preset != "qwen2.5-7b", hidden_act="silu", initializer_range=0.02,
        use_sliding_window=False, attention_dropout=0.0, use_cache=True,
    )


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="qwen2-0.5b")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bf16")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=512)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--warmup-tokens", type=int, default=32)
    parser.add_argument("--sample-iterations", type=int, default=1)
    parser.add_argument("--train-rows", type=int, default=64)
    parser.add_argument("--train-prompt-tokens", type=int, default=64)
    parser.add_argument("--response-tokens", type=int, default=512)
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--train-warmup", type=int, default=1)
    parser.add_argument("--train-iterations", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--skip-sample", action="store_true")
    parser.add_argument("--skip-train", action="store_true")
    return parser.parse_args()


DTYPES = {
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp32": torch.float32, "float32": torch.float32, "float": torch.float32,
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
}


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_model(config, device, dtype, seed):
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen2ForCausalLM(config)
    return model.to(dtype)


def sample(model, args, device, generator):
    vocab = model.config.vocab_size
    prompts = torch.randint(vocab, (args.batch, args.prompt_tokens), generator=generator)
    prompts = prompts.to(device)
    attention_mask = torch.ones_like(prompts)

    def generation(new_tokens):
        # No end-of-sequence id: nothing stops a row before `max_new_tokens`.
        return GenerationConfig(
            max_new_tokens=new_tokens, min_new_tokens=None,
            do_sample=args.temperature > 0, temperature=args.temperature or None,
            top_p=None, top_k=None, eos_token_id=None, pad_token_id=0, bos_token_id=None,
            use_cache=True,
        )

    with torch.no_grad():
        if args.warmup_tokens > 0:
            model.generate(prompts, attention_mask=attention_mask,
                           generation_config=generation(args.warmup_tokens))
        # The prompt's forward pass and the first token alone: prefill vs per-step decode.
        synchronize(device)
        started = time.perf_counter()
        model.generate(prompts, attention_mask=attention_mask, generation_config=generation(1))
        synchronize(device)
        prefill = time.perf_counter() - started
        seconds = 0.0
        for _ in range(args.sample_iterations):
            synchronize(device)
            started = time.perf_counter()
            out = model.generate(prompts, attention_mask=attention_mask,
                                 generation_config=generation(args.new_tokens))
            synchronize(device)
            seconds += time.perf_counter() - started
            new = out.shape[1] - args.prompt_tokens
            if new != args.new_tokens:
                raise SystemExit(f"generate stopped after {new} tokens, expected {args.new_tokens}")
    seconds /= args.sample_iterations
    return {
        "batch": args.batch, "prompt_tokens": args.prompt_tokens,
        "new_tokens": args.new_tokens, "temperature": args.temperature,
        "iterations": args.sample_iterations, "seconds": seconds,
        "tokens_per_second": args.batch * args.new_tokens / seconds,
        "prefill_seconds": prefill,
        "decode_ms_per_step": 1e3 * (seconds - prefill) / max(args.new_tokens - 1, 1),
    }


def token_logprobs(model, ids, chunk, with_entropy):
    """`rl::token_logprobs`: next-token log-probabilities (and entropies), fp32."""
    hidden = model.model(input_ids=ids, use_cache=False).last_hidden_state
    targets = ids[:, 1:]
    length = ids.shape[1]
    logprobs, entropies = [], []
    for start in range(0, length - 1, chunk):
        width = min(chunk, length - 1 - start)
        logits = model.lm_head(hidden[:, start:start + width]).float()
        log_softmax = logits.log_softmax(-1)
        picked = log_softmax.gather(-1, targets[:, start:start + width].unsqueeze(-1)).squeeze(-1)
        logprobs.append(picked)
        if with_entropy:
            entropies.append(-(log_softmax.exp() * log_softmax).sum(-1))
    return torch.cat(logprobs, 1), (torch.cat(entropies, 1) if with_entropy else None)


def reinforce_pp_loss(logprobs, old, reference, advantages, entropy, mask, tokens,
                      clip=0.2, kl_coef=0.001, entropy_coef=0.001):
    """`rl::reinforce_pp_loss`."""
    def mean(t):
        return (t * mask).sum() / max(tokens, 1.0)

    ratio = (logprobs - old).exp()
    clipped_ratio = ratio.clamp(1.0 - clip, 1.0 + clip)
    policy = mean(-torch.minimum(ratio * advantages, clipped_ratio * advantages))
    log_ratio = (reference - logprobs).clamp(-10.0, 10.0)
    kl = mean(log_ratio.exp() - log_ratio - 1.0)
    entropy = mean(entropy)
    total = policy + kl_coef * kl - entropy_coef * entropy
    was_clipped = mean(((ratio - clipped_ratio).abs() > 1e-6).float())
    return total, kl, entropy, was_clipped


def train(config, args, device, dtype, generator):
    policy = random_model(config, device, dtype, args.seed)
    reference = random_model(config, device, dtype, args.seed)
    reference.requires_grad_(False)
    policy.train()
    reference.eval()
    vocab = config.vocab_size
    rows = args.train_rows
    length = args.train_prompt_tokens + args.response_tokens
    # `rl::Sequences` rounds the length up to a multiple of 64 and pads on the right.
    padded = -(-length // 64) * 64
    ids = torch.zeros(rows, padded, dtype=torch.long)
    ids[:, :length] = torch.randint(vocab, (rows, length), generator=generator)
    targets = torch.arange(1, padded)
    target_mask = ((targets >= args.train_prompt_tokens) & (targets < length)).float()
    target_mask = target_mask.expand(rows, -1).contiguous()
    totals = torch.tensor([3.0, -0.5, -1.0, -3.0])
    rewards = totals[torch.randint(4, (rows,), generator=generator)]
    # `train::whitened_advantages`: equal response lengths make it plain whitening.
    advantages = (rewards - rewards.mean()) / (rewards.var(unbiased=False) + 1e-8).sqrt()
    ids, target_mask, advantages = ids.to(device), target_mask.to(device), advantages.to(device)
    tokens = float(rows * args.response_tokens)
    chunk = 256
    optimizer = torch.optim.AdamW(policy.parameters(), lr=5e-7, betas=(0.9, 0.95),
                                  eps=1e-8, weight_decay=0.0)

    def step():
        optimizer.zero_grad(set_to_none=True)
        kl_sum = 0.0
        for start in range(0, rows, args.micro_batch):
            micro_ids = ids[start:start + args.micro_batch]
            mask = target_mask[start:start + args.micro_batch]
            micro_advantages = advantages[start:start + args.micro_batch].unsqueeze(1) * mask
            with torch.no_grad():
                reference_logprobs, _ = token_logprobs(reference, micro_ids, chunk, False)
            logprobs, entropy = token_logprobs(policy, micro_ids, chunk, True)
            total, kl, entropy, clipped = reinforce_pp_loss(
                logprobs, logprobs.detach(), reference_logprobs, micro_advantages,
                entropy, mask, tokens)
            total.backward()
            kl_sum += kl.item()
            entropy.item()
            clipped.item()
        grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0).item()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return kl_sum, grad_norm

    for _ in range(args.train_warmup):
        step()
    synchronize(device)
    started = time.perf_counter()
    for _ in range(args.train_iterations):
        kl, grad_norm = step()
    synchronize(device)
    seconds = (time.perf_counter() - started) / args.train_iterations
    return {
        "rows": rows, "prompt_tokens": args.train_prompt_tokens,
        "response_tokens": args.response_tokens, "micro_batch": args.micro_batch,
        "iterations": args.train_iterations, "seconds_per_step": seconds,
        "tokens_per_second": rows * length / seconds,
        "response_tokens_per_second": tokens / seconds,
        "kl": kl, "grad_norm": grad_norm,
    }


def main():
    args = parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype]
    config = qwen2_config(args.preset)
    config._attn_implementation = "sdpa"
    generator = torch.Generator().manual_seed(args.seed)
    result = {
        "bench": "transformers",
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "dtype": str(dtype).removeprefix("torch."),
        "attention": config._attn_implementation,
    }
    if not args.skip_sample:
        model = random_model(config, device, dtype, args.seed)
        model.eval()
        result["model"] = {"parameters": sum(p.numel() for p in model.parameters())}
        result["sample"] = sample(model, args, device, generator)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if not args.skip_train:
        result["train"] = train(config, args, device, dtype, generator)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
