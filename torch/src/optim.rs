//! AdamW with fp32 master weights, as mixed-precision training does it (verl's FSDP, DeepSpeed's
//! bf16 optimizer): the model computes in its own dtype (bfloat16 on GPUs), while a float32
//! copy of every weight and AdamW's two moments, also float32, take the update. After each
//! step the model's weights are refreshed from the masters.
//!
//! Why: at the paper's learning rate (5e-7, arXiv 2505.10554) an update is far below a bf16
//! weight's resolution (8 bits of mantissa: a weight of 0.02 moves in steps of 1.2e-4), so
//! pure-bf16 AdamW rounds almost every update away. The master weights keep them.
//!
//! Where the state lives ([`StatePlacement`]): with the model (16 bytes per parameter for a
//! bf16 model, 12 of them the state), or in host memory (`optimizer_offload`), where the
//! update runs on the CPU and only the gradients go down and the refreshed weights go up.
//! A model trained in float32 on its own device keeps no second copy: its weights are the
//! masters and are updated in place.
//!
//! Sharding (ZeRO stage 1 at tensor granularity): given the rank and the number of ranks, each
//! tensor's master and moments are kept by one rank only (a balanced split by size,
//! [`shard_owners`]), which updates it; the trainer then broadcasts the refreshed weights from
//! their owners ([`crate::parallel`]). N ranks each hold about 1/N of the optimizer state.

use std::collections::BTreeMap;

use tch::{nn, Device, Kind, Tensor};

use crate::error::{Result, TorchError};
use crate::parallel::Ranks;

/// What the trainers need of an optimizer: [`MasterAdamW`], or libtorch's own optimizers
/// (the benches' pure-bf16 reference: AdamW with its state in the weights' dtype).
pub trait Optimizer {
    /// Applies one update from the current gradients.
    fn step(&mut self) -> Result<()>;
    /// Zeroes the gradients.
    fn zero_grad(&mut self);
    /// After [`Optimizer::step`] on every rank: makes the ranks' weights equal again where
    /// each rank updated only its own share (sharded state). Nothing to do otherwise.
    fn share_update(&self, ranks: &Ranks) -> Result<()> {
        let _ = ranks;
        Ok(())
    }
}

impl Optimizer for nn::Optimizer {
    fn step(&mut self) -> Result<()> {
        nn::Optimizer::step(self);
        Ok(())
    }

    fn zero_grad(&mut self) {
        nn::Optimizer::zero_grad(self);
    }
}

impl Optimizer for MasterAdamW {
    fn step(&mut self) -> Result<()> {
        MasterAdamW::step(self)
    }

    fn zero_grad(&mut self) {
        MasterAdamW::zero_grad(self);
    }

    fn share_update(&self, ranks: &Ranks) -> Result<()> {
        if self.is_sharded() {
            ranks.broadcast_weights(self)?;
        }
        Ok(())
    }
}

/// Where the fp32 master weights and AdamW moments live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatePlacement {
    /// On the model's device.
    WithModel,
    /// In host memory; the update runs on the CPU (`optimizer_offload = true`).
    Host,
}

/// AdamW's settings.
#[derive(Debug, Clone, Copy)]
pub struct AdamWConfig {
    /// Learning rate (constant).
    pub lr: f64,
    /// The moments' decay rates.
    pub betas: (f64, f64),
    /// Added to the second moment's root.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

/// One weight this rank updates.
#[derive(Debug)]
struct Entry {
    /// The model's variable (its compute dtype, on its device).
    param: Tensor,
    /// The fp32 master, or `None` when `param` itself is the master (fp32, with the model).
    master: Option<Tensor>,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    /// The step count as the fused kernel reads it (float32 scalar beside the state).
    step: Tensor,
}

impl Entry {
    fn master(&self) -> &Tensor {
        self.master.as_ref().unwrap_or(&self.param)
    }
}

/// AdamW over a model's trainable variables with fp32 masters (see the module docs).
#[derive(Debug)]
pub struct MasterAdamW {
    config: AdamWConfig,
    placement: StatePlacement,
    /// Every trainable variable, by name (sorted), with the rank that owns its state.
    names: Vec<String>,
    owners: Vec<usize>,
    /// This rank's entries, by index into `names`.
    entries: BTreeMap<usize, Entry>,
    /// All trainable variables (also those other ranks own), in `names` order.
    params: Vec<Tensor>,
    /// How many ranks share the state (1: this rank keeps all of it).
    shards: usize,
    /// Offloaded state only: host buffers the size of the largest weight, reused by every
    /// weight's update: fp32 for the gradient the CPU update reads, and one in the compute
    /// dtype (page-locked when a GPU is there) through which gradients come down and weights
    /// go up.
    host_buffers: Option<(Tensor, Tensor)>,
}

/// Assigns each of `sizes` (element counts) to one of `ranks` ranks, largest first onto the
/// least loaded rank (ties: the lowest rank), so every rank holds about `1/ranks` of the total.
pub fn shard_owners(sizes: &[i64], ranks: usize) -> Vec<usize> {
    let ranks = ranks.max(1);
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by_key(|&index| (std::cmp::Reverse(sizes[index]), index));
    let mut load = vec![0i64; ranks];
    let mut owners = vec![0usize; sizes.len()];
    for index in order {
        let rank = (0..ranks)
            .min_by_key(|&rank| (load[rank], rank))
            .expect("at least one rank");
        owners[index] = rank;
        load[rank] += sizes[index];
    }
    owners
}

impl MasterAdamW {
    /// The optimizer of `vs`'s trainable variables for rank `rank` of `ranks` (1 for no
    /// sharding), its state placed as `placement`.
    pub fn new(
        vs: &nn::VarStore,
        config: AdamWConfig,
        placement: StatePlacement,
        rank: usize,
        ranks: usize,
    ) -> Result<Self> {
        if rank >= ranks.max(1) {
            return Err(TorchError::Invalid(format!(
                "rank {rank} of {ranks} ranks does not exist"
            )));
        }
        let trainable: Vec<(String, Tensor)> = {
            let mut all: Vec<(String, Tensor)> = vs
                .variables()
                .into_iter()
                .filter(|(_, tensor)| tensor.requires_grad())
                .collect();
            all.sort_by(|a, b| a.0.cmp(&b.0));
            all
        };
        let sizes: Vec<i64> = trainable.iter().map(|(_, t)| t.numel() as i64).collect();
        let owners = shard_owners(&sizes, ranks);
        let state_device = match placement {
            StatePlacement::WithModel => vs.device(),
            StatePlacement::Host => Device::Cpu,
        };
        let mut entries = BTreeMap::new();
        tch::no_grad(|| -> Result<()> {
            for (index, (_, param)) in trainable.iter().enumerate() {
                if owners[index] != rank {
                    continue;
                }
                let in_place = param.kind() == Kind::Float && param.device() == state_device;
                let master = if in_place {
                    None
                } else {
                    Some(
                        param
                            .f_to_device(state_device)?
                            .f_to_kind(Kind::Float)?
                            .f_detach()?
                            .f_contiguous()?,
                    )
                };
                let zeros = || Tensor::f_zeros(param.size(), (Kind::Float, state_device));
                entries.insert(
                    index,
                    Entry {
                        param: param.shallow_clone(),
                        master,
                        exp_avg: zeros()?,
                        exp_avg_sq: zeros()?,
                        step: Tensor::f_zeros([], (Kind::Float, state_device))?,
                    },
                );
            }
            Ok(())
        })?;
        let largest = entries
            .values()
            .map(|entry| entry.exp_avg.numel() as i64)
            .max()
            .unwrap_or(0);
        let host_buffers = match placement {
            StatePlacement::Host if !entries.is_empty() => {
                let compute = trainable
                    .first()
                    .map_or(Kind::BFloat16, |(_, tensor)| tensor.kind());
                let mut staging = Tensor::f_empty([largest], (compute, Device::Cpu))?;
                if vs.device().is_cuda() {
                    staging = staging.f_pin_memory(vs.device())?;
                }
                Some((
                    Tensor::f_zeros([largest], (Kind::Float, Device::Cpu))?,
                    staging,
                ))
            }
            _ => None,
        };
        Ok(Self {
            host_buffers,
            config,
            placement,
            names: trainable.iter().map(|(name, _)| name.clone()).collect(),
            owners,
            entries,
            params: trainable.into_iter().map(|(_, tensor)| tensor).collect(),
            shards: ranks.max(1),
        })
    }

    /// The trainable variables, sorted by name, each with the rank that owns its state.
    pub fn layout(&self) -> impl Iterator<Item = (&str, &Tensor, usize)> {
        self.names
            .iter()
            .zip(&self.params)
            .zip(&self.owners)
            .map(|((name, param), owner)| (name.as_str(), param, *owner))
    }

    /// Whether other ranks keep (and update) part of the state.
    pub fn is_sharded(&self) -> bool {
        self.shards > 1
    }

    /// Where the state lives.
    pub fn placement(&self) -> StatePlacement {
        self.placement
    }

    /// Bytes of optimizer state (masters kept apart from the model, and moments) on this rank.
    pub fn state_bytes(&self) -> u64 {
        self.entries
            .values()
            .map(|entry| {
                let elements = entry.exp_avg.numel() as u64;
                let masters = if entry.master.is_some() { elements } else { 0 };
                4 * (2 * elements + masters)
            })
            .sum()
    }

    /// Elements of the trainable variables this rank keeps state for, and of all of them.
    pub fn share(&self) -> (u64, u64) {
        let mine = self
            .entries
            .values()
            .map(|entry| entry.exp_avg.numel() as u64)
            .sum();
        let all = self.params.iter().map(|p| p.numel() as u64).sum();
        (mine, all)
    }

    /// Updates this rank's weights from their gradients (already summed over ranks and
    /// clipped), then refreshes the model's copies of them. Weights without a gradient are left
    /// alone. Other ranks' weights are theirs to update and broadcast.
    ///
    /// Each weight takes one call of libtorch's fused AdamW kernel (`_fused_adamw_`, CPU or
    /// CUDA: one pass over weight, gradient and moments). Offloaded state gets its gradient
    /// through one host buffer reused for every weight (no allocation per step), and sends the
    /// weight back rounded to the model's dtype (half the bytes of fp32).
    pub fn step(&mut self) -> Result<()> {
        let host_buffers = &self.host_buffers;
        tch::no_grad(|| -> Result<()> {
            for entry in self.entries.values_mut() {
                let grad = entry.param.grad();
                if !grad.defined() {
                    continue;
                }
                let master = entry.master().shallow_clone();
                let size = master.size();
                let count = master.numel() as i64;
                let grad = match host_buffers {
                    // Down in the compute dtype, widened on the host into the shared buffer.
                    Some((fp32, staging)) => {
                        let mut view = fp32.f_narrow(0, 0, count)?.f_view(size.as_slice())?;
                        if grad.kind() == staging.kind() {
                            let mut down =
                                staging.f_narrow(0, 0, count)?.f_view(size.as_slice())?;
                            down.f_copy_(&grad)?;
                            view.f_copy_(&down)?;
                        } else {
                            view.f_copy_(&grad)?;
                        }
                        view
                    }
                    None => grad.f_to_kind(Kind::Float)?,
                };
                let _ = entry.step.f_add_scalar_(1.0)?;
                fused_adamw(
                    &master,
                    &grad,
                    &entry.exp_avg,
                    &entry.exp_avg_sq,
                    &entry.step,
                    self.config,
                )?;
                if entry.master.is_some() {
                    let mut param = entry.param.shallow_clone();
                    match host_buffers {
                        Some((_, rounded)) if param.kind() == rounded.kind() => {
                            // Rounded on the host, so half the bytes cross the bus.
                            let mut view =
                                rounded.f_narrow(0, 0, count)?.f_view(size.as_slice())?;
                            view.f_copy_(&master)?;
                            param.f_copy_(&view)?;
                        }
                        _ => param.f_copy_(&master)?,
                    }
                }
            }
            Ok(())
        })
    }

    /// Zeroes every trainable variable's gradient.
    pub fn zero_grad(&self) {
        for param in &self.params {
            let mut grad = param.grad();
            if grad.defined() {
                let _ = grad.zero_();
            }
        }
    }

    /// The fp32 master of every weight this rank owns, by name (the model's own variable where
    /// it is its master).
    pub fn masters(&self) -> Vec<(String, Tensor)> {
        self.entries
            .iter()
            .map(|(index, entry)| (self.names[*index].clone(), entry.master().shallow_clone()))
            .collect()
    }
}

/// One fused AdamW update of `param` (fp32) from `grad` (fp32) with moments `exp_avg`,
/// `exp_avg_sq` and the step count `step`, already incremented (`torch/csrc/optim.cpp`).
fn fused_adamw(
    param: &Tensor,
    grad: &Tensor,
    exp_avg: &Tensor,
    exp_avg_sq: &Tensor,
    step: &Tensor,
    config: AdamWConfig,
) -> Result<()> {
    use crate::dist::{ffi::AtTensor, take_error, tensor_ptr};
    extern "C" {
        fn peirce_fused_adamw(
            param: *mut AtTensor,
            grad: *mut AtTensor,
            exp_avg: *mut AtTensor,
            exp_avg_sq: *mut AtTensor,
            step: *mut AtTensor,
            lr: f64,
            beta1: f64,
            beta2: f64,
            weight_decay: f64,
            eps: f64,
        ) -> *mut std::ffi::c_char;
    }
    // SAFETY: live tensors, borrowed for the call; the shim catches every C++ exception and
    // returns its message, which `take_error` frees.
    let error = unsafe {
        take_error(peirce_fused_adamw(
            tensor_ptr(param),
            tensor_ptr(grad),
            tensor_ptr(exp_avg),
            tensor_ptr(exp_avg_sq),
            tensor_ptr(step),
            config.lr,
            config.betas.0,
            config.betas.1,
            config.weight_decay,
            config.eps,
        ))
    };
    match error {
        None => Ok(()),
        Some(message) => Err(TorchError::Invalid(format!("fused AdamW: {message}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_balanced_by_size_and_cover_every_tensor() {
        let sizes = [100, 10, 60, 40, 30, 30, 5];
        let owners = shard_owners(&sizes, 2);
        let load = |rank| -> i64 {
            sizes
                .iter()
                .zip(&owners)
                .filter(|(_, owner)| **owner == rank)
                .map(|(size, _)| size)
                .sum()
        };
        assert_eq!(load(0) + load(1), 275);
        assert!((load(0) - load(1)).abs() <= 10, "{owners:?}");
        assert_eq!(shard_owners(&sizes, 1), vec![0; 7]);
        // More ranks than tensors: each tensor on its own rank.
        let mut alone = shard_owners(&[3, 2, 1], 5);
        alone.sort_unstable();
        alone.dedup();
        assert_eq!(alone.len(), 3);
    }
}
