//! Continuous batching (`sampler::generate_continuous`) against the static-batch sampler
//! (`sampler::generate`), on a tiny seeded model (CPU): greedy tokens equal token for token
//! with any number of slots, a reused slot never sees its previous request's keys, stops and
//! token limits are honoured, results come back in request order, and sampling is
//! reproducible for a fixed configuration; each request draws from its own random stream, so
//! sampled output does not depend on the batch (static or continuous, any number of slots);
//! per-request token limits and the static schedule of the same decoder; a bf16 model's
//! greedy continuous batch (logits kept in bf16) equals the static batch.

use peirce_torch::pretrained::set_dtype;
use peirce_torch::qwen2::{Config, Qwen2};
use peirce_torch::sampler::{
    generate, generate_continuous, generate_requests, Batching, Completion, Finish, Request,
    SamplingParams, Schedule,
};
use tch::{nn, Device, Kind};

/// libtorch's random generator is global to the process and tests run on threads: every
/// test holds this lock while it builds its model and samples.
fn exclusive_rng() -> std::sync::MutexGuard<'static, ()> {
    static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());
    RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn model() -> Qwen2 {
    model_in(Kind::Float)
}

fn model_in(kind: Kind) -> Qwen2 {
    let cfg: Config = serde_json::from_value(serde_json::json!({
        "vocab_size": 53, "hidden_size": 32, "intermediate_size": 48,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "rope_theta": 500.0, "tie_word_embeddings": true, "initializer_range": 0.3,
    }))
    .unwrap();
    tch::manual_seed(17);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = Qwen2::new(&cfg, &vs.root()).unwrap();
    set_dtype(&mut vs, kind);
    assert_eq!(net.kind(), kind);
    // The variables live as long as the model's tensors do.
    std::mem::forget(vs);
    net
}

/// Prompts of lengths 1 to 9.
fn prompts() -> Vec<Vec<i64>> {
    (0..9)
        .map(|row: i64| (0..=row).map(|i| (row * 11 + i * 5 + 1) % 53).collect())
        .collect()
}

fn greedy(max_new_tokens: i64) -> SamplingParams {
    SamplingParams {
        max_new_tokens,
        temperature: 0.0,
        pad: 0,
        ..SamplingParams::default()
    }
}

#[test]
fn greedy_continuous_batching_equals_the_static_batch_with_any_number_of_slots() {
    let _rng = exclusive_rng();
    let model = model();
    let params = greedy(14);
    let expected = generate(&model, &prompts(), &params).unwrap();
    assert!(expected.iter().all(|c| c.tokens.len() == 14));
    for slots in [1, 2, 4, 9, 20] {
        let actual = generate_continuous(&model, &prompts(), &params, slots).unwrap();
        assert_eq!(actual, expected, "{slots} slots");
    }
}

#[test]
fn stops_end_rows_early_and_their_slots_take_the_waiting_prompts() {
    let _rng = exclusive_rng();
    let model = model();
    let free = generate(&model, &prompts(), &greedy(16)).unwrap();
    // End-of-sequence: a token some rows produce early; a stop sequence: a pair another row
    // produces. Rows then end at different steps, so slots are freed and reused mid-run.
    let eos = free[0].tokens[2];
    let stop = free[5].tokens[4..6].to_vec();
    let params = SamplingParams {
        eos: vec![eos],
        stop_sequences: vec![stop.clone()],
        ..greedy(16)
    };
    let expected = generate(&model, &prompts(), &params).unwrap();
    let finishes: Vec<Finish> = expected.iter().map(|c| c.finish).collect();
    assert!(finishes.contains(&Finish::Eos), "{finishes:?}");
    assert!(finishes.contains(&Finish::Stop) || finishes.contains(&Finish::Eos));
    let lengths: Vec<usize> = expected.iter().map(|c| c.tokens.len()).collect();
    assert!(lengths.iter().min() < lengths.iter().max(), "{lengths:?}");
    for slots in [1, 2, 3] {
        let actual = generate_continuous(&model, &prompts(), &params, slots).unwrap();
        assert_eq!(actual, expected, "{slots} slots");
        for completion in &actual {
            assert!(completion.tokens.len() <= 16);
            match completion.finish {
                Finish::Eos => assert_eq!(completion.tokens.last(), Some(&eos)),
                Finish::Stop => assert!(completion.tokens.ends_with(&stop)),
                Finish::Length => assert_eq!(completion.tokens.len(), 16),
            }
        }
    }
}

#[test]
fn a_reused_slot_never_sees_its_previous_request() {
    let _rng = exclusive_rng();
    let model = model();
    let params = SamplingParams {
        eos: vec![generate(&model, &prompts(), &greedy(8)).unwrap()[3].tokens[1]],
        ..greedy(12)
    };
    // Two slots for nine prompts: most requests run in a slot another request used before.
    let shared = generate_continuous(&model, &prompts(), &params, 2).unwrap();
    for (request, prompt) in prompts().iter().enumerate() {
        let alone = generate_continuous(&model, std::slice::from_ref(prompt), &params, 1).unwrap();
        assert_eq!(shared[request], alone[0], "request {request}");
    }
}

#[test]
fn results_come_back_in_request_order() {
    let _rng = exclusive_rng();
    let model = model();
    let params = greedy(6);
    let forward = generate_continuous(&model, &prompts(), &params, 3).unwrap();
    let mut reversed_prompts = prompts();
    reversed_prompts.reverse();
    let mut reversed = generate_continuous(&model, &reversed_prompts, &params, 3).unwrap();
    reversed.reverse();
    assert_eq!(forward, reversed);
}

#[test]
fn sampling_is_reproducible_for_a_fixed_configuration() {
    let _rng = exclusive_rng();
    let model = model();
    let params = SamplingParams {
        temperature: 1.0,
        top_p: 0.9,
        seed: 42,
        ..greedy(10)
    };
    let first = generate_continuous(&model, &prompts(), &params, 4).unwrap();
    let second = generate_continuous(&model, &prompts(), &params, 4).unwrap();
    assert_eq!(first, second);
    let other_seed = generate_continuous(
        &model,
        &prompts(),
        &SamplingParams { seed: 43, ..params },
        4,
    )
    .unwrap();
    assert_ne!(first, other_seed);
    assert!(first
        .iter()
        .all(|c: &Completion| c.tokens.iter().all(|&t| (0..53).contains(&t))));
}

#[test]
fn sampled_output_does_not_depend_on_the_batch() {
    let _rng = exclusive_rng();
    let model = model();
    let params = SamplingParams {
        temperature: 1.0,
        top_p: 0.95,
        top_k: 30,
        seed: 7,
        ..greedy(12)
    };
    let expected = generate(&model, &prompts(), &params).unwrap();
    for slots in [1, 3, 9] {
        let actual = generate_continuous(&model, &prompts(), &params, slots).unwrap();
        assert_eq!(actual, expected, "{slots} slots");
    }
    // A request's stream is its own: alone, request 4 samples what it sampled in the batch
    // when it is request 4 of its call...
    let rows = prompts();
    let alone = generate_continuous(&model, &rows[..5], &params, 2).unwrap();
    assert_eq!(alone[4], expected[4]);
    // ...and the draws differ between requests: the same prompt twice gives two samples.
    let twice = vec![rows[8].clone(), rows[8].clone()];
    let samples = generate_continuous(&model, &twice, &params, 2).unwrap();
    assert_ne!(samples[0], samples[1]);
}

#[test]
fn a_bf16_models_greedy_continuous_batch_equals_the_static_batch() {
    // The continuous batch keeps a bf16 model's logits in bf16 (its step's head writes them
    // into the static buffer); the static sampler casts them to fp32 first. (Drawn tokens
    // are compared on the same logits in `sampler::tests`: a bf16 forward pass on the CPU
    // rounds differently with the batch's shape, which near-ties of a draw can show.)
    let _rng = exclusive_rng();
    let model = model_in(Kind::BFloat16);
    let params = greedy(14);
    let expected = generate(&model, &prompts(), &params).unwrap();
    for slots in [1, 4, 9] {
        let actual = generate_continuous(&model, &prompts(), &params, slots).unwrap();
        assert_eq!(actual, expected, "{slots} slots");
    }
}

#[test]
fn per_request_limits_and_the_static_schedule() {
    let _rng = exclusive_rng();
    let model = model();
    let rows = prompts();
    let limits = [3i64, 11, 1, 7, 2, 9, 5, 4, 6];
    let requests: Vec<Request<'_>> = rows
        .iter()
        .zip(limits)
        .map(|(prompt, max_new_tokens)| Request {
            prompt,
            max_new_tokens,
        })
        .collect();
    let params = greedy(10);
    let full = generate(&model, &rows, &params).unwrap();
    let run = |schedule| {
        let batching = Batching { slots: 3, schedule };
        generate_requests(&model, &requests, &params, &batching).unwrap()
    };
    let (continuous, continuous_stats) = run(Schedule::Continuous);
    let (fixed, fixed_stats) = run(Schedule::Static);
    assert_eq!(continuous, fixed);
    for ((completion, limit), reference) in continuous.iter().zip(limits).zip(&full) {
        // Each stops at its own limit (capped by the call's), a prefix of its full greedy run.
        let limit = limit.min(10) as usize;
        assert_eq!(completion.tokens, reference.tokens[..limit]);
        assert_eq!(completion.finish, Finish::Length);
    }
    let tokens: u64 = limits.iter().map(|&l| l.min(10) as u64).sum();
    assert_eq!(continuous_stats.tokens, tokens);
    assert_eq!(fixed_stats.tokens, tokens);
    // Static batches of 3 wait for their longest row (10, 9, 6 tokens: 25 tokens, 22
    // decoding steps); continuous batching keeps its 3 slots busy: fewer steps.
    assert_eq!(fixed_stats.steps, 22);
    assert!(
        continuous_stats.steps < fixed_stats.steps,
        "{continuous_stats:?}"
    );
    assert_eq!(
        continuous_stats.graph_replays, 0,
        "no CUDA graphs on the CPU"
    );
}
