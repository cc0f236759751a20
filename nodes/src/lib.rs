//! peirce-nodes: the stage kinds.
//!
//! Each kind is one module implementing [`peirce_dag::kind::NodeKind`] and one line in
//! [`registry`]. Light kinds run inside the engine (`exec` spawns its command under the
//! [`supervisor`], which is `peirce` itself re-executed);
//! kinds that need libtorch run in a `peirce-worker` process through [`worker`], so this
//! crate never links libtorch.

pub mod exec;
pub mod generate;
pub mod merge;
pub mod process;
pub mod supervisor;
pub mod torch;
pub mod verify;
pub mod worker;

use peirce_dag::kind::Registry;

/// Every kind this build of peirce knows.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    registry.register(exec::Exec);
    registry.register(generate::Generate);
    registry.register(merge::Merge);
    registry.register(verify::Verify);
    registry.register(worker::Worker);
    for kind in torch::TorchKind::all() {
        registry.register(kind);
    }
    registry
}
