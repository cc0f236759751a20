//! peirce-dag: workflow specs, cache keys, the planner and the scheduler.
//!
//! It turns a TOML workflow into a validated DAG of [`spec::NodeSpec`]s, computes action
//! keys ([`key`]), explains what must rerun and why ([`engine::Engine::plan`]), and runs
//! nodes in parallel within a resource pool, publishing results through `peirce-store`.
//! It knows nothing of machine learning: stage kinds implement [`kind::NodeKind`] in
//! `peirce-nodes` and register in a [`kind::Registry`].

pub mod engine;
pub mod key;
pub mod kind;
pub mod params;
pub mod resources;
pub mod runs;
pub mod spec;
pub mod value;

/// This machine's host name (for records and lease owners).
pub fn host_name() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes a NUL-terminated name.
    let status = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if status != 0 {
        return "unknown".to_string();
    }
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..end]).into_owned()
}
