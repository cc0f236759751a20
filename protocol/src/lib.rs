//! peirce-protocol: what the engine and `peirce-worker` agree on, written once.
//!
//! The engine runs every libtorch kind in a separate `peirce-worker` process
//! (docs/architecture.md §2): it writes a [`WorkerSpec`] to `node.json`, starts the worker,
//! and reads [`Event`]s from the worker's stdout, one JSON object per line; a failure is
//! reported as an [`Event::Error`] whose [`ErrorClass`] decides whether the engine retries.
//! Both sides use these types, so the wire format has one definition (docs/architecture.md
//! §7).
//!
//! [`params`] holds one serde type per torch kind with its defaults, checks and version. The
//! engine derives the kind's parameter schema from it (so a workflow is type-checked before
//! anything runs, and every default enters the node's key) and the worker parses the same
//! type: a parameter has one home. [`hf`] is the Hugging Face model-folder layout shared by
//! the worker (which loads and saves models) and the engine's `merge`.
//!
//! This crate depends on serde only, so the worker does not pull in the engine.

pub mod event;
pub mod hf;
pub mod params;
pub mod spec;

pub use event::{ErrorClass, Event, WorkerError};
pub use spec::{WorkerSpec, PROTOCOL};
