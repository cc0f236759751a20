//! Data parallel training and generation, one process per device (as torchrun does): the
//! pieces the trainers call between their own steps.
//!
//! Every rank holds the whole model. A step's prompts are split across ranks
//! ([`Ranks::split`]); each rank samples and scores its own rollouts, and the statistics that
//! the loss needs over the whole batch (the response-token count, REINFORCE++'s whitening
//! moments) are summed over ranks first ([`Ranks::sum`]), so every rank's loss is its share of
//! the global mean. After the backward, gradients are summed over ranks in fp32 buckets
//! ([`Ranks::sync_gradients`]), after which every rank has the gradient one rank would have
//! computed for the whole batch (up to the order of fp32 additions), clips it by the same
//! norm and steps. With sharded optimizer state ([`crate::optim`]), each rank updates the
//! weights it owns and [`Ranks::broadcast_weights`] sends them to the others.
//!
//! The collectives come from libtorch's own c10d process groups ([`crate::dist`]): Gloo on the
//! CPU, NCCL on GPUs. One rank alone needs none of this: [`Ranks::single`] makes every call a
//! no-op (or the identity), so the trainers have one code path.

use std::collections::BTreeMap;

use tch::{nn, Device, Kind, Tensor};

use crate::dist::ProcessGroup;
use crate::error::{Result, TorchError};
use crate::optim::MasterAdamW;

/// Elements per gradient bucket summed in one collective (64 Mi fp32 elements, 256 MiB).
const BUCKET_ELEMENTS: i64 = 64 << 20;

/// This process's place among the ranks of a node.
#[derive(Debug)]
pub struct Ranks {
    group: Option<ProcessGroup>,
    device: Device,
}

impl Ranks {
    /// One rank alone, on `device`.
    pub fn single(device: Device) -> Self {
        Self {
            group: None,
            device,
        }
    }

    /// Rank `group.rank()` of `group.world()`, computing on `device` (where collectives'
    /// tensors are staged: NCCL takes CUDA tensors only).
    pub fn new(group: ProcessGroup, device: Device) -> Self {
        Self {
            group: Some(group),
            device,
        }
    }

    /// This rank's number.
    pub fn rank(&self) -> usize {
        self.group.as_ref().map_or(0, ProcessGroup::rank)
    }

    /// How many ranks there are.
    pub fn world(&self) -> usize {
        self.group.as_ref().map_or(1, ProcessGroup::world)
    }

    /// Whether this is rank 0 (the one that writes outputs and reports).
    pub fn is_first(&self) -> bool {
        self.rank() == 0
    }

    /// This rank's contiguous share of `items`: the first `len % world` ranks get one more.
    pub fn split<'a, T>(&self, items: &'a [T]) -> &'a [T] {
        let (start, end) = share(items.len(), self.rank(), self.world());
        &items[start..end]
    }

    /// Sums `values` over ranks (f64, exact for counts up to 2^53).
    pub fn sum(&self, values: &[f64]) -> Result<Vec<f64>> {
        let Some(group) = &self.group else {
            return Ok(values.to_vec());
        };
        let tensor = Tensor::from_slice(values).f_to(self.device)?;
        group.all_reduce_sum(&tensor)?;
        Ok(Vec::<f64>::try_from(&tensor.f_to(Device::Cpu)?)?)
    }

    /// Sums every trainable variable's gradient over ranks, in fp32 buckets (every rank must
    /// call this, after a backward that reached every weight).
    pub fn sync_gradients(&self, vs: &nn::VarStore) -> Result<()> {
        let Some(group) = &self.group else {
            return Ok(());
        };
        let mut variables: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        variables.sort_by(|a, b| a.0.cmp(&b.0));
        tch::no_grad(|| -> Result<()> {
            let mut bucket: Vec<Tensor> = Vec::new();
            let mut elements = 0i64;
            for (index, (_, variable)) in variables.iter().enumerate() {
                bucket.push(variable.shallow_clone());
                elements += variable.numel() as i64;
                let last = index + 1 == variables.len();
                if elements >= BUCKET_ELEMENTS || last {
                    sum_bucket(group, &bucket, self.device)?;
                    bucket.clear();
                    elements = 0;
                }
            }
            Ok(())
        })
    }

    /// After a sharded optimizer's step: every weight sent from the rank that owns (and just
    /// updated) it to all the others.
    pub fn broadcast_weights(&self, optimizer: &MasterAdamW) -> Result<()> {
        let Some(group) = &self.group else {
            return Ok(());
        };
        tch::no_grad(|| -> Result<()> {
            for (_, param, owner) in optimizer.layout() {
                group.broadcast(param, owner)?;
            }
            Ok(())
        })
    }

    /// Every fp32 master weight, by name, on every rank (each sent by the rank that owns it),
    /// for saving.
    pub fn gather_masters(&self, optimizer: &MasterAdamW) -> Result<BTreeMap<String, Tensor>> {
        let mine: BTreeMap<String, Tensor> = optimizer.masters().into_iter().collect();
        let Some(group) = &self.group else {
            return Ok(mine);
        };
        tch::no_grad(|| -> Result<BTreeMap<String, Tensor>> {
            let mut all = BTreeMap::new();
            for (name, param, owner) in optimizer.layout() {
                // Staged on the compute device (NCCL takes CUDA tensors), kept on the CPU.
                let staged = match mine.get(name) {
                    Some(master) => master.f_to_device(self.device)?,
                    None => Tensor::f_zeros(param.size(), (Kind::Float, self.device))?,
                };
                group.broadcast(&staged, owner)?;
                all.insert(name.to_string(), staged.f_to_device(Device::Cpu)?);
            }
            Ok(all)
        })
    }
}

/// `[start, end)` of rank `rank`'s share of `len` items over `world` ranks.
pub fn share(len: usize, rank: usize, world: usize) -> (usize, usize) {
    let world = world.max(1);
    let (base, extra) = (len / world, len % world);
    let start = rank * base + rank.min(extra);
    let end = start + base + usize::from(rank < extra);
    (start.min(len), end.min(len))
}

/// Sums the gradients of `variables` over ranks through one fp32 buffer on `device`.
fn sum_bucket(group: &ProcessGroup, variables: &[Tensor], device: Device) -> Result<()> {
    let flat: Vec<Tensor> = variables
        .iter()
        .map(|variable| -> Result<Tensor> {
            let grad = variable.grad();
            if !grad.defined() {
                return Err(TorchError::Invalid(
                    "a trainable weight got no gradient on this rank".into(),
                ));
            }
            Ok(grad
                .f_to_device(device)?
                .f_to_kind(Kind::Float)?
                .f_reshape([-1])?)
        })
        .collect::<Result<_>>()?;
    let buffer = Tensor::f_cat(&flat, 0)?;
    group.all_reduce_sum(&buffer)?;
    let mut offset = 0i64;
    for variable in variables {
        let count = variable.numel() as i64;
        let summed = buffer
            .f_narrow(0, offset, count)?
            .f_view(variable.size().as_slice())?;
        let mut grad = variable.grad();
        if !grad.defined() {
            // Every rank trains on at least one row through the whole model.
            return Err(TorchError::Invalid(
                "a trainable weight got no gradient on this rank".into(),
            ));
        }
        grad.f_copy_(&summed)?;
        offset += count;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn shares_cover_everything_once_and_differ_by_at_most_one() {
        for len in 0..20 {
            for world in 1..6 {
                let mut covered = Vec::new();
                let mut sizes = Vec::new();
                for rank in 0..world {
                    let (start, end) = share(len, rank, world);
                    covered.extend(start..end);
                    sizes.push(end - start);
                }
                assert_eq!(covered, (0..len).collect::<Vec<_>>());
                let (min, max) = (sizes.iter().min(), sizes.iter().max());
                assert!(max.unwrap() - min.unwrap() <= 1);
            }
        }
    }
}
