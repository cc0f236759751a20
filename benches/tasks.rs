//! Task-suite throughput: instances per second per task at levels 1, 3 and 5, generation and
//! verification measured separately, on one core. Rates are per CPU second of the measuring
//! thread (`CLOCK_THREAD_CPUTIME_ID`), so a busy machine does not distort the per-core figure;
//! wall-clock rates are printed beside them.
//!
//! Targets (issue 3): deduction level 5 over 20,000 instances/s per core; every task over
//! 50,000/s at level 1. Run with `cargo bench --bench tasks`; `PEIRCE_BENCH_INSTANCES`
//! sets the sample size (default 20,000 per cell).

use peirce_tasks::{family, Options, TaskRng, FAMILIES};

/// CPU seconds used by the calling thread.
fn thread_seconds() -> f64 {
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `time` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut time) };
    time.tv_sec as f64 + time.tv_nsec as f64 * 1e-9
}

/// Runs `work`, returning its result with (CPU seconds, wall seconds).
fn timed<T>(work: impl FnOnce() -> T) -> (T, f64, f64) {
    let (cpu, wall) = (thread_seconds(), std::time::Instant::now());
    let result = work();
    (result, thread_seconds() - cpu, wall.elapsed().as_secs_f64())
}

fn main() {
    let count: u64 = std::env::var("PEIRCE_BENCH_INSTANCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let options = Options {
        layout: Some("shortcut-free".into()),
        with_solution: false,
    };
    println!("{count} instances per cell, one thread, solutions off");
    println!(
        "{:<12} {:>5} {:>12} {:>12} {:>12}  target (generation, per core)",
        "task", "level", "generate/s", "verify/s", "gen wall/s"
    );
    for name in FAMILIES {
        let found = family(name).expect("built-in family");
        for level in [1u32, 3, 5] {
            if level > found.max_level() {
                continue;
            }
            let (instances, cpu, wall) = timed(|| {
                (0..count)
                    .map(|index| {
                        let mut rng = TaskRng::for_instance(1, name, level, index);
                        found.generate(level, &mut rng, &options)
                    })
                    .collect::<Vec<_>>()
            });
            let generate_rate = count as f64 / cpu;
            let wall_rate = count as f64 / wall;
            let (failures, cpu, _) = timed(|| {
                instances
                    .iter()
                    .filter(|instance| found.verify(instance).is_err())
                    .count()
            });
            let verify_rate = count as f64 / cpu;
            assert_eq!(
                failures, 0,
                "{name} level {level}: {failures} instances fail verification"
            );
            let target = match (name, level) {
                ("deduction", 5) => Some(20_000.0),
                (_, 1) => Some(50_000.0),
                _ => None,
            };
            let verdict = match target {
                Some(target) if generate_rate >= target => format!(">= {target:.0}/s: met"),
                Some(target) => format!(">= {target:.0}/s: MISSED"),
                None => String::new(),
            };
            println!("{name:<12} {level:>5} {generate_rate:>12.0} {verify_rate:>12.0} {wall_rate:>12.0}  {verdict}");
        }
    }
}
