//! The resource pool: CPU slots, GPU devices and memory shared by running nodes.
//!
//! A node asks for `cpus` slots, `gpu_millis` (1000 = one whole device) and optionally
//! `memory_bytes`. Whole-device requests get dedicated devices; a request below 1000 is a
//! share and may sit beside other shares on one device, but never beside a whole-device
//! holder. Memory asks are summed: nodes whose asks together exceed the pool's memory do not
//! run at the same time (a node that asks for none counts as none). Requests larger than the
//! machine are rejected before the run starts, not left waiting forever.

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::spec::Resources;

/// The capacity of one GPU in millis.
pub const WHOLE_GPU: u32 = 1000;

#[derive(Debug)]
struct State {
    cpus_free: u32,
    memory_free: u64,
    /// Free millis per device, in the order of `devices`.
    gpu_free: Vec<u32>,
}

/// CPU slots and GPU devices, handed out to nodes and returned when they finish.
#[derive(Debug, Clone)]
pub struct ResourcePool {
    cpus: u32,
    memory: u64,
    devices: Vec<u32>,
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
}

/// Resources held by one node; returned to the pool on drop.
#[derive(Debug)]
pub struct Grant {
    pool: ResourcePool,
    cpus: u32,
    memory: u64,
    /// (index into the pool's devices, millis) for each device used.
    gpu_shares: Vec<(usize, u32)>,
}

impl Grant {
    /// CPU slots granted.
    pub fn cpus(&self) -> u32 {
        self.cpus
    }

    /// Device ids granted.
    pub fn gpus(&self) -> Vec<u32> {
        self.gpu_shares
            .iter()
            .map(|(index, _)| self.pool.devices[*index])
            .collect()
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        let mut state = self.pool.state.lock().expect("resource pool lock");
        state.cpus_free += self.cpus;
        state.memory_free += self.memory;
        for (index, millis) in &self.gpu_shares {
            state.gpu_free[*index] += millis;
        }
        drop(state);
        self.pool.notify.notify_waiters();
    }
}

impl ResourcePool {
    /// A pool of `cpus` slots, the given GPU device ids and no memory limit.
    pub fn new(cpus: u32, devices: Vec<u32>) -> Self {
        Self::with_memory(cpus, devices, u64::MAX)
    }

    /// A pool of `cpus` slots, the given GPU device ids and `memory` bytes for the nodes'
    /// memory asks.
    pub fn with_memory(cpus: u32, devices: Vec<u32>, memory: u64) -> Self {
        let cpus = cpus.max(1);
        ResourcePool {
            cpus,
            memory,
            state: Arc::new(Mutex::new(State {
                cpus_free: cpus,
                memory_free: memory,
                gpu_free: vec![WHOLE_GPU; devices.len()],
            })),
            devices,
            notify: Arc::new(Notify::new()),
        }
    }

    /// Total CPU slots.
    pub fn cpus(&self) -> u32 {
        self.cpus
    }

    /// The GPU device ids.
    pub fn devices(&self) -> &[u32] {
        &self.devices
    }

    /// The memory shared by the nodes' asks, in bytes (`u64::MAX`: no limit).
    pub fn memory(&self) -> u64 {
        self.memory
    }

    /// Why `request` can never be satisfied by this pool, if it cannot.
    pub fn check(&self, request: &Resources) -> Result<(), String> {
        if let Some(memory) = request.memory_bytes.filter(|&memory| memory > self.memory) {
            return Err(format!(
                "asks for {} of memory but the run has {} (the machine's memory; give another \
                 budget with `--memory`)",
                human_size(memory),
                human_size(self.memory)
            ));
        }
        let gpus = request.gpu_millis;
        if gpus == 0 {
            return Ok(());
        }
        let wanted = if gpus < WHOLE_GPU {
            1
        } else {
            gpus.div_ceil(WHOLE_GPU) as usize
        };
        if gpus > WHOLE_GPU && !gpus.is_multiple_of(WHOLE_GPU) {
            return Err(format!(
                "asks for {} GPUs: more than one GPU must be a whole number",
                gpus as f64 / 1000.0
            ));
        }
        if wanted > self.devices.len() {
            return Err(format!(
                "asks for {} GPU(s) but {} {} available (give devices with `--gpus 0,1` or CUDA_VISIBLE_DEVICES)",
                gpus as f64 / 1000.0,
                self.devices.len(),
                if self.devices.len() == 1 { "is" } else { "are" }
            ));
        }
        Ok(())
    }

    fn try_take(&self, request: &Resources) -> Option<Grant> {
        // Asking for more CPUs than the machine has means "all of them".
        let cpus = request.cpus.clamp(1, self.cpus);
        let memory = request.memory_bytes.unwrap_or(0).min(self.memory);
        let mut state = self.state.lock().expect("resource pool lock");
        if state.cpus_free < cpus || state.memory_free < memory {
            return None;
        }
        let gpus = request.gpu_millis;
        let mut shares = Vec::new();
        if gpus >= WHOLE_GPU {
            let count = (gpus / WHOLE_GPU) as usize;
            let free: Vec<usize> = (0..state.gpu_free.len())
                .filter(|&i| state.gpu_free[i] == WHOLE_GPU)
                .collect();
            if free.len() < count {
                return None;
            }
            shares.extend(free.into_iter().take(count).map(|index| (index, WHOLE_GPU)));
        } else if gpus > 0 {
            // Best fit: the partly used device with the least room that still fits.
            let best = (0..state.gpu_free.len())
                .filter(|&i| state.gpu_free[i] >= gpus)
                .min_by_key(|&i| state.gpu_free[i])?;
            shares.push((best, gpus));
        }
        state.cpus_free -= cpus;
        state.memory_free -= memory;
        for (index, millis) in &shares {
            state.gpu_free[*index] -= millis;
        }
        Some(Grant {
            pool: self.clone(),
            cpus,
            memory,
            gpu_shares: shares,
        })
    }

    /// Waits until `request` fits, then takes it. Call [`ResourcePool::check`] first.
    pub async fn acquire(&self, request: &Resources) -> Grant {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(grant) = self.try_take(request) {
                return grant;
            }
            notified.await;
        }
    }
}

/// Bytes in binary units, for messages: `16.0 GiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The machine's memory in bytes (`MemTotal` of `/proc/meminfo`), or `None` where that is not
/// known.
pub fn machine_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(cpus: u32, gpu_millis: u32) -> Resources {
        Resources {
            cpus,
            gpu_millis,
            memory_bytes: None,
        }
    }

    #[test]
    fn whole_gpus_are_never_shared() {
        let pool = ResourcePool::new(8, vec![0, 1]);
        let first = pool.try_take(&request(1, 1000)).unwrap();
        let second = pool.try_take(&request(1, 1000)).unwrap();
        assert_ne!(first.gpus(), second.gpus());
        assert!(pool.try_take(&request(1, 1000)).is_none());
        assert!(
            pool.try_take(&request(1, 500)).is_none(),
            "no share on a whole-GPU device"
        );
        drop(first);
        assert!(pool.try_take(&request(1, 1000)).is_some());
    }

    #[test]
    fn shares_pack_onto_one_device() {
        let pool = ResourcePool::new(8, vec![3, 5]);
        let a = pool.try_take(&request(1, 500)).unwrap();
        let b = pool.try_take(&request(1, 500)).unwrap();
        assert_eq!(a.gpus(), b.gpus(), "two halves share a device");
        let whole = pool.try_take(&request(1, 1000)).unwrap();
        assert_ne!(whole.gpus(), a.gpus());
        assert!(pool.try_take(&request(1, 100)).is_none());
    }

    #[test]
    fn cpu_slots_limit_parallelism_and_oversized_asks_are_clamped() {
        let pool = ResourcePool::new(2, vec![]);
        let a = pool.try_take(&request(1, 0)).unwrap();
        let _b = pool.try_take(&request(1, 0)).unwrap();
        assert!(pool.try_take(&request(1, 0)).is_none());
        drop(a);
        let big = request(64, 0);
        assert!(pool.try_take(&big).is_none(), "needs the whole machine");
        assert!(pool
            .check(&request(1, 1000))
            .unwrap_err()
            .contains("0 are available"));
        assert!(pool.check(&request(1, 1500)).is_err());
    }

    #[test]
    fn memory_asks_never_exceed_the_budget_together_and_oversized_asks_are_rejected() {
        let ask = |gib: u64| Resources {
            cpus: 1,
            gpu_millis: 0,
            memory_bytes: Some(gib << 30),
        };
        let pool = ResourcePool::with_memory(8, vec![], 10 << 30);
        let a = pool.try_take(&ask(6)).unwrap();
        assert!(pool.try_take(&ask(6)).is_none(), "6 + 6 GiB exceed 10 GiB");
        let b = pool.try_take(&ask(4)).unwrap();
        assert!(pool.try_take(&request(1, 0)).is_some(), "no ask, no limit");
        drop(a);
        assert!(pool.try_take(&ask(6)).is_some());
        drop(b);
        let error = pool.check(&ask(11)).unwrap_err();
        assert!(
            error.contains("11.0 GiB") && error.contains("10.0 GiB"),
            "{error}"
        );
        assert!(pool.check(&ask(10)).is_ok());
        assert!(ResourcePool::new(1, vec![]).check(&ask(1 << 20)).is_ok());
    }

    #[tokio::test]
    async fn acquire_waits_for_release() {
        let pool = ResourcePool::new(1, vec![]);
        let held = pool.acquire(&request(1, 0)).await;
        let waiter = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.acquire(&request(1, 0)).await.cpus() })
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(held);
        assert_eq!(waiter.await.unwrap(), 1);
    }
}
