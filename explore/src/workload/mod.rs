//! Workloads: how one run of an image under one placement yields one figure.
//!
//! Each adapter is small: the image it expects, the unit of its figure and its
//! direction, and one `run` that boots the monitor with the placement file and reads
//! the figure from what the guest (or a stock client) printed. Adding a workload is an
//! implementation of [`Workload`] and a line in [`by_name`].

mod gatebench;
pub mod iperf;
pub mod nginx;
pub mod redis;
mod sqlite;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::process::{self, Finished, WaitError};
use crate::search::Metric;

pub use gatebench::Gatebench;
pub use iperf::Iperf;
pub use nginx::Nginx;
pub use redis::Redis;
pub use sqlite::{Sqlite, Storage};

/// Knobs of the built-in workloads (each uses its own; `None` is its default).
#[derive(Clone, Debug, Default)]
pub struct Knobs {
    /// iperf: the guest's receive size in bytes.
    pub recv: Option<u32>,
    /// iperf: seconds the client streams; nginx: seconds wrk runs.
    pub seconds: Option<u32>,
    /// sqlite: rows inserted.
    pub inserts: Option<u32>,
    /// gatebench: timed calls of the case.
    pub calls: Option<u32>,
    /// gatebench: the case measured.
    pub case: Option<String>,
    /// redis: the redis-benchmark test (get or set).
    pub op: Option<String>,
    /// redis: requests in flight per client (`-P`).
    pub pipeline: Option<u32>,
    /// redis: requests per run (`-n`).
    pub requests: Option<u32>,
    /// nginx: the page wrk fetches (index or 64k).
    pub page: Option<String>,
}

/// What a run needs: the monitor, the image, a scratch directory of the exploration's
/// own (removed at its end), monitor options and guest arguments the user adds to
/// every run.
#[derive(Clone, Debug)]
pub struct Target {
    pub vmm: PathBuf,
    pub image: PathBuf,
    pub scratch: PathBuf,
    /// Monitor options before the image on every run (`--tune KEY=VALUE,...`: a thread
    /// policy candidate).
    pub vmm_opts: Vec<String>,
    /// A program the monitor runs under (`taskset -c 0`), empty for none.
    pub wrapper: Vec<String>,
    /// Appended to the workload's own guest arguments (`--guest-arg`, e.g. a kernel
    /// knob such as `gate.spin=N` whose effect on every placement is the question).
    pub guest_args: Vec<String>,
}

/// Where the components go for one run.
#[derive(Clone, Debug, PartialEq)]
pub enum Place {
    /// A placement file (`--config FILE`).
    Config(PathBuf),
    /// The image's default N-way split (`--compartments N`).
    Compartments(u32),
}

impl Place {
    /// The monitor's options for it.
    pub fn args(&self) -> Vec<OsString> {
        match self {
            Place::Config(path) => vec!["--config".into(), path.into()],
            Place::Compartments(n) => vec!["--compartments".into(), n.to_string().into()],
        }
    }
}

impl Target {
    /// The monitor's arguments: `PLACE [vmm_opts...] [extra...] IMAGE -- guest_args...`
    /// with the user's guest arguments last.
    pub fn vmm_args(&self, place: &Place, extra: &[&str], guest_args: &[String]) -> Vec<OsString> {
        let mut args = place.args();
        args.extend(self.vmm_opts.iter().map(OsString::from));
        args.extend(extra.iter().map(OsString::from));
        args.push(self.image.clone().into());
        let guest: Vec<&String> = guest_args.iter().chain(&self.guest_args).collect();
        if !guest.is_empty() {
            args.push("--".into());
            args.extend(guest.into_iter().map(OsString::from));
        }
        args
    }

    /// `flexos-vmm` with [`Self::vmm_args`] (under the wrapper if there is one).
    pub fn vmm_command(&self, place: &Place, extra: &[&str], guest_args: &[String]) -> Command {
        let mut cmd = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(&self.vmm);
                cmd
            }
            None => Command::new(&self.vmm),
        };
        cmd.args(self.vmm_args(place, extra, guest_args));
        cmd
    }
}

/// One run's figure and what else it saw (kept in the JSON).
#[derive(Clone, Debug)]
pub struct Sample {
    pub value: f64,
    pub detail: Value,
}

impl From<f64> for Sample {
    fn from(value: f64) -> Sample {
        Sample {
            value,
            detail: Value::Null,
        }
    }
}

/// One way of measuring a placement.
pub trait Workload {
    /// The name users pick it by (`--workload NAME`).
    fn name(&self) -> &'static str;
    /// The image it runs unless told otherwise (`target/images/<this>`).
    fn default_image(&self) -> &'static str;
    /// The figure's unit and direction.
    fn metric(&self) -> Metric;
    /// One line saying what one run does, for the report.
    fn describe(&self) -> String;
    /// Checks the host has what the runs need and prepares it (a namespace, a disk
    /// template); called once before the first run.
    fn prepare(&mut self, target: &Target) -> Result<(), String>;
    /// One run of the image placed by `place`; the figure.
    fn run(&mut self, target: &Target, place: &Place) -> Result<f64, String> {
        self.run_sample(target, place).map(|s| s.value)
    }
    /// One run, with what else the run saw beside its figure.
    fn run_sample(&mut self, target: &Target, place: &Place) -> Result<Sample, String>;
    /// Undoes `prepare` (also on errors and stops).
    fn cleanup(&mut self) {}
}

/// The workload called `name`, set up with `knobs`; an error names the choices, or a
/// knob this workload does not take.
pub fn by_name(name: &str, knobs: &Knobs) -> Result<Box<dyn Workload>, String> {
    let (w, takes): (Box<dyn Workload>, &[&str]) = match name {
        "iperf" => (Box::new(Iperf::new(knobs)?), &["recv", "seconds"]),
        "sqlite" => (Box::new(Sqlite::new(knobs)?), &["inserts"]),
        "gatebench" => (Box::new(Gatebench::new(knobs)?), &["calls", "case"]),
        "redis" => (
            Box::new(Redis::new(knobs)?),
            &["op", "pipeline", "requests"],
        ),
        "nginx" => (Box::new(Nginx::new(knobs)?), &["page", "seconds"]),
        other => {
            return Err(format!(
                "unknown workload '{other}' (choose iperf, sqlite, gatebench, redis or nginx)"
            ))
        }
    };
    let given = [
        ("recv", knobs.recv.is_some()),
        ("seconds", knobs.seconds.is_some()),
        ("inserts", knobs.inserts.is_some()),
        ("calls", knobs.calls.is_some()),
        ("case", knobs.case.is_some()),
        ("op", knobs.op.is_some()),
        ("pipeline", knobs.pipeline.is_some()),
        ("requests", knobs.requests.is_some()),
        ("page", knobs.page.is_some()),
    ];
    if let Some((knob, _)) = given.iter().find(|(k, set)| *set && !takes.contains(k)) {
        return Err(format!(
            "--{knob} does not apply to the {name} workload (it takes {})",
            takes
                .iter()
                .map(|k| format!("--{k}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(w)
}

/// The first JSON object the guest printed whose `"bench"` is `bench` (a console
/// prefix such as `[app] ` before it is skipped).
pub fn bench_line(stdout: &[String], bench: &str) -> Option<Value> {
    let tag = format!("{{\"bench\":\"{bench}\"");
    stdout.iter().find_map(|line| {
        let at = line.find(&tag)?;
        serde_json::from_str(&line[at..]).ok()
    })
}

/// A number field of a guest's JSON line.
pub fn field(v: &Value, key: &str) -> Result<f64, String> {
    v.get(key)
        .and_then(Value::as_f64)
        .ok_or_else(|| format!("the result line has no number '{key}': {v}"))
}

/// Runs the monitor to its end and checks it exited 0.
pub fn run_vmm(cmd: Command, timeout: Duration) -> Result<Finished, String> {
    let done = process::run(cmd, "flexos-vmm", timeout).map_err(wait_error)?;
    check_exit(done)
}

/// The monitor's output if it exited 0, else an error with its last lines.
pub fn check_exit(done: Finished) -> Result<Finished, String> {
    if done.status.success() {
        Ok(done)
    } else {
        Err(format!(
            "flexos-vmm exited with {}\n{}",
            done.status,
            done.tail(8)
        ))
    }
}

/// A wait error as the run's error text.
pub fn wait_error(e: WaitError) -> String {
    e.to_string()
}

/// Guest memory per compartment for the server images (redis, nginx): the program's
/// heap and the stack's sockets.
const SERVER_MEM_MIB: &str = "256";
/// The shared region for them: with netdev apart from net its receive buffers live in
/// the heap of their channel, which the default 16 MiB region, cut into 4 or 5
/// compartments' channels, cannot hold.
const SERVER_SHARED_MIB: &str = "64";

/// Boots a server image (redis, nginx) under `place` inside `ns` with its network
/// device on `tap` and `extra` monitor options, the guest at `ip=GUEST/24`, and waits
/// until it prints `ready`: the running monitor, or an error with its last lines when it
/// exited first (`what` names the server in it).
pub fn start_server(
    ns: &flexos_netns::NetNs,
    target: &Target,
    place: &Place,
    tap: &str,
    extra: &[&str],
    ready: &str,
    what: &str,
) -> Result<process::Running, String> {
    let mut vmm = ns.command(&target.vmm).map_err(|e| e.to_string())?;
    let tap = format!("tap={tap}");
    let mut opts = vec![
        "-m",
        SERVER_MEM_MIB,
        "--shared-mem",
        SERVER_SHARED_MIB,
        "--net",
        &tap,
    ];
    opts.extend_from_slice(extra);
    let guest_args = [format!("ip={}/24", flexos_netns::GUEST_IP)];
    vmm.args(target.vmm_args(place, &opts, &guest_args));
    let mut guest = process::Running::spawn(vmm, "flexos-vmm").map_err(wait_error)?;
    if guest
        .wait_for(ready, Duration::from_secs(60))
        .map_err(wait_error)?
    {
        return Ok(guest);
    }
    let done = guest.finish(Duration::from_secs(10)).map_err(wait_error)?;
    Err(format!(
        "the guest exited ({}) before {what} was ready\n{}",
        done.status,
        done.tail(8)
    ))
}

/// Fails with a message naming the package when `tool` is not on PATH.
pub fn require_tool(tool: &str, package: &str) -> Result<(), String> {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()));
    if found {
        Ok(())
    } else {
        Err(format!(
            "`{tool}` not found: run scripts/setup (installs {package})"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_prefixed_result_line() {
        let out: Vec<String> = [
            "[app] committed 5000",
            "[app] {\"bench\":\"sqlite\",\"seconds\":3.5}",
            "{\"bench\":\"other\"}",
        ]
        .map(String::from)
        .to_vec();
        let v = bench_line(&out, "sqlite").unwrap();
        assert_eq!(field(&v, "seconds").unwrap(), 3.5);
        assert!(field(&v, "gbps").unwrap_err().contains("no number 'gbps'"));
        assert!(bench_line(&out, "iperf").is_none());
    }

    #[test]
    fn the_users_guest_arguments_come_last() {
        let target = Target {
            vmm: "vmm".into(),
            image: "img.elf".into(),
            scratch: "/tmp".into(),
            vmm_opts: vec!["--tune".into(), "spin=0".into()],
            wrapper: Vec::new(),
            guest_args: vec!["gate.spin=9".into()],
        };
        let place = Place::Config("p.toml".into());
        let args = target.vmm_args(&place, &["--disk", "d.img"], &["bench".into()]);
        assert_eq!(
            args,
            [
                "--config",
                "p.toml",
                "--tune",
                "spin=0",
                "--disk",
                "d.img",
                "img.elf",
                "--",
                "bench",
                "gate.spin=9"
            ]
            .map(OsString::from)
        );
        let bare = Target {
            guest_args: Vec::new(),
            vmm_opts: Vec::new(),
            ..target
        };
        let two = bare.vmm_args(&Place::Compartments(2), &[], &[]);
        assert_eq!(two, ["--compartments", "2", "img.elf"].map(OsString::from));
    }

    #[test]
    fn knobs_belong_to_their_workload() {
        let knobs = Knobs {
            inserts: Some(10),
            ..Knobs::default()
        };
        assert!(by_name("sqlite", &knobs).is_ok());
        let err = by_name("iperf", &knobs).err().unwrap();
        assert_eq!(
            err,
            "--inserts does not apply to the iperf workload (it takes --recv, --seconds)"
        );
        let err = by_name("httpd", &Knobs::default()).err().unwrap();
        assert!(err.starts_with("unknown workload 'httpd'"), "{err}");
    }

    #[test]
    fn a_missing_tool_names_its_package() {
        let err = require_tool("flexos-no-such-tool", "nothing").unwrap_err();
        assert_eq!(
            err,
            "`flexos-no-such-tool` not found: run scripts/setup (installs nothing)"
        );
        require_tool("sh", "dash").unwrap();
    }
}
