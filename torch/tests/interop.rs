//! transformers interop, both directions: a model peirce saves loads in `transformers` with
//! the same tokens and logits, and a model `transformers` saves (sharded, fp32 and bf16)
//! loads in peirce with the same logits. Needs a python with torch, transformers and
//! safetensors, named by `PEIRCE_TORCH_PYTHON` (scripts/test installs transformers into the
//! torch venv and sets it; without it a bare `cargo test` skips, saying so).

use std::path::Path;
use std::process::Command;

use peirce_torch::pretrained::{Model, TinyModelBuilder};
use tch::{Device, Kind, Tensor};

fn logits(model: &Model, ids: &Tensor) -> Tensor {
    let positions = Tensor::arange(ids.size()[1], (Kind::Int64, Device::Cpu)).view([1, -1]);
    tch::no_grad(|| {
        let hidden = model.net.forward(ids, &positions, None, None).unwrap();
        model
            .net
            .logits(&hidden)
            .unwrap()
            .get(0)
            .to_kind(Kind::Float)
    })
}

fn stored(path: &Path, name: &str) -> Tensor {
    Tensor::read_safetensors(path)
        .unwrap()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{name} in {}", path.display()))
        .1
}

#[test]
fn transformers_and_peirce_load_each_others_checkpoints() {
    let root = tempfile::tempdir().unwrap();
    let builder = TinyModelBuilder {
        tie_word_embeddings: false,
        rope_theta: 50000.0,
        initializer_range: 0.2,
        corpus_per_level: 2,
        seed: 5,
        ..TinyModelBuilder::default()
    };
    let model = builder.build(Device::Cpu, Kind::Float).unwrap();
    model
        .save(&root.path().join("peirce"), Kind::Float, None)
        .unwrap();
    let text = "<|im_start|>user\n¬(A ∧ B) → C, 4, 8, 16, ?<|im_end|>\n<|im_start|>assistant\n<think>\nStep 1</think>\n<answer>\n(1) A is True\n</answer><|im_end|>";
    std::fs::write(root.path().join("text.txt"), text).unwrap();
    let ids = Tensor::from_slice(&model.tokenizer.encode(text).unwrap()).view([1, -1]);
    let ours = logits(&model, &ids);
    Tensor::write_safetensors(
        &[("ids", ids.get(0)), ("logits", ours.shallow_clone())],
        root.path().join("peirce_logits.safetensors"),
    )
    .unwrap();

    let Some(python) = peirce_testing::external(
        "PEIRCE_TORCH_PYTHON",
        "transformers_and_peirce_load_each_others_checkpoints",
        "a Python with torch and transformers: scripts/test installs transformers into the \
         torch virtualenv and sets it",
    ) else {
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop.py");
    let output = Command::new(&python)
        .arg(&script)
        .arg(root.path())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{python}` (source scripts/torch-env.sh): {e}"));
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "interop.py failed:\n{log}");
    println!(
        "interop.py: {}",
        String::from_utf8_lossy(&output.stdout).trim()
    );

    for (name, kind, tolerance) in [("hf", Kind::Float, 1e-4), ("hf_bf16", Kind::BFloat16, 0.1)] {
        let dir = root.path().join(name);
        assert!(
            dir.join("model.safetensors.index.json").exists(),
            "{name} is sharded"
        );
        let theirs = Model::load(&dir, Device::Cpu, kind).unwrap();
        assert!(!theirs.net.config.tie_word_embeddings);
        let reference = stored(
            &root.path().join(format!("{name}_logits.safetensors")),
            "logits",
        );
        let diff = (logits(&theirs, &ids) - &reference)
            .abs()
            .max()
            .double_value(&[]);
        let scale = reference.abs().max().double_value(&[]);
        println!("transformers -> peirce ({name}): max diff {diff:.2e}, logit scale {scale:.2}");
        assert!(
            diff < tolerance * scale.max(1.0),
            "{name}: logits differ by {diff}"
        );
    }
}
