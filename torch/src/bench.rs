//! `peirce-worker bench`: throughput of the sampler and of the REINFORCE++ step on a
//! randomly initialized Qwen2, printed as one JSON line.
//!
//! It exists to compare against the same work in Python (`scripts/gpu_bench_reference.py`,
//! Hugging Face `transformers` and PyTorch eager; `scripts/gpu-bench` runs both on a GPU
//! and prints the ratios), so it builds the model from a config alone (a built-in preset or
//! a `config.json`) and no checkpoint has to travel. Generation never stops early: no
//! end-of-sequence id or stop sequence is set, so every row gets exactly `--new-tokens`.
//! The training step runs [`train::policy_step`] unchanged on synthetic rollouts (random
//! tokens, random logic-task rewards).
//!
//! It measures wall-clock time around whole calls, after warm-up, with the device
//! synchronized on both sides of each timing, and the training step's peak GPU memory as the
//! driver reports it. With `--profile-kernels N` it also profiles one more generation and its
//! prefill alone (libtorch's profiler, [`crate::profile`]) and prints the `N` kernels that
//! take most of a decoding step, each as milliseconds and launches per step, beside the sum of
//! all kernels' time per step (what the step's wall time has beyond it is the device idle:
//! launches, host work, synchronization), and the prefill's own longest kernels.

use std::path::PathBuf;
use std::time::Instant;

use peirce_tasks::reward::{AnswerStatus, Score};
use serde_json::json;
use tch::nn::OptimizerConfig;
use tch::{nn, Device, Kind, Tensor};

use crate::error::{read_json, Result, TorchError};
use crate::kernels::{self, Kernels};
use crate::optim::{Optimizer, StatePlacement};
use crate::parallel::Ranks;
use crate::pretrained::{self, parse_dtype, CONFIG};
use crate::profile;
use crate::qwen2::{self, Config, Qwen2};
use crate::sampler::{
    self, generate, generate_requests, Batching, Completion, Finish, Request, SamplingParams,
    Schedule,
};
use crate::train::{self, Algorithm, Rollout, TrainConfig};

/// The usage line printed on bad arguments.
pub const USAGE: &str =
    "usage: peirce-worker bench [--preset qwen2-0.5b|qwen2.5-1.5b|qwen2.5-7b|tiny] [--config FILE_OR_DIR] \
[--device cuda|cpu] [--dtype bf16|fp32|fp16] [--batch N] [--prompt-tokens N] [--new-tokens N] \
[--temperature T] [--warmup-tokens N] [--sample-iterations N] [--train-rows N] \
[--train-prompt-tokens N] [--response-tokens N] [--micro-batch N] [--train-warmup N] \
[--train-iterations N] [--optimizer master|offload|pure] [--gradient-checkpointing] \
[--shared-reference] [--seed N] \
[--threads N] [--skip-sample] [--skip-train] [--sampler continuous|static] [--cuda-graphs on|off] \
[--kernels libtorch|fused|all] [--skewed-requests N] [--skewed-max-tokens N] [--profile-kernels N]";

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The model's shape: a preset name or a `config.json` (file or folder).
    pub model: ModelSource,
    /// Where to run.
    pub device: Device,
    /// The weights' dtype.
    pub dtype: Kind,
    /// Rows generated at once.
    pub batch: usize,
    /// Prompt length of every generated row (all equal: no padding).
    pub prompt_tokens: usize,
    /// New tokens per row.
    pub new_tokens: i64,
    /// Sampling temperature (0: greedy).
    pub temperature: f64,
    /// New tokens of the untimed warm-up generation.
    pub warmup_tokens: i64,
    /// Timed generations (the figure is their mean).
    pub sample_iterations: usize,
    /// Rollouts per training step.
    pub train_rows: usize,
    /// Prompt length of every rollout.
    pub train_prompt_tokens: usize,
    /// Response length of every rollout.
    pub response_tokens: usize,
    /// Rows per forward/backward.
    pub micro_batch: usize,
    /// Untimed training steps.
    pub train_warmup: usize,
    /// Timed training steps.
    pub train_iterations: usize,
    /// The training step's optimizer.
    pub optimizer: BenchOptimizer,
    /// Recompute each decoder layer in the backward.
    pub gradient_checkpointing: bool,
    /// The KL's reference forward runs on the policy's own weights instead of a frozen copy:
    /// the same work per step without the copy's memory (15 GB at 7B), so that pure bf16
    /// at 7B fits an 80 GB GPU for the comparison with offloaded state.
    pub shared_reference: bool,
    /// Seeds the weights, the prompts and the rewards.
    pub seed: u64,
    /// CPU threads for libtorch (0: its default).
    pub threads: i32,
    /// Leave out the generation figure.
    pub skip_sample: bool,
    /// Leave out the training figure.
    pub skip_train: bool,
    /// The generation figure's sampler: continuous batching (`batch` slots) or the static
    /// batch ([`sampler::generate`]).
    pub sampler: BenchSampler,
    /// Continuous batching on CUDA: replay decoding steps as CUDA graphs.
    pub cuda_graphs: bool,
    /// Continuous batching on CUDA: which decoding kernels ([`crate::kernels`]).
    pub kernels: Kernels,
    /// When above 0: the skewed rollout instead of the fixed-length figure: this many
    /// requests with response lengths drawn from a skewed distribution, decoded in `batch`
    /// slots by static and by continuous batching.
    pub skewed_requests: usize,
    /// The skewed rollout's longest response.
    pub skewed_max_tokens: i64,
    /// When above 0: profile a generation and print this many of its kernels that take most
    /// of a decoding step.
    pub profile_kernels: usize,
}

/// The sampler of the bench's generation figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchSampler {
    /// [`sampler::generate_requests`] with `batch` slots.
    Continuous,
    /// [`sampler::generate`], one static batch.
    Static,
}

/// The optimizer of the bench's training step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchOptimizer {
    /// [`crate::optim::MasterAdamW`], fp32 state with the model (the trainers' default).
    Master,
    /// The same with its state in host memory (`optimizer_offload`).
    Offload,
    /// libtorch's AdamW with its state in the weights' dtype: pure bf16 for a bf16 model,
    /// which rounds away updates far below a weight's resolution (the reference figure).
    Pure,
}

impl BenchOptimizer {
    fn parse(name: &str) -> Result<Self> {
        match name {
            "master" => Ok(Self::Master),
            "offload" => Ok(Self::Offload),
            "pure" => Ok(Self::Pure),
            other => Err(TorchError::Invalid(format!(
                "unknown optimizer `{other}` (master, offload, pure)"
            ))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Master => "master",
            Self::Offload => "offload",
            Self::Pure => "pure",
        }
    }
}

/// Where the model's shape comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    /// A built-in shape: `qwen2-0.5b` or `tiny`.
    Preset(String),
    /// A `config.json`, or a folder holding one.
    Config(PathBuf),
}

impl Default for BenchOptions {
    fn default() -> Self {
        // The decoding defaults are the sampler's (what `align`, `domain-rl` and `eval` run).
        let decoding = SamplingParams::default();
        Self {
            model: ModelSource::Preset("qwen2-0.5b".into()),
            device: Device::cuda_if_available(),
            dtype: Kind::BFloat16,
            batch: 64,
            prompt_tokens: 64,
            new_tokens: 512,
            temperature: 0.0,
            warmup_tokens: 32,
            sample_iterations: 1,
            train_rows: 64,
            train_prompt_tokens: 64,
            response_tokens: 512,
            micro_batch: 8,
            train_warmup: 1,
            train_iterations: 3,
            optimizer: BenchOptimizer::Master,
            gradient_checkpointing: false,
            shared_reference: false,
            seed: 0,
            threads: 0,
            skip_sample: false,
            skip_train: false,
            sampler: BenchSampler::Continuous,
            cuda_graphs: decoding.cuda_graphs,
            kernels: decoding.kernels,
            skewed_requests: 0,
            skewed_max_tokens: 8192,
            profile_kernels: 0,
        }
    }
}

impl BenchOptions {
    /// Parses the arguments after `bench`.
    pub fn parse(args: &[String]) -> Result<Self> {
        let mut options = Self::default();
        let mut iter = args.iter();
        while let Some(flag) = iter.next() {
            let mut value = || {
                iter.next()
                    .ok_or_else(|| TorchError::Invalid(format!("`{flag}` needs a value")))
            };
            match flag.as_str() {
                "--preset" => options.model = ModelSource::Preset(value()?.clone()),
                "--config" | "--model" => {
                    options.model = ModelSource::Config(PathBuf::from(value()?))
                }
                "--device" => options.device = parse_device(value()?)?,
                "--dtype" => options.dtype = parse_dtype(value()?)?,
                "--batch" => options.batch = number(flag, value()?)?,
                "--prompt-tokens" => options.prompt_tokens = number(flag, value()?)?,
                "--new-tokens" => options.new_tokens = number(flag, value()?)?,
                "--temperature" => options.temperature = number(flag, value()?)?,
                "--warmup-tokens" => options.warmup_tokens = number(flag, value()?)?,
                "--sample-iterations" => options.sample_iterations = number(flag, value()?)?,
                "--train-rows" => options.train_rows = number(flag, value()?)?,
                "--train-prompt-tokens" => options.train_prompt_tokens = number(flag, value()?)?,
                "--response-tokens" => options.response_tokens = number(flag, value()?)?,
                "--micro-batch" => options.micro_batch = number(flag, value()?)?,
                "--train-warmup" => options.train_warmup = number(flag, value()?)?,
                "--train-iterations" => options.train_iterations = number(flag, value()?)?,
                "--optimizer" => options.optimizer = BenchOptimizer::parse(value()?)?,
                "--gradient-checkpointing" => options.gradient_checkpointing = true,
                "--shared-reference" => options.shared_reference = true,
                "--seed" => options.seed = number(flag, value()?)?,
                "--threads" => options.threads = number(flag, value()?)?,
                "--skip-sample" => options.skip_sample = true,
                "--skip-train" => options.skip_train = true,
                "--sampler" => {
                    options.sampler = match value()?.as_str() {
                        "continuous" => BenchSampler::Continuous,
                        "static" => BenchSampler::Static,
                        other => {
                            return Err(TorchError::Invalid(format!(
                                "unknown sampler `{other}` (continuous, static)"
                            )))
                        }
                    }
                }
                "--cuda-graphs" => options.cuda_graphs = on_off(flag, value()?)?,
                "--kernels" => {
                    options.kernels = Kernels::parse(value()?).map_err(TorchError::Invalid)?
                }
                "--skewed-requests" => options.skewed_requests = number(flag, value()?)?,
                "--skewed-max-tokens" => options.skewed_max_tokens = number(flag, value()?)?,
                "--profile-kernels" => options.profile_kernels = number(flag, value()?)?,
                other => {
                    return Err(TorchError::Invalid(format!(
                        "unknown bench argument `{other}`"
                    )))
                }
            }
        }
        if options.batch == 0 || options.prompt_tokens == 0 || options.new_tokens <= 0 {
            return Err(TorchError::Invalid(
                "`--batch`, `--prompt-tokens` and `--new-tokens` must be positive".into(),
            ));
        }
        if options.train_rows == 0 || options.train_prompt_tokens == 0 {
            return Err(TorchError::Invalid(
                "`--train-rows` and `--train-prompt-tokens` must be positive".into(),
            ));
        }
        options.sample_iterations = options.sample_iterations.max(1);
        options.train_iterations = options.train_iterations.max(1);
        Ok(options)
    }
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T> {
    value
        .parse()
        .map_err(|_| TorchError::Invalid(format!("`{flag}` takes a number, not `{value}`")))
}

fn on_off(flag: &str, value: &str) -> Result<bool> {
    match value {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(TorchError::Invalid(format!(
            "`{flag}` is on or off, not `{other}`"
        ))),
    }
}

fn parse_device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" | "gpu" => Ok(Device::Cuda(0)),
        other => Err(TorchError::Invalid(format!(
            "unknown device `{other}` (cuda, cpu)"
        ))),
    }
}

/// Qwen2-0.5B's shape (Hugging Face `Qwen/Qwen2-0.5B` `config.json`).
pub fn qwen2_0_5b() -> Config {
    preset_config(json!({
        "vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864,
        "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
        "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
        "tie_word_embeddings": true, "hidden_act": "silu", "initializer_range": 0.02,
        "use_sliding_window": false,
    }))
}

/// Qwen2.5-1.5B's shape (Hugging Face `Qwen/Qwen2.5-1.5B-Instruct` `config.json`).
pub fn qwen2_5_1_5b() -> Config {
    preset_config(json!({
        "vocab_size": 151936, "hidden_size": 1536, "intermediate_size": 8960,
        "num_hidden_layers": 28, "num_attention_heads": 12, "num_key_value_heads": 2,
        "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
        "tie_word_embeddings": true, "hidden_act": "silu", "initializer_range": 0.02,
        "use_sliding_window": false,
    }))
}

/// Qwen2.5-7B's shape (Hugging Face `Qwen/Qwen2.5-7B-Instruct` `config.json`).
pub fn qwen2_5_7b() -> Config {
    preset_config(json!({
        "vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944,
        "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
        "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
        "tie_word_embeddings": false, "hidden_act": "silu", "initializer_range": 0.02,
        "use_sliding_window": false,
    }))
}

/// A shape small enough for a CPU smoke test.
pub fn tiny() -> Config {
    preset_config(json!({
        "vocab_size": 512, "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "rope_theta": 10000.0, "tie_word_embeddings": true,
    }))
}

fn preset_config(value: serde_json::Value) -> Config {
    serde_json::from_value(value).expect("the preset configs are valid")
}

fn config(source: &ModelSource) -> Result<Config> {
    match source {
        ModelSource::Preset(name) => match name.as_str() {
            "qwen2-0.5b" => Ok(qwen2_0_5b()),
            "qwen2.5-1.5b" => Ok(qwen2_5_1_5b()),
            "qwen2.5-7b" => Ok(qwen2_5_7b()),
            "tiny" => Ok(tiny()),
            other => Err(TorchError::Invalid(format!(
                "unknown preset `{other}` (qwen2-0.5b, qwen2.5-1.5b, qwen2.5-7b, tiny)"
            ))),
        },
        ModelSource::Config(path) if path.is_dir() => read_json(&path.join(CONFIG)),
        ModelSource::Config(path) => read_json(path),
    }
}

/// A randomly initialized model in `kind` on `device`, the same for the same `seed`.
fn random_model(
    cfg: &Config,
    device: Device,
    dtype: Kind,
    seed: u64,
) -> Result<(nn::VarStore, Qwen2)> {
    tch::manual_seed(seed as i64);
    let mut vs = nn::VarStore::new(device);
    let net = Qwen2::new(cfg, &vs.root())?;
    pretrained::set_dtype(&mut vs, dtype);
    Ok((vs, net))
}

/// A small seeded generator (splitmix64) for prompts and rewards: no `rand` dependency,
/// and the same numbers on every machine.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn tokens(&mut self, count: usize, vocab: i64) -> Vec<i64> {
        (0..count)
            .map(|_| (self.next() % vocab as u64) as i64)
            .collect()
    }
}

fn synchronize(device: Device) {
    if let Device::Cuda(index) = device {
        tch::Cuda::synchronize(index as i64);
    }
}

/// The most GPU memory this process held while it ran, as the driver counts it (the CUDA
/// context plus everything libtorch's caching allocator reserved), sampled every 100 ms from
/// `nvidia-smi --query-compute-apps`. The allocator keeps what it reserved, so its peak is
/// still there at the next sample.
struct GpuMemoryProbe {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Option<u64>>>,
}

impl GpuMemoryProbe {
    fn start(device: Device) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = device.is_cuda().then(|| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let pid = std::process::id().to_string();
                let mut peak: Option<u64> = None;
                loop {
                    let last = stop.load(std::sync::atomic::Ordering::SeqCst);
                    let output = std::process::Command::new("nvidia-smi")
                        .args([
                            "--query-compute-apps=pid,used_memory",
                            "--format=csv,noheader,nounits",
                        ])
                        .output()
                        .ok()?;
                    for line in String::from_utf8_lossy(&output.stdout).lines() {
                        let mut fields = line.split(',').map(str::trim);
                        if fields.next() == Some(pid.as_str()) {
                            if let Some(mib) = fields.next().and_then(|f| f.parse::<u64>().ok()) {
                                peak = Some(peak.map_or(mib, |p| p.max(mib)));
                            }
                        }
                    }
                    if last {
                        return peak;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            })
        });
        Self { stop, thread }
    }

    /// The peak in MiB (`None` on the CPU, or without `nvidia-smi`).
    fn stop(self) -> Option<u64> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.and_then(|thread| thread.join().ok().flatten())
    }
}

/// Runs the benchmark; the result is the JSON line `peirce-worker bench` prints.
pub fn run(options: &BenchOptions) -> Result<serde_json::Value> {
    if options.threads > 0 {
        tch::set_num_threads(options.threads);
    }
    let cfg = config(&options.model)?;
    let device = options.device;
    if device.is_cuda() && !tch::Cuda::is_available() {
        return Err(TorchError::Invalid(
            "`--device cuda`: libtorch sees no CUDA device".into(),
        ));
    }
    let (policy_vs, policy) = random_model(&cfg, device, options.dtype, options.seed)?;
    let parameters = pretrained::parameter_count(&policy_vs);
    let mut rng = SplitMix(options.seed);
    let mut result = json!({
        "bench": "peirce",
        "device": format!("{device:?}"),
        "dtype": pretrained::dtype_name(options.dtype)?,
        "model": {
            "hidden_size": cfg.hidden_size,
            "intermediate_size": cfg.intermediate_size,
            "num_hidden_layers": cfg.num_hidden_layers,
            "num_attention_heads": cfg.num_attention_heads,
            "num_key_value_heads": cfg.num_key_value_heads,
            "vocab_size": cfg.vocab_size,
            "parameters": parameters,
        },
    });
    if options.skewed_requests > 0 {
        result["skewed"] = skewed(&policy, options, &mut rng)?;
    } else if !options.skip_sample {
        result["sample"] = sample(&policy, options, &mut rng)?;
    }
    if !options.skip_train {
        result["train"] = train(&cfg, &policy_vs, &policy, options, &mut rng)?;
    }
    Ok(result)
}

fn sample(model: &Qwen2, options: &BenchOptions, rng: &mut SplitMix) -> Result<serde_json::Value> {
    let prompts: Vec<Vec<i64>> = (0..options.batch)
        .map(|_| rng.tokens(options.prompt_tokens, model.config.vocab_size))
        .collect();
    // No end-of-sequence id and no stop sequence: every row runs to `max_new_tokens`.
    let params = |max_new_tokens: i64, seed: u64| SamplingParams {
        max_new_tokens,
        temperature: options.temperature,
        top_p: 1.0,
        seed,
        eos: Vec::new(),
        stop_sequences: Vec::new(),
        pad: 0,
        cuda_graphs: options.cuda_graphs,
        kernels: options.kernels,
        ..SamplingParams::default()
    };
    let device = model.device();
    let bandwidth = copy_bandwidth(device)?;
    let run = |params: &SamplingParams| -> Result<(Vec<Completion>, sampler::DecodeStats)> {
        match options.sampler {
            BenchSampler::Static => Ok((generate(model, &prompts, params)?, Default::default())),
            BenchSampler::Continuous => {
                sampler::generate_continuous_stats(model, &prompts, params, options.batch)
            }
        }
    };
    if options.warmup_tokens > 0 {
        run(&params(options.warmup_tokens, options.seed))?;
    }
    // The prompt's forward pass and the first token alone, to split the figure into prefill
    // and per-step decode cost.
    synchronize(device);
    let started = Instant::now();
    run(&params(1, options.seed))?;
    synchronize(device);
    let prefill = started.elapsed().as_secs_f64();
    let mut seconds = 0.0;
    let mut stats = sampler::DecodeStats::default();
    for iteration in 0..options.sample_iterations {
        synchronize(device);
        let started = Instant::now();
        let (done, call) = run(&params(
            options.new_tokens,
            options.seed + 1 + iteration as u64,
        ))?;
        synchronize(device);
        seconds += started.elapsed().as_secs_f64();
        if let Some(row) = done
            .iter()
            .position(|c| c.tokens.len() as i64 != options.new_tokens)
        {
            return Err(TorchError::Invalid(format!(
                "row {row} stopped after {} tokens, expected {}",
                done[row].tokens.len(),
                options.new_tokens
            )));
        }
        stats = call;
    }
    let seconds = seconds / options.sample_iterations as f64;
    let tokens = options.batch as f64 * options.new_tokens as f64;
    let ms_per_step = 1e3 * (seconds - prefill) / (options.new_tokens - 1).max(1) as f64;
    // The floor: every weight and every row's cached keys and values read once per step, at
    // the measured copy rate (the mean context over the generation).
    let context = options.prompt_tokens as f64 + options.new_tokens as f64 / 2.0;
    let bytes = step_bytes(&model.config, options.dtype, options.batch as f64 * context);
    let floor_ms = 1e3 * bytes / bandwidth;
    let mut result = json!({
        "sampler": match options.sampler {
            BenchSampler::Continuous => "continuous",
            BenchSampler::Static => "static",
        },
        "cuda_graphs": stats.graph_replays > 0,
        "graphs_captured": stats.graphs_captured,
        "kernels": stats.kernels,
        "batch": options.batch,
        "prompt_tokens": options.prompt_tokens,
        "new_tokens": options.new_tokens,
        "temperature": options.temperature,
        "iterations": options.sample_iterations,
        "seconds": seconds,
        "tokens_per_second": tokens / seconds,
        "prefill_seconds": prefill,
        "decode_ms_per_step": ms_per_step,
        "copy_bandwidth_gb_per_s": bandwidth / 1e9,
        "floor_bytes_per_step": bytes,
        "floor_ms_per_step": floor_ms,
        "fraction_of_floor": floor_ms / ms_per_step,
    });
    // With CUDA graphs, the same generation without them must give the same tokens (the
    // graphs replay the same kernels on the same shapes); and the static batch's, where the
    // kernels differ, row by row.
    if stats.graph_replays > 0 {
        let check = params(options.new_tokens.min(128), options.seed + 1);
        let eager = SamplingParams {
            cuda_graphs: false,
            ..check.clone()
        };
        let (graphs, _) = run(&check)?;
        let (eager, _) = run(&eager)?;
        let fixed = generate(model, &prompts, &check)?;
        let same = |a: &[Completion], b: &[Completion]| {
            a.iter()
                .zip(b)
                .filter(|(a, b)| a.tokens == b.tokens)
                .count()
        };
        result["check_tokens"] = json!(check.max_new_tokens);
        result["rows_equal_graphs_vs_eager"] = json!(same(&graphs, &eager));
        // Where two runs' kernels round differently (and a random model's next-token scores
        // are close): the tokens they agree on before the first difference, on average.
        let common_prefix = |a: &[Completion], b: &[Completion]| {
            let tokens: usize = a
                .iter()
                .zip(b)
                .map(|(a, b)| {
                    a.tokens
                        .iter()
                        .zip(&b.tokens)
                        .take_while(|(x, y)| x == y)
                        .count()
                })
                .sum();
            tokens as f64 / a.len().max(1) as f64
        };
        // peirce's fused kernels compute libtorch's ops' arithmetic: how many rows give the same
        // tokens as without them. Its attention rounds differently: how far its tokens follow
        // the fused kernels', and its error against fp32 beside libtorch's attention's.
        if stats.kernels != Kernels::Libtorch {
            let with = |kernels: Kernels| SamplingParams {
                kernels,
                ..check.clone()
            };
            let (fused, _) = match stats.kernels {
                Kernels::Fused => (graphs.clone(), stats),
                _ => run(&with(Kernels::Fused))?,
            };
            let (libtorch, _) = run(&with(Kernels::Libtorch))?;
            result["rows_equal_fused_vs_libtorch"] = json!(same(&fused, &libtorch));
            if stats.kernels == Kernels::All {
                result["rows_equal_all_vs_fused"] = json!(same(&graphs, &fused));
                result["mean_common_prefix_all_vs_fused"] = json!(common_prefix(&graphs, &fused));
            }
        }
        // The attention kernel's error wherever it ran.
        let cfg = &model.config;
        if stats.kernels == Kernels::All {
            // Eight rows at random positions below 4,096: too few blocks to fill a GPU, so
            // the rows past 128 positions are split (`kernels::attention_splits`), each into
            // as many splits as its length has, and merged by the combine kernel.
            result["attention_error"] = attention_error(cfg, options.dtype, device, 8, 4096)?;
            // The batch's rows below 100 positions: one split, which writes the output itself.
            let rows = options.batch as i64;
            result["attention_error_one_split"] =
                attention_error(cfg, options.dtype, device, rows, 100)?;
        }
        if stats.kernels != Kernels::Libtorch {
            result["kernel_checks"] =
                kernel_checks(cfg, options.dtype, device, options.batch as i64)?;
        }
        result["rows_equal_continuous_vs_static"] = json!(same(&graphs, &fixed));
        result["mean_common_prefix_continuous_vs_static"] = json!(common_prefix(&graphs, &fixed));
        result["rows"] = json!(prompts.len());
    }
    if options.profile_kernels > 0 {
        // A decoding step's kernels: those of the whole generation less those of its prefill
        // and first token, per step, as `decode_ms_per_step` is computed.
        let profiled = |new_tokens: i64| -> Result<Vec<profile::KernelTime>> {
            synchronize(device);
            let (_, kernels) = profile::kernels(|| {
                let done = run(&params(new_tokens, options.seed + 1));
                synchronize(device);
                done
            })?;
            Ok(kernels)
        };
        let prefill = profiled(1)?;
        let whole = profiled(options.new_tokens)?;
        let steps = (options.new_tokens - 1).max(1) as f64;
        let step = profile::difference(&whole, &prefill);
        let total_ms = |kernels: &[profile::KernelTime]| {
            kernels.iter().map(|k| k.nanos as f64).sum::<f64>() / 1e6
        };
        // The `N` longest of `kernels`: their time and launches divided by `per`, under the
        // keys the caller names, and their names.
        let top = |kernels: &[profile::KernelTime], per: f64, ms: &str, calls: &str| {
            kernels
                .iter()
                .take(options.profile_kernels)
                .map(|k| {
                    let mut entry = serde_json::Map::new();
                    entry.insert(ms.into(), json!(k.nanos as f64 / 1e6 / per));
                    entry.insert(calls.into(), json!(k.calls as f64 / per));
                    entry.insert(
                        "kernel".into(),
                        json!(k.name.chars().take(160).collect::<String>()),
                    );
                    serde_json::Value::Object(entry)
                })
                .collect::<Vec<_>>()
        };
        let kernel_ms = total_ms(&step) / steps;
        let launches = step.iter().map(|k| k.calls as f64).sum::<f64>() / steps;
        result["kernel_profile"] = json!({
            // The prefill's own kernels (the prompts' forward pass, the decoder's setup and
            // the first token), whole, not per step.
            "prefill": {
                "kernel_ms": total_ms(&prefill),
                "top": top(&prefill, 1.0, "ms", "calls"),
            },
            "kernel_ms_per_step": kernel_ms,
            "kernels_per_step": launches,
            "device_busy_fraction": kernel_ms / ms_per_step,
            "top": top(&step, steps, "ms_per_step", "per_step"),
        });
    }
    Ok(result)
}

/// peirce's decoding attention ([`kernels::decode_attention`]) against libtorch's, both
/// measured against an fp32 reference, on random queries and cache at the model's shape
/// (`rows` rows, each at a random position below `attend`): the largest absolute error of
/// each, the largest absolute output, and the most splits a row could use.
fn attention_error(
    cfg: &Config,
    dtype: Kind,
    device: Device,
    rows: i64,
    attend: i64,
) -> Result<serde_json::Value> {
    let (heads, kv_heads, dim) = (
        cfg.num_attention_heads,
        cfg.num_key_value_heads,
        cfg.head_dim(),
    );
    let capacity = attend + 128;
    let options = (Kind::Float, device);
    let q = Tensor::f_randn([rows, heads, dim], options)?;
    let keys = Tensor::f_randn([rows, kv_heads, capacity, dim], options)?;
    let values = Tensor::f_randn([rows, kv_heads, capacity, dim], options)?;
    let positions = Tensor::f_randint(attend, [rows, 1], (Kind::Int64, device))?;
    // libtorch's grouped decoding attention under the rows' masks, in `kind`.
    let libtorch = |kind: Kind| -> Result<Tensor> {
        let y = qwen2::grouped_decode_attention(
            &q.f_to_kind(kind)?.f_view([rows, heads, 1, dim])?,
            &keys.f_narrow(2, 0, attend)?.f_to_kind(kind)?,
            &values.f_narrow(2, 0, attend)?.f_to_kind(kind)?,
            &qwen2::rows_mask(&positions, attend, kind)?,
        )?;
        Ok(y.f_reshape([rows, heads, dim])?.f_to_kind(Kind::Float)?)
    };
    let reference = libtorch(Kind::Float)?;
    let (q, keys, values) = (
        q.f_to_kind(dtype)?,
        keys.f_to_kind(dtype)?,
        values.f_to_kind(dtype)?,
    );
    let splits = kernels::attention_splits(rows, kv_heads, attend, kernels::multiprocessors(&q)?);
    let ours = kernels::decode_attention(&q, &keys, &values, &positions, splits)?
        .f_to_kind(Kind::Float)?;
    let max = |t: Tensor| -> Result<f64> { Ok(t.f_abs()?.f_max()?.f_double_value(&[])?) };
    Ok(json!({
        "rows": rows,
        "positions_below": attend,
        "splits": splits,
        "peirce_max_abs_error": max(ours.f_sub(&reference)?)?,
        "libtorch_max_abs_error": max(libtorch(dtype)?.f_sub(&reference)?)?,
        "max_abs_output": max(reference)?,
    }))
}

/// peirce's kernels beside the step's attention against libtorch's ops on random inputs at
/// the model's shape: the transposed weight copy (exact, [`qwen2::transposed`] against
/// libtorch's concatenation and copy), and the RMS norm (`rows` rows) and SwiGLU's
/// activation, their largest absolute difference from libtorch's ops (which round as they
/// do, up to the order of the norm's sum: 0, or one bf16 step of the output where a sum
/// lands on a rounding boundary).
fn kernel_checks(
    cfg: &Config,
    dtype: Kind,
    device: Device,
    rows: i64,
) -> Result<serde_json::Value> {
    let (hidden, inner) = (cfg.hidden_size, cfg.intermediate_size);
    let options = (dtype, device);
    let gate = Tensor::f_randn([inner, hidden], options)?;
    let up = Tensor::f_randn([inner, hidden], options)?;
    let ours = qwen2::transposed(&[&gate, &up])?;
    let reference = Tensor::f_cat(&[&gate, &up], 0)?
        .f_transpose(0, 1)?
        .f_contiguous()?;
    let x = Tensor::f_randn([rows, 1, hidden], options)?;
    let weight = Tensor::f_randn([hidden], options)?;
    let eps = cfg.rms_norm_eps;
    let norm = kernels::rms_norm(&x, &weight, eps)?;
    let libtorch_norm = x.f_rms_norm([hidden], Some(&weight), eps)?;
    let gate_up = Tensor::f_randn([rows, 1, 2 * inner], options)?;
    let silu = kernels::silu_mul(&gate_up)?;
    let libtorch_silu = qwen2::swiglu(&gate_up)?;
    let max_difference = |a: &Tensor, b: &Tensor| -> Result<f64> {
        Ok(a.f_to_kind(Kind::Float)?
            .f_sub(&b.f_to_kind(Kind::Float)?)?
            .f_abs()?
            .f_max()?
            .f_double_value(&[])?)
    };
    Ok(json!({
        "transpose_exact": ours.f_equal(&reference)?,
        "rms_norm_max_abs_difference": max_difference(&norm, &libtorch_norm)?,
        "rms_norm_max_abs_output": libtorch_norm.f_abs()?.f_max()?.f_double_value(&[])?,
        "silu_mul_max_abs_difference": max_difference(&silu, &libtorch_silu)?,
    }))
}

/// Bytes a decoding step must read at least: every weight once (the input embedding only
/// where it doubles as the output projection), and `cached_tokens` tokens' keys and values
/// in every layer.
pub fn step_bytes(cfg: &Config, dtype: Kind, cached_tokens: f64) -> f64 {
    let hidden = cfg.hidden_size as f64;
    let head_dim = cfg.head_dim() as f64;
    let (heads, kv_heads) = (
        cfg.num_attention_heads as f64,
        cfg.num_key_value_heads as f64,
    );
    let attention = hidden * head_dim * (heads + 2.0 * kv_heads) + heads * head_dim * hidden;
    let mlp = 3.0 * hidden * cfg.intermediate_size as f64;
    let layers = cfg.num_hidden_layers as f64;
    let output = cfg.vocab_size as f64 * hidden;
    let element = dtype.elt_size_in_bytes() as f64;
    let weights = layers * (attention + mlp) + output;
    let kv = cached_tokens * layers * 2.0 * kv_heads * head_dim;
    (weights + kv) * element
}

/// The device's copy rate in bytes per second: a 1 GiB device-to-device copy (read and
/// written once: 2 GiB moved), best of 5.
fn copy_bandwidth(device: Device) -> Result<f64> {
    let elements = 1i64 << 28;
    let source = tch::Tensor::f_ones([elements], (Kind::Float, device))?;
    let mut target = tch::Tensor::f_zeros([elements], (Kind::Float, device))?;
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        synchronize(device);
        let started = Instant::now();
        target.f_copy_(&source)?;
        synchronize(device);
        best = best.min(started.elapsed().as_secs_f64());
    }
    Ok(2.0 * (elements * 4) as f64 / best)
}

/// The skewed rollout: `skewed_requests` prompts whose responses are cut at lengths drawn
/// from a log-normal distribution (median 256 tokens, sigma 1.2, clipped to 16 and
/// `skewed_max_tokens`: most short, a tail to the maximum), decoded in `batch` slots by
/// static batching (a batch waits for its longest row) and by continuous batching, on the
/// same decoding code. Wall time of each.
fn skewed(model: &Qwen2, options: &BenchOptions, rng: &mut SplitMix) -> Result<serde_json::Value> {
    let count = options.skewed_requests;
    let prompts: Vec<Vec<i64>> = (0..count)
        .map(|_| rng.tokens(options.prompt_tokens, model.config.vocab_size))
        .collect();
    let lengths: Vec<i64> = (0..count)
        .map(|_| {
            // Box-Muller from two uniforms.
            let u1 = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
            let u2 = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
            let normal = (-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            ((256.0 * (1.2 * normal).exp()).round() as i64).clamp(16, options.skewed_max_tokens)
        })
        .collect();
    let requests: Vec<Request<'_>> = prompts
        .iter()
        .zip(&lengths)
        .map(|(prompt, &max_new_tokens)| Request {
            prompt,
            max_new_tokens,
        })
        .collect();
    let params = SamplingParams {
        max_new_tokens: options.skewed_max_tokens,
        temperature: options.temperature,
        seed: options.seed,
        cuda_graphs: options.cuda_graphs,
        kernels: options.kernels,
        ..SamplingParams::default()
    };
    let device = model.device();
    let mut sorted = lengths.clone();
    sorted.sort_unstable();
    let mut result = json!({
        "requests": count,
        "slots": options.batch,
        "prompt_tokens": options.prompt_tokens,
        "response_tokens": lengths.iter().sum::<i64>(),
        "longest": lengths.iter().max(),
        "median": sorted[count / 2],
    });
    let mut outputs = Vec::new();
    for (name, schedule) in [
        ("static", Schedule::Static),
        ("continuous", Schedule::Continuous),
    ] {
        let batching = Batching {
            slots: options.batch,
            schedule,
        };
        synchronize(device);
        let started = Instant::now();
        let (completions, stats) = generate_requests(model, &requests, &params, &batching)?;
        synchronize(device);
        let seconds = started.elapsed().as_secs_f64();
        result[name] = json!({
            "seconds": seconds,
            "steps": stats.steps,
            "tokens_per_second": stats.tokens as f64 / seconds,
            "slot_occupancy": stats.live_slot_steps as f64 / (stats.steps.max(1) * options.batch as u64) as f64,
            "graphs_captured": stats.graphs_captured,
        });
        outputs.push(completions);
    }
    result["speedup"] = json!(
        result["static"]["seconds"].as_f64().unwrap_or(0.0)
            / result["continuous"]["seconds"].as_f64().unwrap_or(1.0)
    );
    result["rows_equal_static_vs_continuous"] = json!(outputs[0]
        .iter()
        .zip(&outputs[1])
        .filter(|(a, b)| a == b)
        .count());
    Ok(result)
}

fn train(
    cfg: &Config,
    policy_vs: &nn::VarStore,
    policy: &Qwen2,
    options: &BenchOptions,
    rng: &mut SplitMix,
) -> Result<serde_json::Value> {
    let device = policy.device();
    // The frozen reference starts equal to the policy, as in `align` (or is the policy itself,
    // `--shared-reference`: the same forward, without the copy).
    let copy = if options.shared_reference {
        None
    } else {
        let (mut reference_vs, reference) = random_model(cfg, device, options.dtype, options.seed)?;
        reference_vs.freeze();
        Some((reference_vs, reference))
    };
    let reference = copy.as_ref().map_or(policy, |(_, reference)| reference);
    let totals = [3.0, -0.5, -1.0, -3.0];
    let rollouts: Vec<Rollout> = (0..options.train_rows)
        .map(|_| {
            let total = totals[(rng.next() % totals.len() as u64) as usize];
            Rollout {
                prompt: rng.tokens(options.train_prompt_tokens, cfg.vocab_size),
                response: rng.tokens(options.response_tokens, cfg.vocab_size),
                text: String::new(),
                score: Score {
                    total,
                    format_ok: total > -3.0,
                    answer: if total > 0.0 {
                        AnswerStatus::Correct
                    } else {
                        AnswerStatus::Wrong
                    },
                },
                finish: Finish::Length,
            }
        })
        .collect();
    let config = TrainConfig {
        micro_batch: options.micro_batch.max(1),
        gradient_checkpointing: options.gradient_checkpointing,
        optimizer_state: match options.optimizer {
            BenchOptimizer::Offload => StatePlacement::Host,
            _ => StatePlacement::WithModel,
        },
        ..TrainConfig::default()
    };
    let mut optimizer: Box<dyn Optimizer> = match options.optimizer {
        BenchOptimizer::Pure => Box::new(nn::AdamW::default().build(policy_vs, config.lr)?),
        _ => Box::new(train::adamw(policy_vs, &config, 0, 1)?),
    };
    let ranks = Ranks::single(device);
    let mut step = || {
        train::policy_step(
            policy,
            policy_vs,
            &mut *optimizer,
            reference,
            &rollouts,
            Algorithm::ReinforcePlusPlus,
            0,
            &config,
            &ranks,
        )
    };
    let memory = GpuMemoryProbe::start(device);
    for _ in 0..options.train_warmup {
        step()?;
    }
    synchronize(device);
    let started = Instant::now();
    let mut stats = None;
    for _ in 0..options.train_iterations {
        stats = Some(step()?);
    }
    synchronize(device);
    let seconds = started.elapsed().as_secs_f64() / options.train_iterations as f64;
    let stats = stats.unwrap_or_default();
    let rows = options.train_rows as f64;
    let sequence_tokens = rows * (options.train_prompt_tokens + options.response_tokens) as f64;
    Ok(json!({
        "rows": options.train_rows,
        "prompt_tokens": options.train_prompt_tokens,
        "response_tokens": options.response_tokens,
        "micro_batch": config.micro_batch,
        "optimizer": options.optimizer.name(),
        "gradient_checkpointing": options.gradient_checkpointing,
        "shared_reference": options.shared_reference,
        "iterations": options.train_iterations,
        "seconds_per_step": seconds,
        "tokens_per_second": sequence_tokens / seconds,
        "response_tokens_per_second": stats.tokens as f64 / seconds,
        "kl": stats.kl,
        "grad_norm": stats.grad_norm,
        "peak_gpu_memory_mib": memory.stop(),
        "optimizer_state_on_host": options.optimizer == BenchOptimizer::Offload,
    }))
}

/// `peirce-worker bench ARGS...`: runs and prints the JSON line; errors go to stderr.
pub fn main(args: &[String]) -> std::process::ExitCode {
    if args.iter().any(|arg| arg == "--help" || arg == "-h") {
        println!("{USAGE}");
        return std::process::ExitCode::SUCCESS;
    }
    let outcome = BenchOptions::parse(args).and_then(|options| run(&options));
    match outcome {
        Ok(result) => {
            println!("{result}");
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}\n{USAGE}");
            std::process::ExitCode::FAILURE
        }
    }
}
