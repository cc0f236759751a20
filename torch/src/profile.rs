//! Where the device's time goes: libtorch's profiler (Kineto, over CUPTI on CUDA) around a
//! piece of work, its device events summed per kernel name (`torch/csrc/profile.cpp`; tch does
//! not bind the profiler). `peirce-worker bench --profile-kernels` uses it to split a decoding
//! step into its kernels.

use std::collections::BTreeMap;
use std::ffi::c_char;

use crate::dist::{shim_result, take_error};
use crate::error::{Result, TorchError};

/// One kernel's (or device copy's) time over the profiled work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelTime {
    /// The kernel's name as the driver reports it.
    pub name: String,
    /// How many times it ran.
    pub calls: u64,
    /// Its summed duration, in nanoseconds.
    pub nanos: u64,
}

/// Runs `work` with the profiler on and returns its result with the device's kernels, summed
/// per name, longest total first. Only one profile may run at a time in a process.
pub fn kernels<T>(work: impl FnOnce() -> Result<T>) -> Result<(T, Vec<KernelTime>)> {
    // SAFETY: no arguments; the error, if any, is taken once.
    check(unsafe { ffi::peirce_profile_start() })?;
    let value = work();
    let mut table: *mut c_char = std::ptr::null_mut();
    // SAFETY: `table` receives a malloc'd string (or stays null on error), taken below.
    let stopped = check(unsafe { ffi::peirce_profile_stop(&mut table) });
    // SAFETY: the shim's malloc'd string (or null), copied and freed once, as its errors are.
    let text = unsafe { take_error(table) }.unwrap_or_default();
    let value = value?;
    stopped?;
    Ok((value, parse(&text)?))
}

/// Per kernel, what `after` ran beyond `before` (the kernels of a longer run less those of a
/// shorter one), longest first; kernels only in `before` are left out.
pub fn difference(after: &[KernelTime], before: &[KernelTime]) -> Vec<KernelTime> {
    let before: BTreeMap<&str, &KernelTime> = before.iter().map(|k| (k.name.as_str(), k)).collect();
    let mut out: Vec<KernelTime> = after
        .iter()
        .map(|k| {
            let (calls, nanos) = before
                .get(k.name.as_str())
                .map_or((0, 0), |b| (b.calls, b.nanos));
            KernelTime {
                name: k.name.clone(),
                calls: k.calls.saturating_sub(calls),
                nanos: k.nanos.saturating_sub(nanos),
            }
        })
        .filter(|k| k.calls > 0 || k.nanos > 0)
        .collect();
    sort(&mut out);
    out
}

fn sort(kernels: &mut [KernelTime]) {
    kernels.sort_by(|a, b| b.nanos.cmp(&a.nanos).then_with(|| a.name.cmp(&b.name)));
}

/// The shim's table: `calls<TAB>nanoseconds<TAB>name` per line.
fn parse(text: &str) -> Result<Vec<KernelTime>> {
    let mut kernels = text
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            let mut fields = line.splitn(3, '\t');
            let (Some(calls), Some(nanos), Some(name)) =
                (fields.next(), fields.next(), fields.next())
            else {
                return Err(TorchError::Invalid(format!("profiler line {line:?}")));
            };
            let number = |field: &str| {
                field
                    .parse::<u64>()
                    .map_err(|_| TorchError::Invalid(format!("profiler line {line:?}")))
            };
            Ok(KernelTime {
                name: name.to_owned(),
                calls: number(calls)?,
                nanos: number(nanos)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    sort(&mut kernels);
    Ok(kernels)
}

fn check(error: *mut c_char) -> Result<()> {
    shim_result(error, "profiler: ")
}

/// The shim's C ABI (torch/csrc/profile.cpp).
mod ffi {
    use std::ffi::c_char;

    extern "C" {
        pub fn peirce_profile_start() -> *mut c_char;
        pub fn peirce_profile_stop(table: *mut *mut c_char) -> *mut c_char;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, Tensor};

    #[test]
    fn a_cpu_run_has_no_device_kernels_and_the_table_parses() {
        let (sum, kernels) = kernels(|| {
            let t = Tensor::ones([64, 64], (Kind::Float, Device::Cpu));
            Ok(t.matmul(&t).sum(Kind::Float).double_value(&[]))
        })
        .unwrap();
        assert_eq!(sum, 64.0 * 64.0 * 64.0);
        assert!(kernels.is_empty(), "{kernels:?}");
        let parsed = parse("2\t300\ta\n5\t900\tb c\td\n").unwrap();
        assert_eq!(parsed[0].name, "b c\td");
        assert_eq!((parsed[0].calls, parsed[0].nanos), (5, 900));
        assert!(parse("x\t1\tname\n").is_err());
    }

    #[test]
    fn the_difference_keeps_what_the_longer_run_added() {
        let k = |name: &str, calls, nanos| KernelTime {
            name: name.into(),
            calls,
            nanos,
        };
        let longer = [k("gemm", 30, 3000), k("norm", 20, 200), k("prefill", 1, 50)];
        let shorter = [k("gemm", 3, 400), k("prefill", 1, 50)];
        assert_eq!(
            difference(&longer, &shorter),
            vec![k("gemm", 27, 2600), k("norm", 20, 200)]
        );
    }
}
