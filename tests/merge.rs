//! The `merge` kind and `peirce merge` on small random Qwen2-shaped model folders built here:
//! self-merges give the model back bit for bit, merges equal the weighted sums computed by
//! hand, mismatched models are refused naming the tensor or key, sharded inputs keep their
//! layout, a merge node caches and reruns on new weights, and the output equals mergekit's
//! bit for bit (mergekit from scripts/mergekit.sh, which scripts/test installs).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{expect_statuses, Sandbox};
use rand::{Rng, SeedableRng};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde_json::{json, Value};

/// One stored tensor.
#[derive(Debug, Clone, PartialEq)]
struct Raw {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl Raw {
    /// The tensor as safetensors serializes it.
    fn view(&self) -> TensorView<'_> {
        TensorView::new(self.dtype, self.shape.clone(), &self.data).expect("a consistent tensor")
    }
}

type Tensors = BTreeMap<String, Raw>;

/// A Qwen2 configuration, small.
#[derive(Debug, Clone, Copy)]
struct Shape {
    layers: usize,
    hidden: usize,
    intermediate: usize,
    heads: usize,
    kv_heads: usize,
    vocab: usize,
    tied: bool,
}

const SMALL: Shape = Shape {
    layers: 2,
    hidden: 64,
    intermediate: 128,
    heads: 4,
    kv_heads: 2,
    vocab: 96,
    tied: false,
};

/// Qwen2's tensor names and shapes, as Hugging Face stores them.
fn tensor_shapes(s: &Shape) -> Vec<(String, Vec<usize>)> {
    let kv = s.kv_heads * (s.hidden / s.heads);
    let mut shapes = vec![(
        "model.embed_tokens.weight".to_string(),
        vec![s.vocab, s.hidden],
    )];
    for layer in 0..s.layers {
        let p = format!("model.layers.{layer}");
        for (name, shape) in [
            ("self_attn.q_proj.weight", vec![s.hidden, s.hidden]),
            ("self_attn.q_proj.bias", vec![s.hidden]),
            ("self_attn.k_proj.weight", vec![kv, s.hidden]),
            ("self_attn.k_proj.bias", vec![kv]),
            ("self_attn.v_proj.weight", vec![kv, s.hidden]),
            ("self_attn.v_proj.bias", vec![kv]),
            ("self_attn.o_proj.weight", vec![s.hidden, s.hidden]),
            ("mlp.gate_proj.weight", vec![s.intermediate, s.hidden]),
            ("mlp.up_proj.weight", vec![s.intermediate, s.hidden]),
            ("mlp.down_proj.weight", vec![s.hidden, s.intermediate]),
            ("input_layernorm.weight", vec![s.hidden]),
            ("post_attention_layernorm.weight", vec![s.hidden]),
        ] {
            shapes.push((format!("{p}.{name}"), shape));
        }
    }
    shapes.push(("model.norm.weight".into(), vec![s.hidden]));
    if !s.tied {
        shapes.push(("lm_head.weight".into(), vec![s.vocab, s.hidden]));
    }
    shapes
}

fn config(s: &Shape, dtype: &str) -> Value {
    json!({
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_size": s.hidden,
        "intermediate_size": s.intermediate,
        "num_hidden_layers": s.layers,
        "num_attention_heads": s.heads,
        "num_key_value_heads": s.kv_heads,
        "vocab_size": s.vocab,
        "max_position_embeddings": 128,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": s.tied,
        "torch_dtype": dtype,
    })
}

fn encode(dtype: Dtype, values: &[f32]) -> Vec<u8> {
    match dtype {
        Dtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Dtype::BF16 => values
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
            .collect(),
        Dtype::F16 => values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect(),
        other => panic!("no encoder for {other}"),
    }
}

fn decode(raw: &Raw) -> Vec<f32> {
    match raw.dtype {
        Dtype::F32 => raw
            .data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::BF16 => raw
            .data
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::F16 => raw
            .data
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        other => panic!("no decoder for {other}"),
    }
}

/// Random weights of `shape`, uniform in (-1, 1), seeded.
fn random_tensors(shape: &Shape, dtype: Dtype, seed: u64) -> Tensors {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    tensor_shapes(shape)
        .into_iter()
        .map(|(name, dims)| {
            let values: Vec<f32> = (0..dims.iter().product::<usize>())
                .map(|_| rng.random_range(-1.0f32..1.0))
                .collect();
            let raw = Raw {
                dtype,
                shape: dims,
                data: encode(dtype, &values),
            };
            (name, raw)
        })
        .collect()
}

fn dtype_name(dtype: Dtype) -> &'static str {
    match dtype {
        Dtype::F32 => "float32",
        Dtype::BF16 => "bfloat16",
        Dtype::F16 => "float16",
        _ => "other",
    }
}

/// Writes a model folder: config, tokenizer and generation files, and the weights in one
/// file or `shards` shards with an index.
fn write_model(dir: &Path, config: &Value, tensors: &Tensors, shards: usize) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(config).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("tokenizer.json"),
        format!("{{\"model\": {{\"from\": \"{}\"}}}}", dir.display()),
    )
    .unwrap();
    std::fs::write(
        dir.join("tokenizer_config.json"),
        "{\"eos_token\": \"<e>\"}",
    )
    .unwrap();
    std::fs::write(dir.join("generation_config.json"), "{\"do_sample\": false}").unwrap();
    std::fs::write(dir.join("curves.json"), "[1, 2, 3]").unwrap();
    let metadata = Some(std::collections::HashMap::from([(
        "format".to_string(),
        "pt".to_string(),
    )]));
    if shards <= 1 {
        let views = tensors.iter().map(|(name, raw)| (name, raw.view()));
        safetensors::serialize_to_file(views, metadata, &dir.join("model.safetensors")).unwrap();
        return;
    }
    let names: Vec<&String> = tensors.keys().collect();
    let per = names.len().div_ceil(shards);
    let mut weight_map = BTreeMap::new();
    for (number, group) in names.chunks(per).enumerate() {
        let file = format!("model-{:05}-of-{shards:05}.safetensors", number + 1);
        let part: Vec<(&String, TensorView)> =
            group.iter().map(|n| (*n, tensors[*n].view())).collect();
        safetensors::serialize_to_file(part, metadata.clone(), &dir.join(&file)).unwrap();
        for name in group {
            weight_map.insert(name.to_string(), file.clone());
        }
    }
    let index = json!({"metadata": {"total_size": 0}, "weight_map": weight_map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
}

/// Every tensor of every `*.safetensors` file in `dir`.
fn read_weights(dir: &Path) -> Tensors {
    let mut tensors = Tensors::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no weights in {}", dir.display());
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        let parsed =
            SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for (name, view) in parsed.tensors() {
            let raw = Raw {
                dtype: view.dtype(),
                shape: view.shape().to_vec(),
                data: view.data().to_vec(),
            };
            assert!(tensors.insert(name.clone(), raw).is_none(), "{name} twice");
        }
    }
    tensors
}

/// A sandbox with model folders under `models/`.
struct Models {
    sandbox: Sandbox,
}

impl Models {
    fn new() -> Self {
        Models {
            sandbox: Sandbox::new(),
        }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.sandbox.path(&format!("models/{name}"))
    }

    /// Writes model `name` and returns its tensors.
    fn add(&self, name: &str, shape: &Shape, dtype: Dtype, seed: u64, shards: usize) -> Tensors {
        let tensors = random_tensors(shape, dtype, seed);
        write_model(
            &self.dir(name),
            &config(shape, dtype_name(dtype)),
            &tensors,
            shards,
        );
        tensors
    }

    /// `peirce merge` of `models` (name = folder name) with `flags`, into `out/<out>`.
    fn merge(&self, out: &str, models: &[&str], flags: &[&str]) -> common::Outcome {
        let out = self.sandbox.path(&format!("out/{out}"));
        let mut args: Vec<String> = vec!["merge".into(), "--out".into(), out.display().to_string()];
        args.extend(flags.iter().map(|f| f.to_string()));
        for model in models {
            let (input, folder) = model.split_once('=').unwrap_or((model, model));
            args.push(format!("{input}={}", self.dir(folder).display()));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.sandbox.peirce(&args)
    }

    fn output(&self, out: &str) -> PathBuf {
        self.sandbox.path(&format!("out/{out}"))
    }
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn merging_a_model_with_itself_gives_it_back_bit_for_bit() {
    let models = Models::new();
    for (dtype, weights) in [
        (Dtype::F32, ["--weight", "a=0.25", "--weight", "b=0.75"]),
        (Dtype::BF16, ["--weight", "a=1.0", "--weight", "b=0.2"]),
    ] {
        let name = dtype_name(dtype);
        let tensors = models.add(name, &SMALL, dtype, 7, 1);
        let a = format!("a={name}");
        let b = format!("b={name}");
        models.merge(name, &[&a, &b], &weights).success();
        let out = models.output(name);
        assert_eq!(read_weights(&out), tensors, "{name}: the weights come back");
        for file in [
            "config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "generation_config.json",
        ] {
            assert_eq!(
                read(&out.join(file)),
                read(&models.dir(name).join(file)),
                "{name}: {file}"
            );
        }
        assert!(
            !out.join("curves.json").exists(),
            "only model files are copied"
        );
        let record: Value = serde_json::from_slice(&read(&out.join("merge.json"))).unwrap();
        assert_eq!(record["method"], "linear");
        assert_eq!(record["inputs"], json!(["a", "b"]));
        assert_eq!(record["template"], "a");
    }
    // Three copies with the pipeline's weights: the f32 result rounds back to each bf16.
    let three = models.merge(
        "three",
        &["x=bfloat16", "y=bfloat16", "z=bfloat16"],
        &["-w", "x=1.0", "-w", "y=0.2", "-w", "z=0.1"],
    );
    three.success();
    assert_eq!(
        read_weights(&models.output("three")),
        read_weights(&models.dir("bfloat16"))
    );
}

/// `(sum_i x_i w_i) [/ sum w]`, accumulated in f32 with one fused multiply-add per model in
/// order, then rounded to `dtype` (the rule mergekit's linear merge follows on CPU).
fn weighted(models: &[(&Raw, f64)], normalize: bool, dtype: Dtype) -> Raw {
    let values: Vec<Vec<f32>> = models.iter().map(|(raw, _)| decode(raw)).collect();
    let weights: Vec<f32> = models.iter().map(|(_, w)| *w as f32).collect();
    let denominator = weights.iter().fold(0f32, |sum, w| sum + w);
    let merged: Vec<f32> = (0..values[0].len())
        .map(|i| {
            let sum = values
                .iter()
                .zip(&weights)
                .fold(0f32, |acc, (x, w)| x[i].mul_add(*w, acc));
            if normalize {
                sum / denominator
            } else {
                sum
            }
        })
        .collect();
    Raw {
        dtype,
        shape: models[0].0.shape.clone(),
        data: encode(dtype, &merged),
    }
}

#[test]
fn a_merge_of_two_models_is_the_weighted_sum_per_tensor() {
    let models = Models::new();
    for dtype in [Dtype::F32, Dtype::BF16] {
        let name = dtype_name(dtype);
        let deduction = models.add(&format!("deduction-{name}"), &SMALL, dtype, 1, 1);
        let induction = models.add(&format!("induction-{name}"), &SMALL, dtype, 2, 1);
        let inputs = [
            format!("deduction=deduction-{name}"),
            format!("induction=induction-{name}"),
        ];
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let weights = ["--weight", "deduction=0.7", "--weight", "induction=0.2"];
        for (method, normalize) in [("linear", true), ("sum", false)] {
            let out = format!("{method}-{name}");
            let mut flags = weights.to_vec();
            flags.extend(["--method", method]);
            models.merge(&out, &inputs, &flags).success();
            let merged = read_weights(&models.output(&out));
            assert_eq!(merged.len(), deduction.len());
            for (tensor, raw) in &merged {
                let pair = [(&deduction[tensor], 0.7), (&induction[tensor], 0.2)];
                let expected = weighted(&pair, normalize, dtype);
                assert_eq!(raw, &expected, "{method} {name}: tensor `{tensor}`");
                assert_ne!(raw, &deduction[tensor], "{tensor} changed");
                // And close to the exact value, which the rule approximates.
                let (a, b) = (decode(pair[0].0), decode(pair[1].0));
                let tolerance = if dtype == Dtype::F32 { 1e-6 } else { 1e-2 };
                for (i, got) in decode(raw).iter().enumerate() {
                    let exact = (0.7 * f64::from(a[i]) + 0.2 * f64::from(b[i]))
                        / if normalize { 0.9 } else { 1.0 };
                    assert!(
                        (f64::from(*got) - exact).abs() <= tolerance * exact.abs().max(1.0),
                        "{method} {name} {tensor}[{i}]: {got} vs {exact}"
                    );
                }
            }
        }
    }
    // bf16 inputs merged into float32: the accumulator itself, unrounded.
    let deduction = read_weights(&models.dir("deduction-bfloat16"));
    let induction = read_weights(&models.dir("induction-bfloat16"));
    models
        .merge(
            "wide",
            &[
                "deduction=deduction-bfloat16",
                "induction=induction-bfloat16",
            ],
            &[
                "-w",
                "deduction=0.7",
                "-w",
                "induction=0.2",
                "--dtype",
                "float32",
            ],
        )
        .success();
    let wide = read_weights(&models.output("wide"));
    let name = "model.layers.1.mlp.down_proj.weight";
    let expected = weighted(
        &[(&deduction[name], 0.7), (&induction[name], 0.2)],
        true,
        Dtype::F32,
    );
    assert_eq!(wide[name], expected);
    let config: Value =
        serde_json::from_slice(&read(&models.output("wide").join("config.json"))).unwrap();
    assert_eq!(config["torch_dtype"], "float32");
}

#[test]
fn task_arithmetic_adds_weighted_deltas_to_the_base() {
    let models = Models::new();
    let base = models.add("base", &SMALL, Dtype::F32, 10, 1);
    let deduction = models.add("deduction", &SMALL, Dtype::F32, 11, 1);
    let induction = models.add("induction", &SMALL, Dtype::F32, 12, 1);
    models
        .merge(
            "ta",
            &["base", "deduction", "induction"],
            &[
                "--method",
                "task_arithmetic",
                "-w",
                "deduction=0.5",
                "-w",
                "induction=0.3",
            ],
        )
        .success();
    let merged = read_weights(&models.output("ta"));
    for (tensor, raw) in &merged {
        let b = decode(&base[tensor]);
        let x = decode(&deduction[tensor]);
        let y = decode(&induction[tensor]);
        let expected: Vec<f32> = (0..b.len())
            .map(|i| {
                let delta = (x[i] - b[i]).mul_add(0.5, 0.0);
                b[i] + (y[i] - b[i]).mul_add(0.3, delta)
            })
            .collect();
        assert_eq!(decode(raw), expected, "tensor `{tensor}`");
    }
    // Task arithmetic from the base to itself is the base.
    models
        .merge(
            "ta-self",
            &["base", "only=base"],
            &["--method", "task_arithmetic", "-w", "only=0.8"],
        )
        .success();
    assert_eq!(read_weights(&models.output("ta-self")), base);
    let record: Value =
        serde_json::from_slice(&read(&models.output("ta").join("merge.json"))).unwrap();
    assert_eq!(record["base"], "base");
    assert_eq!(record["template"], "base");
    assert_eq!(
        record["weights"],
        json!({"deduction": 0.5, "induction": 0.3})
    );
}

#[test]
fn mismatched_models_are_rejected_naming_the_tensor_or_key() {
    let models = Models::new();
    let good = models.add("deduction", &SMALL, Dtype::BF16, 1, 1);
    let bad_model = |name: &str, edit: &dyn Fn(&mut Tensors, &mut Value)| {
        let mut tensors = good.clone();
        let mut config = config(&SMALL, "bfloat16");
        edit(&mut tensors, &mut config);
        write_model(&models.dir(name), &config, &tensors, 1);
    };
    bad_model("shape", &|tensors, _| {
        let raw = tensors
            .get_mut("model.layers.0.mlp.up_proj.weight")
            .unwrap();
        raw.shape = vec![176, 64];
        raw.data = vec![0; 176 * 64 * 2];
    });
    bad_model("missing", &|tensors, _| {
        tensors.remove("model.norm.weight");
    });
    bad_model("extra", &|tensors, _| {
        let extra = tensors["model.norm.weight"].clone();
        tensors.insert("model.extra.weight".into(), extra);
    });
    bad_model("dtype", &|tensors, _| {
        let raw = tensors
            .get_mut("model.layers.1.self_attn.k_proj.bias")
            .unwrap();
        let values = decode(raw);
        *raw = Raw {
            dtype: Dtype::F32,
            shape: raw.shape.clone(),
            data: encode(Dtype::F32, &values),
        };
    });
    bad_model("llama", &|_, config| {
        config["architectures"] = json!(["LlamaForCausalLM"]);
    });
    bad_model("layers", &|_, config| {
        config["num_hidden_layers"] = json!(3);
    });
    std::fs::create_dir_all(models.dir("empty")).unwrap();
    bad_model("truncated", &|_, _| {});
    let weights = models.dir("truncated").join("model.safetensors");
    let bytes = read(&weights);
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let cases = [
        (
            "shape",
            "Input `induction`: tensor `model.layers.0.mlp.up_proj.weight` has shape [176, 64], `deduction` has [128, 64]",
        ),
        (
            "missing",
            "Input `induction`: no tensor `model.norm.weight`, which `deduction` has",
        ),
        (
            "extra",
            "Input `induction`: extra tensor `model.extra.weight`, which `deduction` has not",
        ),
        (
            "dtype",
            "Input `induction`: tensor `model.layers.1.self_attn.k_proj.bias` is F32, `deduction` has BF16",
        ),
        (
            "llama",
            "Input `induction`: config.json has `architectures` = [\"LlamaForCausalLM\"], `deduction` has [\"Qwen2ForCausalLM\"]",
        ),
        (
            "layers",
            "Input `induction`: config.json has `num_hidden_layers` = 3, `deduction` has 2",
        ),
        ("empty", "Input `induction`: "),
        ("truncated", "Input `induction`: "),
    ];
    for (folder, message) in cases {
        let outcome = models.merge(
            folder,
            &["deduction", &format!("induction={folder}")],
            &["-w", "deduction=1", "-w", "induction=0.2"],
        );
        assert_eq!(outcome.code, 1, "{folder}: {outcome}");
        assert!(
            outcome.stderr.contains(message),
            "{folder}: expected {message:?} in\n{outcome}"
        );
        assert!(!outcome.stderr.contains("panicked"), "{outcome}");
        assert!(
            !models.output(folder).exists(),
            "{folder}: no half-written output is left"
        );
    }
    let empty = models.merge(
        "e",
        &["deduction", "induction=empty"],
        &["-w", "deduction=1", "-w", "induction=1"],
    );
    assert!(empty.stderr.contains("has no `config.json`"), "{empty}");
    let truncated = models.merge(
        "t",
        &["deduction", "induction=truncated"],
        &["-w", "deduction=1", "-w", "induction=1"],
    );
    assert!(
        truncated.stderr.contains("is not a valid safetensors file"),
        "{truncated}"
    );

    // Bad flags: exit code 2, nothing written.
    for (flags, message) in [
        (
            vec!["-w", "deduction=1"],
            "Model `induction` has no weight: add `--weight induction=1.0`",
        ),
        (
            vec!["-w", "deduction=1", "-w", "induction=x"],
            "`x` is not a number",
        ),
        (
            vec!["-w", "deduction=1", "-w", "induction=1", "-w", "typo=1"],
            "`typo`, which is not an input",
        ),
        (
            vec![
                "-w",
                "deduction=1",
                "-w",
                "induction=1",
                "--method",
                "slerp",
            ],
            "Unknown merge method `slerp`",
        ),
        (
            vec!["-w", "deduction=1", "-w", "induction=1", "--dtype", "int8"],
            "Unknown dtype `int8`",
        ),
        (vec!["-w", "deduction=1", "-w", "induction=-1"], "sum to 0"),
        (
            vec![
                "-w",
                "deduction=1",
                "-w",
                "induction=1",
                "--method",
                "task_arithmetic",
            ],
            "needs an input named `base`",
        ),
    ] {
        let outcome = models.merge("flags", &["deduction", "induction=deduction"], &flags);
        assert_eq!(outcome.code, 2, "{flags:?}: {outcome}");
        assert!(
            outcome.stderr.contains(message),
            "{flags:?}: expected {message:?} in\n{outcome}"
        );
        assert!(!models.output("flags").exists());
    }
}

#[test]
fn sharded_inputs_keep_their_layout_and_values() {
    let models = Models::new();
    let shape = Shape {
        tied: true,
        ..SMALL
    };
    let a = models.add("a-sharded", &shape, Dtype::BF16, 3, 3);
    let b = random_tensors(&shape, Dtype::BF16, 4);
    write_model(&models.dir("b-single"), &config(&shape, "bfloat16"), &b, 1);
    write_model(&models.dir("a-single"), &config(&shape, "bfloat16"), &a, 1);
    let weights = ["-w", "a=0.6", "-w", "b=0.4"];
    models
        .merge("sharded", &["a=a-sharded", "b=b-single"], &weights)
        .success();
    models
        .merge("single", &["a=a-single", "b=b-single"], &weights)
        .success();
    let sharded = models.output("sharded");
    let index: Value =
        serde_json::from_slice(&read(&sharded.join("model.safetensors.index.json"))).unwrap();
    let input_index: Value = serde_json::from_slice(&read(
        &models.dir("a-sharded").join("model.safetensors.index.json"),
    ))
    .unwrap();
    assert_eq!(index["weight_map"], input_index["weight_map"]);
    let total: usize = a.values().map(|raw| raw.data.len()).sum();
    assert_eq!(index["metadata"]["total_size"], json!(total));
    for number in 1..=3 {
        let file = format!("model-{number:05}-of-00003.safetensors");
        assert!(sharded.join(&file).is_file(), "{file}");
    }
    assert!(!sharded.join("model.safetensors").exists());
    assert!(!shape.tied || !a.contains_key("lm_head.weight"));
    let merged = read_weights(&sharded);
    assert_eq!(merged, read_weights(&models.output("single")));
    let name = "model.embed_tokens.weight";
    assert_eq!(
        merged[name],
        weighted(&[(&a[name], 0.6), (&b[name], 0.4)], true, Dtype::BF16)
    );
    // The same merge again: the same bytes.
    models
        .merge("again", &["a=a-sharded", "b=b-single"], &weights)
        .success();
    for number in 1..=3 {
        let file = format!("model-{number:05}-of-00003.safetensors");
        assert_eq!(
            read(&sharded.join(&file)),
            read(&models.output("again").join(&file))
        );
    }
}

#[test]
fn a_merge_node_runs_caches_and_reruns_on_new_weights_only() {
    let models = Models::new();
    let sandbox = &models.sandbox;
    models.add("deduction", &SMALL, Dtype::BF16, 21, 1);
    models.add("induction", &SMALL, Dtype::BF16, 22, 1);
    models.add("abduction", &SMALL, Dtype::BF16, 23, 2);
    let workflow = format!(
        r#"[merge]
kind = "merge"
inputs = {{ deduction = "./models/deduction", induction = "./models/induction", abduction = "./models/abduction" }}
weights = {{ deduction = 1.0, induction = 0.2, abduction = 0.1 }}

[size]
kind = "exec"
inputs = {{ model = "merge" }}
command = {}
"#,
        common::counted(
            sandbox,
            0.0,
            "size",
            "wc -c < {inputs.model}/config.json > out/size.txt"
        )
    );
    sandbox.workflow(&workflow);
    let first = sandbox.run_ok(&[]);
    expect_statuses(&first, &[("merge", "ran"), ("size", "ran")]);
    let listing = sandbox.listing("merge");
    for file in [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "config.json",
        "tokenizer.json",
        "generation_config.json",
        "merge.json",
    ] {
        assert!(
            listing.contains_key(file),
            "{file} missing from {listing:?}"
        );
    }
    let record: Value = serde_json::from_str(&sandbox.cat("merge", "merge.json")).unwrap();
    assert_eq!(
        record["weights"],
        json!({"abduction": 0.1, "deduction": 1.0, "induction": 0.2})
    );
    assert_eq!(record["template"], "abduction");

    // The node computes what the command computes.
    models
        .merge(
            "cli",
            &["abduction", "deduction", "induction"],
            &[
                "-w",
                "deduction=1.0",
                "-w",
                "induction=0.2",
                "-w",
                "abduction=0.1",
            ],
        )
        .success();
    for file in [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ] {
        let blob = sandbox.blob_path(&listing[file].1);
        assert_eq!(
            read(&blob),
            read(&models.output("cli").join(file)),
            "{file}"
        );
    }

    let again = sandbox.run_ok(&[]);
    expect_statuses(&again, &[("merge", "cached"), ("size", "cached")]);
    // `1` and `1.0` are the same weight: still cached.
    let same = sandbox.run_ok(&["--set", "merge.weights.deduction=1"]);
    expect_statuses(&same, &[("merge", "cached"), ("size", "cached")]);
    let plan = sandbox.plan(&["--set", "merge.weights.induction=0.3"]);
    assert_eq!(common::reason_names(&plan, "merge"), vec!["param_changed"]);
    let changed = sandbox.run_ok(&["--set", "merge.weights.induction=0.3"]);
    expect_statuses(&changed, &[("merge", "ran"), ("size", "ran")]);
    assert_ne!(
        common::outputs(&changed)["merge"],
        common::outputs(&first)["merge"]
    );
    assert_eq!(sandbox.count("size"), 2);
    sandbox.assert_store_sound();

    // A weight naming no input is refused before anything runs.
    sandbox.workflow(&workflow.replace("abduction = 0.1", "abduction = 0.1, typo = 2.0"));
    let outcome = sandbox.peirce(&["run", "wf.toml"]);
    assert_eq!(outcome.code, 2, "{outcome}");
    assert!(
        outcome.stderr.contains("`typo`, which is not an input"),
        "{outcome}"
    );
}

/// mergekit's `mergekit-yaml`, installed by scripts/test through scripts/mergekit.sh.
fn mergekit() -> Option<PathBuf> {
    peirce_testing::external(
        "PEIRCE_MERGEKIT",
        "the_linear_merge_equals_mergekits_bit_for_bit",
        "scripts/test installs mergekit into its own virtualenv; or `source \
         scripts/mergekit.sh; peirce_mergekit_setup` and export it",
    )
    .map(PathBuf::from)
}

#[test]
fn the_linear_merge_equals_mergekits_bit_for_bit() {
    let Some(mergekit) = mergekit() else {
        return;
    };
    let models = Models::new();
    let weights = [("abduction", 0.1), ("deduction", 1.0), ("induction", 0.2)];
    for dtype in [Dtype::F32, Dtype::BF16] {
        let name = dtype_name(dtype);
        let mut yaml = format!("merge_method: linear\ndtype: {name}\nmodels:\n");
        let mut inputs = Vec::new();
        for (seed, (model, weight)) in weights.iter().enumerate() {
            let folder = format!("{model}-{name}");
            models.add(&folder, &SMALL, dtype, 100 + seed as u64, 1);
            yaml.push_str(&format!(
                "  - model: {}\n    parameters:\n      weight: {weight}\n",
                models.dir(&folder).display()
            ));
            inputs.push(format!("{model}={folder}"));
        }
        let config = models.sandbox.write(&format!("mergekit-{name}.yml"), &yaml);
        let reference = models.output(&format!("mergekit-{name}"));
        let outcome = Command::new(&mergekit)
            .arg(&config)
            .arg(&reference)
            .args(["--no-copy-tokenizer", "--quiet", "--no-cuda"])
            .output()
            .expect("running mergekit-yaml");
        assert!(
            outcome.status.success(),
            "mergekit failed: {}\n{}",
            String::from_utf8_lossy(&outcome.stdout),
            String::from_utf8_lossy(&outcome.stderr)
        );
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let mut flags = Vec::new();
        for (model, weight) in weights {
            flags.push("-w".to_string());
            flags.push(format!("{model}={weight}"));
        }
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        models.merge(name, &inputs, &flags).success();
        let ours = read_weights(&models.output(name));
        let theirs = read_weights(&reference);
        assert_eq!(
            ours.keys().collect::<Vec<_>>(),
            theirs.keys().collect::<Vec<_>>(),
            "{name}: tensor names"
        );
        let mut elements = 0;
        for (tensor, raw) in &ours {
            let other = &theirs[tensor];
            assert_eq!(
                (raw.dtype, &raw.shape),
                (other.dtype, &other.shape),
                "{tensor}"
            );
            if raw.data != other.data {
                let (a, b) = (decode(raw), decode(other));
                let differing = a
                    .iter()
                    .zip(&b)
                    .filter(|(x, y)| x.to_bits() != y.to_bits())
                    .count();
                let (i, (x, y)) = a
                    .iter()
                    .zip(&b)
                    .enumerate()
                    .find(|(_, (x, y))| x.to_bits() != y.to_bits())
                    .unwrap();
                panic!("{name}: tensor `{tensor}` differs from mergekit's in {differing} of {} elements; first [{i}]: ours {x:e}, mergekit {y:e}", a.len());
            }
            elements += decode(raw).len();
        }
        assert!(elements > 80_000, "{name}: compared {elements} elements");
    }
}
