//! Checkpoints, padding and the KV cache, on tiny seeded models (CPU).

use std::path::Path;

use peirce_torch::checkpoint;
use peirce_torch::pretrained::{Model, TinyModelBuilder};
use peirce_torch::qwen2::{positions_from_mask, Config, Qwen2};
use peirce_torch::sampler::{generate, Finish, SamplingParams};
use peirce_torch::TorchError;
use tch::{nn, Device, Kind, Tensor};

fn config(tie: bool, init: f64) -> Config {
    serde_json::from_value(serde_json::json!({
        "vocab_size": 97, "hidden_size": 32, "intermediate_size": 48,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "rope_theta": 500.0, "tie_word_embeddings": tie, "initializer_range": init,
    }))
    .unwrap()
}

/// libtorch's random generator is global to the process and tests run on threads: tests
/// whose results depend on the random stream hold this lock while they draw from it.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn model(cfg: &Config, seed: i64) -> (nn::VarStore, Qwen2) {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = Qwen2::new(cfg, &vs.root()).unwrap();
    (vs, net)
}

fn logits(net: &Qwen2, ids: &[i64]) -> Tensor {
    let input = Tensor::from_slice(ids).view([1, -1]);
    let positions = Tensor::arange(ids.len() as i64, (Kind::Int64, Device::Cpu)).view([1, -1]);
    tch::no_grad(|| {
        let hidden = net.forward(&input, &positions, None, None).unwrap();
        net.logits(&hidden).unwrap().to_kind(Kind::Float)
    })
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

const IDS: [i64; 7] = [3, 14, 15, 92, 65, 35, 89];

/// libtorch's random generator is global to the process and tests run on parallel
/// threads: each test holds this lock, so seeded draws are not interleaved.
fn exclusive_rng() -> std::sync::MutexGuard<'static, ()> {
    static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());
    RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn fp32_checkpoint_round_trips_exactly() {
    let _rng = exclusive_rng();
    for tie in [false, true] {
        let cfg = config(tie, 0.02);
        let (vs, net) = model(&cfg, 1);
        let dir = tempfile::tempdir().unwrap();
        let files = checkpoint::save(&vs, dir.path(), Kind::Float, None).unwrap();
        assert_eq!(files, ["model.safetensors"]);
        let names = Tensor::read_safetensors(dir.path().join("model.safetensors"))
            .unwrap()
            .into_iter()
            .map(|(name, _)| name)
            .collect::<Vec<_>>();
        assert!(names.contains(&"model.layers.1.self_attn.q_proj.bias".to_string()));
        assert!(names.contains(&"model.norm.weight".to_string()));
        assert_eq!(names.contains(&"lm_head.weight".to_string()), !tie);
        let (vs2, net2) = model(&cfg, 2);
        assert!(max_diff(&logits(&net, &IDS), &logits(&net2, &IDS)) > 1e-3);
        checkpoint::load(&vs2, dir.path()).unwrap();
        assert_eq!(max_diff(&logits(&net, &IDS), &logits(&net2, &IDS)), 0.0);
    }
}

#[test]
fn bf16_and_sharded_checkpoints_load_into_any_dtype() {
    let _rng = exclusive_rng();
    let cfg = config(false, 0.02);
    let (vs, net) = model(&cfg, 3);
    let dir = tempfile::tempdir().unwrap();
    // Shards of at most 8 KiB: the 97x32 embedding alone is 6 KiB in bf16.
    let files = checkpoint::save(&vs, dir.path(), Kind::BFloat16, Some(8 << 10)).unwrap();
    assert!(files.len() > 3, "{files:?}");
    assert_eq!(files.last().unwrap(), checkpoint::INDEX);
    assert!(!dir.path().join(checkpoint::WEIGHTS).exists());
    let index: checkpoint::ShardIndex =
        serde_json::from_slice(&std::fs::read(dir.path().join(checkpoint::INDEX)).unwrap())
            .unwrap();
    assert_eq!(index.weight_map.len(), vs.variables().len());
    let stored = Tensor::read_safetensors(dir.path().join(&files[0])).unwrap();
    assert!(stored.iter().all(|(_, t)| t.kind() == Kind::BFloat16));

    // Into fp32: every weight equals its bf16 rounding.
    let (vs32, net32) = model(&cfg, 4);
    checkpoint::load(&vs32, dir.path()).unwrap();
    let rounded = net
        .embed_tokens
        .to_kind(Kind::BFloat16)
        .to_kind(Kind::Float);
    assert_eq!(max_diff(&net32.embed_tokens, &rounded), 0.0);
    // Into bf16: the same model, within bf16 arithmetic of the fp32 one.
    let (mut vs16, net16) = model(&cfg, 5);
    vs16.bfloat16();
    checkpoint::load(&vs16, dir.path()).unwrap();
    assert_eq!(net16.kind(), Kind::BFloat16);
    let diff = max_diff(&logits(&net16, &IDS), &logits(&net, &IDS));
    assert!(diff < 0.05, "bf16 logits differ by {diff}");

    // Saving again unsharded removes the shards: a folder never mixes two checkpoints.
    checkpoint::save(&vs, dir.path(), Kind::Float, None).unwrap();
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(left, ["model.safetensors"]);
}

fn write(path: &Path, tensors: Vec<(String, Tensor)>) {
    Tensor::write_safetensors(&tensors, path).unwrap();
}

#[test]
fn bad_checkpoints_name_the_tensor_at_fault() {
    let _rng = exclusive_rng();
    let cfg = config(false, 0.02);
    let (vs, _) = model(&cfg, 6);
    let saved: Vec<(String, Tensor)> = {
        let mut v: Vec<_> = vs.variables().into_iter().collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(checkpoint::WEIGHTS);

    let missing: Vec<_> = saved
        .iter()
        .filter(|(n, _)| n != "model.layers.1.mlp.up_proj.weight")
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect();
    write(&file, missing);
    let error = checkpoint::load(&vs, dir.path()).unwrap_err();
    assert!(
        matches!(error, TorchError::MissingTensor { ref name, .. } if name == "model.layers.1.mlp.up_proj.weight"),
        "{error}"
    );
    assert!(error
        .to_string()
        .contains("`model.layers.1.mlp.up_proj.weight`"));

    let mismatched: Vec<_> = saved
        .iter()
        .map(|(n, t)| {
            let t = if n == "model.layers.0.self_attn.k_proj.weight" {
                Tensor::zeros([8, 31], (Kind::Float, Device::Cpu))
            } else {
                t.shallow_clone()
            };
            (n.clone(), t)
        })
        .collect();
    write(&file, mismatched);
    let error = checkpoint::load(&vs, dir.path()).unwrap_err().to_string();
    assert!(
        error.contains("`model.layers.0.self_attn.k_proj.weight`")
            && error.contains("[8, 31]")
            && error.contains("[16, 32]"),
        "{error}"
    );

    let mut extra: Vec<_> = saved
        .iter()
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect();
    extra.push((
        "model.layers.9.mlp.up_proj.weight".into(),
        Tensor::zeros([1], (Kind::Float, Device::Cpu)),
    ));
    write(&file, extra);
    let error = checkpoint::load(&vs, dir.path()).unwrap_err().to_string();
    assert!(
        error.contains("unexpected tensor `model.layers.9.mlp.up_proj.weight`"),
        "{error}"
    );

    std::fs::write(&file, b"not a safetensors file").unwrap();
    let error = checkpoint::load(&vs, dir.path()).unwrap_err().to_string();
    assert!(error.contains("Malformed safetensors file"), "{error}");

    std::fs::remove_file(&file).unwrap();
    let error = checkpoint::load(&vs, dir.path()).unwrap_err().to_string();
    assert!(error.contains("no `model.safetensors`"), "{error}");
}

#[test]
fn left_and_right_padding_leave_real_positions_unchanged() {
    let _rng = exclusive_rng();
    let cfg = config(false, 0.2);
    let (_vs, net) = model(&cfg, 7);
    let reference = logits(&net, &IDS[..4]);
    let pad = 0i64;
    // Row 0: left-padded by 3; row 1: right-padded by 3.
    let ids = Tensor::from_slice(&[pad, pad, pad, 3, 14, 15, 92, 3, 14, 15, 92, pad, pad, pad])
        .view([2, 7]);
    let mask = Tensor::from_slice(&[0i64, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]).view([2, 7]);
    let positions = positions_from_mask(&mask).unwrap();
    let all = tch::no_grad(|| {
        let hidden = net.forward(&ids, &positions, Some(&mask), None).unwrap();
        net.logits(&hidden).unwrap()
    });
    assert!(!bool::try_from(all.isnan().any()).unwrap());
    let left = all.get(0).narrow(0, 3, 4).unsqueeze(0);
    let right = all.get(1).narrow(0, 0, 4).unsqueeze(0);
    assert!(max_diff(&left, &reference) < 1e-5);
    assert!(max_diff(&right, &reference) < 1e-5);
}

/// Greedy decoding by recomputing the whole sequence at every step, one prompt at a time.
fn greedy_by_recomputation(net: &Qwen2, prompt: &[i64], steps: usize, eos: i64) -> Vec<i64> {
    let mut ids = prompt.to_vec();
    let mut out = Vec::new();
    for _ in 0..steps {
        let next = logits(net, &ids)
            .get(0)
            .get(ids.len() as i64 - 1)
            .argmax(-1, false)
            .int64_value(&[]);
        out.push(next);
        ids.push(next);
        if next == eos {
            break;
        }
    }
    out
}

#[test]
fn kv_cache_greedy_matches_full_recomputation_with_left_padding() {
    let _rng = exclusive_rng();
    let cfg = config(false, 0.2);
    let (_vs, net) = model(&cfg, 8);
    let prompts = vec![
        vec![5i64, 6, 7, 8, 9, 10, 11],
        vec![12, 13],
        vec![40, 41, 42, 43],
    ];
    let eos = 96;
    let params = SamplingParams {
        max_new_tokens: 24,
        eos: vec![eos],
        pad: 0,
        check_every: 5,
        ..SamplingParams::default()
    };
    let completions = generate(&net, &prompts, &params).unwrap();
    for (prompt, completion) in prompts.iter().zip(&completions) {
        let expected = greedy_by_recomputation(&net, prompt, 24, eos);
        assert_eq!(completion.tokens, expected, "prompt {prompt:?}");
        assert!(completion.tokens.len() > 5);
    }
    // Each row alone gives the same tokens as in the batch.
    let alone = generate(&net, &prompts[1..2], &params).unwrap();
    assert_eq!(alone[0], completions[1]);
}

#[test]
fn sampling_is_seeded_and_stops_at_stop_sequences() {
    let _rng = exclusive_rng();
    let cfg = config(false, 0.2);
    let (_vs, net) = model(&cfg, 9);
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let prompts = vec![vec![1i64, 2, 3], vec![4, 5]];
    let params = SamplingParams {
        max_new_tokens: 16,
        temperature: 1.0,
        top_p: 0.9,
        seed: 11,
        pad: 0,
        ..SamplingParams::default()
    };
    let a = generate(&net, &prompts, &params).unwrap();
    let b = generate(&net, &prompts, &params).unwrap();
    assert_eq!(a, b);
    let c = generate(
        &net,
        &prompts,
        &SamplingParams {
            seed: 12,
            ..params.clone()
        },
    )
    .unwrap();
    assert_ne!(a, c);
    // Stop at the first two tokens of row 0's sample: it ends there, marked as a stop.
    let stop = a[0].tokens[..2].to_vec();
    let stopped = generate(
        &net,
        &prompts,
        &SamplingParams {
            stop_sequences: vec![stop.clone()],
            ..params
        },
    )
    .unwrap();
    assert_eq!(stopped[0].tokens, stop);
    assert_eq!(stopped[0].finish, Finish::Stop);
}

#[test]
fn tiny_model_tree_is_a_complete_folder_that_loads_back() {
    let _rng = exclusive_rng();
    let builder = TinyModelBuilder {
        corpus_per_level: 2,
        ..TinyModelBuilder::default()
    };
    let model = builder.build(Device::Cpu, Kind::Float).unwrap();
    let dir = tempfile::tempdir().unwrap();
    model.save(dir.path(), Kind::BFloat16, None).unwrap();
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ] {
        assert!(dir.path().join(file).exists(), "{file}");
    }
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(config["torch_dtype"], "bfloat16");
    assert_eq!(config["model_type"], "qwen2");
    let loaded = Model::load(dir.path(), Device::Cpu, Kind::Float).unwrap();
    assert_eq!(loaded.special, model.special);
    let prompt = "<|im_start|>user\n(1) A is True<|im_end|>\n<|im_start|>assistant\n<think>";
    let ids = loaded.tokenizer.encode(prompt).unwrap();
    assert_eq!(loaded.tokenizer.decode(&ids).unwrap(), prompt);
    assert!(ids.len() < 20, "task words are single tokens: {ids:?}");
    let diff = max_diff(&logits(&loaded.net, &ids), &logits(&model.net, &ids));
    assert!(diff < 0.05, "{diff}");
}
