//! Times one forward and one forward+backward of a tiny model on the CPU (a quick check
//! for the trainers' per-step cost): `cargo run --release --example step_timing`.
use std::time::Instant;

use peirce_torch::qwen2::{Config, Qwen2};
use peirce_torch::rl::token_logprobs;
use tch::{nn, Device, Kind, Tensor};

fn main() {
    tch::set_num_threads(2);
    let cfg: Config = serde_json::from_value(serde_json::json!({
        "vocab_size": 1024, "hidden_size": 64, "intermediate_size": 176,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "tie_word_embeddings": true,
    }))
    .unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let net = Qwen2::new(&cfg, &vs.root()).unwrap();
    let ids = Tensor::randint(1024, [16, 300], (Kind::Int64, Device::Cpu));
    for _ in 0..3 {
        let start = Instant::now();
        let (lp, _) = tch::no_grad(|| token_logprobs(&net, &ids, 256, false)).unwrap();
        let forward = start.elapsed();
        let start = Instant::now();
        let (lp2, ent) = token_logprobs(&net, &ids, 256, true).unwrap();
        (lp2.sum(Kind::Float) + ent.unwrap().sum(Kind::Float)).backward();
        println!(
            "forward {forward:?}, forward+backward {:?} ({})",
            start.elapsed(),
            lp.size()[1]
        );
    }
}
