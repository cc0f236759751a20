//! peirce-torch: everything of peirce that touches libtorch.
//!
//! The Qwen2 decoder ([`qwen2`]), Hugging Face safetensors checkpoints ([`checkpoint`]),
//! tokenizers ([`tokenizer`]), complete model folders and tiny models for tests and the
//! CPU workflow ([`pretrained`]), the batched KV-cache sampler ([`sampler`]), data-parallel
//! communication between worker processes ([`dist`]), and the node kinds that run in the
//! `peirce-worker` process ([`worker`]).
//!
//! It is the only crate of peirce that links libtorch (docs/architecture.md §2): the `peirce` CLI and
//! engine start the worker as a separate process per node, so they stay fast to start and
//! a CUDA error or an out-of-memory kill fails one node only. Build it through
//! `scripts/torch-env.sh`, which provides the libtorch it links.

pub mod bench;
pub mod checkpoint;
pub mod data;
pub mod device;
pub mod dist;
pub mod error;
pub mod graph;
pub mod kernels;
pub mod optim;
pub mod parallel;
pub mod pretrained;
pub mod profile;
pub mod qwen2;
pub mod rl;
pub mod sampler;
pub mod tokenizer;
pub mod train;
pub mod worker;

pub use error::{Result, TorchError};
