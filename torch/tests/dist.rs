//! `dist` process groups over Gloo with real processes: each rank is this test binary run
//! again as a child process (`child_rank`, selected by the `PEIRCE_DIST_CHILD` variable,
//! which names the scenario), meeting the others through a `FileStore` in a temporary
//! folder (or a `TCPStore` on loopback). Every child is killed and reaped when its test
//! ends, passing or not.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use peirce_torch::dist::{Backend, ProcessGroup, ReduceOp};
use peirce_torch::TorchError;
use tch::{Kind, Tensor};

/// Names the scenario a child runs; unset in the test run itself.
const CHILD: &str = "PEIRCE_DIST_CHILD";
const RANK: &str = "PEIRCE_DIST_RANK";
const WORLD: &str = "PEIRCE_DIST_WORLD";
const DIR: &str = "PEIRCE_DIST_DIR";
const PORT: &str = "PEIRCE_DIST_PORT";

/// The timeout of the groups whose peers fail: short, so the tests are too.
const FAILURE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a test waits for its children before killing them and failing.
const CHILDREN_DEADLINE: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------
// The parent side.

/// A test's rank processes: killed and reaped on drop, so none outlives its test.
struct Ranks {
    dir: PathBuf,
    children: Vec<(usize, Child)>,
    statuses: Vec<Option<ExitStatus>>,
}

impl Ranks {
    /// Starts `ranks` (of a group of `world`) running `scenario`.
    fn spawn(
        scenario: &str,
        dir: &Path,
        world: usize,
        ranks: &[usize],
        env: &[(&str, String)],
    ) -> Self {
        let exe = std::env::current_exe().unwrap();
        let children = ranks
            .iter()
            .map(|&rank| {
                let log =
                    |stream: &str| File::create(dir.join(format!("rank{rank}.{stream}"))).unwrap();
                let mut command = Command::new(&exe);
                command
                    .args(["child_rank", "--exact", "--nocapture", "--test-threads=1"])
                    .env(CHILD, scenario)
                    .env(RANK, rank.to_string())
                    .env(WORLD, world.to_string())
                    .env(DIR, dir)
                    .stdin(Stdio::null())
                    .stdout(log("out"))
                    .stderr(log("err"));
                for (key, value) in env {
                    command.env(key, value);
                }
                (rank, command.spawn().unwrap())
            })
            .collect::<Vec<_>>();
        let statuses = vec![None; children.len()];
        Self {
            dir: dir.to_path_buf(),
            children,
            statuses,
        }
    }

    /// Kills rank `rank` (SIGKILL) and reaps it.
    fn kill(&mut self, rank: usize) {
        let index = self.children.iter().position(|(r, _)| *r == rank).unwrap();
        let child = &mut self.children[index].1;
        child.kill().unwrap();
        self.statuses[index] = Some(child.wait().unwrap());
    }

    /// Waits for every child to exit (killing all of them and failing past the deadline);
    /// returns each rank's exit status and output.
    fn finish(mut self) -> Vec<(usize, ExitStatus, String)> {
        let start = Instant::now();
        loop {
            for (index, (_, child)) in self.children.iter_mut().enumerate() {
                if self.statuses[index].is_none() {
                    self.statuses[index] = child.try_wait().unwrap();
                }
            }
            if self.statuses.iter().all(Option::is_some) {
                break;
            }
            if start.elapsed() > CHILDREN_DEADLINE {
                let logs = self.logs();
                drop(self);
                panic!("ranks still running after {CHILDREN_DEADLINE:?}:\n{logs}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.children
            .iter()
            .zip(&self.statuses)
            .map(|((rank, _), status)| (*rank, status.unwrap(), self.log(*rank)))
            .collect()
    }

    fn log(&self, rank: usize) -> String {
        let read = |stream: &str| {
            std::fs::read_to_string(self.dir.join(format!("rank{rank}.{stream}")))
                .unwrap_or_default()
        };
        format!("{}{}", read("out"), read("err"))
    }

    fn logs(&self) -> String {
        self.children
            .iter()
            .map(|(rank, _)| format!("--- rank {rank}:\n{}", self.log(*rank)))
            .collect()
    }
}

impl Drop for Ranks {
    fn drop(&mut self) {
        for (index, (_, child)) in self.children.iter_mut().enumerate() {
            if self.statuses[index].is_none() {
                let _ = child.kill();
                self.statuses[index] = child.wait().ok();
            }
        }
    }
}

/// Every rank's exit status and output, for assertion messages.
fn report(results: &[(usize, ExitStatus, String)]) -> String {
    results
        .iter()
        .map(|(rank, status, log)| format!("--- rank {rank} ({status}):\n{log}"))
        .collect()
}

/// Shows (with `--nocapture`) what the ranks reported: their errors and timings.
fn show(results: &[(usize, ExitStatus, String)]) {
    for (_, _, log) in results {
        for line in log.lines() {
            // The harness's own words may precede a line of the child's.
            let line = line.trim_start_matches("test child_rank ... ");
            if line.starts_with("rank ") {
                eprintln!("{line}");
            }
        }
    }
}

/// Asserts that every rank exited 0 and printed `done`.
fn assert_all_succeeded(results: &[(usize, ExitStatus, String)]) {
    for (rank, status, log) in results {
        let report = report(results);
        assert!(status.success(), "rank {rank} failed:\n{report}");
        assert!(
            log.contains(&format!("rank {rank}: done")),
            "rank {rank} did not finish:\n{report}"
        );
    }
}

fn run_all(
    scenario: &str,
    world: usize,
    env: &[(&str, String)],
) -> Vec<(usize, ExitStatus, String)> {
    let dir = tempfile::tempdir().unwrap();
    let ranks: Vec<usize> = (0..world).collect();
    let results = Ranks::spawn(scenario, dir.path(), world, &ranks, env).finish();
    assert_all_succeeded(&results);
    results
}

#[test]
fn collectives_are_exact_with_two_ranks() {
    run_all("collectives", 2, &[]);
}

#[test]
fn collectives_are_exact_with_three_ranks() {
    run_all("collectives", 3, &[]);
}

#[test]
fn tcp_rendezvous_on_loopback() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    run_all("tcp", 2, &[(PORT, port.to_string())]);
}

#[test]
fn a_rank_that_exits_early_fails_the_next_collective() {
    let results = run_all("exits_early", 2, &[]);
    show(&results);
    assert!(
        results[0].2.contains("failed as expected"),
        "{}",
        results[0].2
    );
}

#[test]
fn a_rank_that_stalls_fails_the_next_collective_after_the_timeout() {
    let results = run_all("stalls", 2, &[]);
    show(&results);
    assert!(
        results[0].2.contains("failed as expected"),
        "{}",
        report(&results)
    );
}

#[test]
fn a_killed_rank_fails_the_others_collective_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut ranks = Ranks::spawn("killed", dir.path(), 3, &[0, 1, 2], &[]);
    // Rank 2 says when it is in the group and has done one collective; then it idles.
    let ready = dir.path().join("ready-2");
    let start = Instant::now();
    while !ready.exists() {
        assert!(
            start.elapsed() < CHILDREN_DEADLINE,
            "rank 2 never got ready:\n{}",
            ranks.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    ranks.kill(2);
    let results = ranks.finish();
    show(&results);
    let report = report(&results);
    assert!(!results[2].1.success(), "rank 2 was killed:\n{report}");
    assert_all_succeeded(&results[..2]);
    for (_, _, log) in &results[..2] {
        assert!(log.contains("failed as expected"), "{report}");
    }
}

#[test]
fn a_missing_rank_fails_the_rendezvous_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    // Rank 1 of 2 never starts.
    let results = Ranks::spawn("missing", dir.path(), 2, &[0], &[]).finish();
    show(&results);
    assert_all_succeeded(&results);
}

/// NCCL where this build has it and libtorch sees a GPU: a group of one on CUDA device 0
/// (NCCL refuses two ranks on one GPU) runs every collective, which checks the NCCL half of
/// the shim end to end. Without a GPU (CI), asking for an NCCL group is a clear error, not a
/// crash: the build without NCCL, or the process without CUDA, is named.
#[test]
fn nccl_group_of_one_runs_every_collective() {
    let dir = tempfile::tempdir().unwrap();
    if !peirce_torch::dist::nccl_available() {
        let error = ProcessGroup::new(dir.path(), 0, 1, Backend::Nccl, Duration::from_secs(10))
            .expect_err("an NCCL group without NCCL or CUDA");
        let message = error.to_string();
        assert!(
            message.contains("the NCCL backend needs CUDA, and this process has none")
                || message.contains("built without NCCL"),
            "{message}"
        );
        return;
    }
    let group =
        ProcessGroup::new(dir.path(), 0, 1, Backend::Nccl, Duration::from_secs(60)).unwrap();
    let gpu = tch::Device::Cuda(0);
    let on_gpu = |values: &[f32]| Tensor::from_slice(values).to_device(gpu);
    // Reading back to the CPU waits for the collectives, which run on the current stream.
    for kind in [Kind::Float, Kind::BFloat16] {
        let t = on_gpu(&[1.0, -2.0, 3.5]).to_kind(kind);
        group.all_reduce_sum(&t).unwrap();
        group.all_reduce(&t, ReduceOp::Max).unwrap();
        group.broadcast(&t, 0).unwrap();
        assert_eq!(floats(&t.to_device(tch::Device::Cpu)), vec![1.0, -2.0, 3.5]);
    }
    let output = on_gpu(&[0.0; 3]);
    group
        .all_gather_into(&output, &on_gpu(&[4.0, 5.0, 6.0]))
        .unwrap();
    assert_eq!(
        floats(&output.to_device(tch::Device::Cpu)),
        vec![4.0, 5.0, 6.0]
    );
    let output = on_gpu(&[0.0; 2]);
    group
        .reduce_scatter_sum(&output, &on_gpu(&[7.0, 8.0]))
        .unwrap();
    assert_eq!(floats(&output.to_device(tch::Device::Cpu)), vec![7.0, 8.0]);
    group.barrier().unwrap();
}

// ---------------------------------------------------------------------------------------
// The child side.

/// A rank of one of the tests above when `PEIRCE_DIST_CHILD` is set; nothing otherwise.
#[test]
fn child_rank() {
    let Ok(scenario) = std::env::var(CHILD) else {
        return;
    };
    let var = |name: &str| std::env::var(name).unwrap();
    let rank: usize = var(RANK).parse().unwrap();
    let world: usize = var(WORLD).parse().unwrap();
    let dir = PathBuf::from(var(DIR));
    tch::set_num_threads(1);
    match scenario.as_str() {
        "collectives" => {
            let group =
                ProcessGroup::new(&dir, rank, world, Backend::Gloo, Duration::from_secs(30))
                    .unwrap();
            collectives(&group);
        }
        "tcp" => {
            let port: u16 = var(PORT).parse().unwrap();
            let group = ProcessGroup::new_tcp(
                "127.0.0.1",
                port,
                rank,
                world,
                Backend::Gloo,
                Duration::from_secs(30),
            )
            .unwrap();
            let t = Tensor::from_slice(&[1.0f32, 2.0]) * (rank as f64 + 1.0);
            group.all_reduce_sum(&t).unwrap();
            let k = (world * (world + 1) / 2) as f32;
            assert_eq!(Vec::<f32>::try_from(&t).unwrap(), vec![k, 2.0 * k]);
            group.barrier().unwrap();
        }
        "exits_early" => {
            let group =
                ProcessGroup::new(&dir, rank, world, Backend::Gloo, FAILURE_TIMEOUT).unwrap();
            let t = Tensor::ones([4], (Kind::Float, tch::Device::Cpu));
            group.all_reduce_sum(&t).unwrap();
            if rank == 1 {
                // Leaves without a word (and without dropping the group), as a crash would.
                println!("rank {rank}: done");
                std::process::exit(0);
            }
            expect_failure(&group, &t);
        }
        "stalls" => {
            let group =
                ProcessGroup::new(&dir, rank, world, Backend::Gloo, FAILURE_TIMEOUT).unwrap();
            let t = Tensor::ones([4], (Kind::Float, tch::Device::Cpu));
            group.all_reduce_sum(&t).unwrap();
            let failed = dir.join("failed-0");
            if rank == 1 {
                // Alive, connected, but never joins the next collective: rank 0 must time out.
                while !failed.exists() {
                    std::thread::sleep(Duration::from_millis(20));
                }
                println!("rank {rank}: done");
                std::process::exit(0);
            }
            let elapsed = expect_failure(&group, &t);
            assert!(
                elapsed >= FAILURE_TIMEOUT / 2,
                "no timeout to wait for? {elapsed:?}"
            );
            std::fs::write(failed, b"").unwrap();
        }
        "killed" => {
            let group =
                ProcessGroup::new(&dir, rank, world, Backend::Gloo, FAILURE_TIMEOUT).unwrap();
            let t = Tensor::ones([4], (Kind::Float, tch::Device::Cpu));
            group.all_reduce_sum(&t).unwrap();
            if rank == 2 {
                std::fs::write(dir.join("ready-2"), b"").unwrap();
                std::thread::sleep(Duration::from_secs(600));
                unreachable!("the test kills rank 2");
            }
            expect_failure(&group, &t);
        }
        "missing" => {
            let start = Instant::now();
            let error = ProcessGroup::new(&dir, rank, world, Backend::Gloo, Duration::from_secs(2))
                .unwrap_err();
            let elapsed = start.elapsed();
            let message = error.to_string();
            println!("rank {rank}: {message} (after {elapsed:?})");
            assert!(matches!(error, TorchError::Dist(_)), "{message}");
            assert!(
                message.contains("rank 0 of 2") && message.contains("rendezvous"),
                "{message}"
            );
            assert!(
                elapsed < Duration::from_secs(2) + Duration::from_secs(10),
                "{elapsed:?}"
            );
        }
        other => panic!("unknown scenario {other}"),
    }
    println!("rank {rank}: done");
}

/// The next all-reduce must fail, naming the operation, within the group's timeout;
/// returns how long it took.
fn expect_failure(group: &ProcessGroup, t: &Tensor) -> Duration {
    let start = Instant::now();
    let error = group.all_reduce_sum(t).unwrap_err();
    let elapsed = start.elapsed();
    let message = error.to_string();
    println!(
        "rank {}: failed as expected after {elapsed:?}: {message}",
        group.rank()
    );
    assert!(matches!(error, TorchError::Dist(_)), "{message}");
    assert!(
        message.contains(&format!("rank {} of {}", group.rank(), group.world()))
            && message.contains("all_reduce"),
        "{message}"
    );
    // The timeout, plus room for a loaded machine.
    assert!(
        elapsed < FAILURE_TIMEOUT + Duration::from_secs(10),
        "{elapsed:?}"
    );
    elapsed
}

fn floats(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(&t.to_kind(Kind::Float).flatten(0, -1)).unwrap()
}

/// Every collective with inputs whose results are known exactly.
fn collectives(group: &ProcessGroup) {
    let (rank, world) = (group.rank(), group.world());
    let r = rank as f64;
    let w = world as f32;
    // Σ (rank + 1) over the ranks.
    let k = w * (w + 1.0) / 2.0;
    let cpu = tch::Device::Cpu;

    // Sum, fp32, 2-D.
    let base = [1.0f32, 2.0, 3.0, -4.0, 0.5, 6.0];
    let t = Tensor::from_slice(&base).view([2, 3]) * (r + 1.0);
    group.all_reduce_sum(&t).unwrap();
    assert_eq!(t.size(), vec![2, 3]);
    assert_eq!(floats(&t), base.iter().map(|x| x * k).collect::<Vec<_>>());

    // Sum, bf16 (small integers and halves are exact there).
    let t = (Tensor::from_slice(&base) * (r + 1.0)).to_kind(Kind::BFloat16);
    group.all_reduce_sum(&t).unwrap();
    assert_eq!(t.kind(), Kind::BFloat16);
    assert_eq!(floats(&t), base.iter().map(|x| x * k).collect::<Vec<_>>());

    // Sum, int64.
    let t = Tensor::from_slice(&[rank as i64, 10]);
    group.all_reduce_sum(&t).unwrap();
    let ranks_sum = (world * (world - 1) / 2) as i64;
    assert_eq!(
        Vec::<i64>::try_from(&t).unwrap(),
        vec![ranks_sum, 10 * world as i64]
    );

    // Max and min.
    let t = Tensor::from_slice(&[r as f32, -(r as f32)]);
    group.all_reduce(&t, ReduceOp::Max).unwrap();
    assert_eq!(floats(&t), vec![w - 1.0, 0.0]);
    let t = Tensor::from_slice(&[r as f32, -(r as f32)]);
    group.all_reduce(&t, ReduceOp::Min).unwrap();
    assert_eq!(floats(&t), vec![0.0, 1.0 - w]);

    // Broadcast from the last rank, fp32 and bf16.
    let root = world - 1;
    for kind in [Kind::Float, Kind::BFloat16] {
        let t = if rank == root {
            Tensor::from_slice(&[7.0f32, 8.0, 9.5]).to_kind(kind)
        } else {
            Tensor::zeros([3], (kind, cpu))
        };
        group.broadcast(&t, root).unwrap();
        assert_eq!(floats(&t), vec![7.0, 8.0, 9.5]);
    }

    // All-gather: rank r contributes [10r, 10r + 1, 10r + 2], fp32 and bf16.
    let n = 3;
    let expected: Vec<f32> = (0..world)
        .flat_map(|q| (0..n).map(move |i| (10 * q + i) as f32))
        .collect();
    for kind in [Kind::Float, Kind::BFloat16] {
        let input = (Tensor::arange(n as i64, (Kind::Float, cpu)) + 10.0 * r).to_kind(kind);
        let output = Tensor::full([(world * n) as i64], -1.0, (kind, cpu));
        group.all_gather_into(&output, &input).unwrap();
        assert_eq!(floats(&output), expected, "{kind:?}");
    }

    // Reduce-scatter: rank r's input is [i + 10r for i in 0..world*n]; the sum over ranks
    // is world*i + 10*Σr (integers below 256: exact in bf16 too), and rank r keeps
    // elements r*n..(r+1)*n.
    for kind in [Kind::Float, Kind::BFloat16] {
        let input =
            (Tensor::arange((world * n) as i64, (Kind::Float, cpu)) + 10.0 * r).to_kind(kind);
        let output = Tensor::zeros([n as i64], (kind, cpu));
        group.reduce_scatter_sum(&output, &input).unwrap();
        let tens = 10.0 * (world * (world - 1) / 2) as f32;
        let expected: Vec<f32> = (rank * n..(rank + 1) * n)
            .map(|i| w * i as f32 + tens)
            .collect();
        assert_eq!(floats(&output), expected, "{kind:?}");
    }
    let input = Tensor::from_slice(&[1.0f32, 5.0, 3.0, 2.0, 2.0, 9.0, 4.0, 0.0, 1.0]).narrow(
        0,
        0,
        (world * 2) as i64,
    ) + r;
    let input = input.contiguous();
    let output = Tensor::zeros([2], (Kind::Float, cpu));
    group
        .reduce_scatter(&output, &input, ReduceOp::Max)
        .unwrap();
    let all = floats(&input.shallow_clone());
    let expected: Vec<f32> = (rank * 2..rank * 2 + 2)
        .map(|i| all[i] - r as f32 + (w - 1.0))
        .collect();
    assert_eq!(floats(&output), expected);

    // Sizes that do not fit are refused before any communication, so the group stays usable.
    let output = Tensor::zeros([3], (Kind::Float, cpu));
    let input = Tensor::zeros([(world * 3 + 1) as i64], (Kind::Float, cpu));
    let message = group
        .reduce_scatter_sum(&output, &input)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("reduce_scatter") && message.contains("not divisible"),
        "{message}"
    );
    let input = Tensor::zeros([2], (Kind::Float, cpu));
    let message = group
        .all_gather_into(&output, &input)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("all_gather_into") && message.contains("elements"),
        "{message}"
    );
    let strided = Tensor::zeros([4, 4], (Kind::Float, cpu)).transpose(0, 1);
    let message = group.all_reduce_sum(&strided).unwrap_err().to_string();
    assert!(message.contains("not contiguous"), "{message}");
    let message = group.broadcast(&output, world).unwrap_err().to_string();
    assert!(message.contains("not a rank"), "{message}");

    group.barrier().unwrap();
    // Still in step after the refusals.
    let t = Tensor::ones([1], (Kind::Float, cpu));
    group.all_reduce_sum(&t).unwrap();
    assert_eq!(floats(&t), vec![w]);
}
