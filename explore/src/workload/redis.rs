//! redis: FlexOS Figure 6's workload. Unmodified Redis (the `redis` image) serves a
//! stock `redis-benchmark -c 30 -P P -t OP -n N` from a network namespace; the figure
//! is the client's requests per second (higher is better).
//!
//! Each run boots the image under the placement with its virtio-net device on a tap in
//! a namespace this workload makes with [`flexos_netns`] (removed at the end, on
//! errors and on SIGINT/SIGTERM), waits for Redis's "Ready to accept connections",
//! runs the client, then ends the guest with `SHUTDOWN NOSAVE` (a guest that does not
//! exit 0 fails the run). No disk: Redis keeps its data in memory (`save ""`).

use std::process::Command;
use std::time::Duration;

use flexos_netns::NetNs;
use serde_json::json;

use super::{
    check_exit, require_tool, start_server, wait_error, Knobs, Place, Sample, Target, Workload,
};
use crate::process;
use crate::search::Metric;

const DEFAULT_REQUESTS: u32 = 200_000;
const DEFAULT_PIPELINE: u32 = 16;
/// FlexOS's client count (its Figure 6 runs `-c 30`).
pub const CLIENTS: u32 = 30;
const CLIENT_IP: &str = "10.0.0.1";
pub const SERVER_IP: &str = flexos_netns::GUEST_IP;
const TAP: &str = "fxr0";
/// A redis-benchmark test this workload runs (`-t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Get,
    Set,
}

impl Op {
    pub fn parse(s: &str) -> Result<Op, String> {
        match s {
            "get" => Ok(Op::Get),
            "set" => Ok(Op::Set),
            other => Err(format!("--op {other}: want get or set")),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Set => "set",
        }
    }
}

pub struct Redis {
    op: Op,
    pipeline: u32,
    requests: u32,
    netns: Option<NetNs>,
}

impl Redis {
    pub fn new(knobs: &Knobs) -> Result<Redis, String> {
        let op = Op::parse(knobs.op.as_deref().unwrap_or("get"))?;
        let pipeline = knobs.pipeline.unwrap_or(DEFAULT_PIPELINE);
        if !(1..=1024).contains(&pipeline) {
            return Err(format!("--pipeline {pipeline}: want 1..=1024"));
        }
        let requests = knobs.requests.unwrap_or(DEFAULT_REQUESTS);
        if !(1000..=100_000_000).contains(&requests) {
            return Err(format!("--requests {requests}: want 1000..=100000000"));
        }
        Ok(Redis {
            op,
            pipeline,
            requests,
            netns: None,
        })
    }

    /// The test and pipeline depth from now on (a preset's sweep).
    pub fn set(&mut self, op: Op, pipeline: u32) {
        self.op = op;
        self.pipeline = pipeline;
    }

    fn ns(&self) -> &NetNs {
        self.netns.as_ref().expect("prepare ran")
    }
}

/// `redis-benchmark` against `host` in `ns`: requests per second of `op`.
pub fn benchmark(
    ns: &NetNs,
    host: &str,
    op: Op,
    pipeline: u32,
    requests: u32,
) -> Result<f64, String> {
    let mut cmd = ns.command("redis-benchmark").map_err(|e| e.to_string())?;
    cmd.args(["-h", host, "-p", "6379", "--csv", "-t", op.name()]);
    cmd.args(["-c", &CLIENTS.to_string(), "-P", &pipeline.to_string()]);
    cmd.args(["-n", &requests.to_string()]);
    let done =
        process::run(cmd, "redis-benchmark", Duration::from_secs(600)).map_err(wait_error)?;
    match (done.status.success(), rps(&done.stdout, op)) {
        (true, Some(v)) => Ok(v),
        _ => Err(format!(
            "redis-benchmark failed ({})\n{}",
            done.status,
            done.tail(6)
        )),
    }
}

/// Requests per second from redis-benchmark's `--csv` report: the row named after the
/// test (`"GET","156494.52",...`), its second field.
pub fn rps(stdout: &[String], op: Op) -> Option<f64> {
    let tag = format!("\"{}\"", op.name().to_uppercase());
    let row = stdout.iter().find(|l| l.starts_with(&tag))?;
    row.split(',').nth(1)?.trim_matches('"').parse().ok()
}

/// Ends a Redis server with `SHUTDOWN NOSAVE` (redis-cli reports the closed
/// connection; the server's exit status is what counts).
pub fn shutdown(ns: &NetNs, host: &str) -> Result<(), String> {
    let mut cmd: Command = ns.command("redis-cli").map_err(|e| e.to_string())?;
    cmd.args(["-h", host, "SHUTDOWN", "NOSAVE"]);
    process::run(cmd, "redis-cli", Duration::from_secs(30)).map_err(wait_error)?;
    Ok(())
}

impl Workload for Redis {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn default_image(&self) -> &'static str {
        "redis.elf"
    }

    fn metric(&self) -> Metric {
        Metric {
            unit: "req/s",
            higher_is_better: true,
        }
    }

    fn describe(&self) -> String {
        format!(
            "redis-benchmark -c {CLIENTS} -P {} -t {} -n {} into the guest's Redis: requests/s",
            self.pipeline,
            self.op.name(),
            self.requests
        )
    }

    fn prepare(&mut self, _target: &Target) -> Result<(), String> {
        require_tool("ip", "iproute2")?;
        require_tool("redis-benchmark", "redis-tools")?;
        require_tool("redis-cli", "redis-tools")?;
        // Dropped (and so removed, with its tap) by cleanup(), whatever fails next.
        let ns =
            NetNs::with_tap("redis", TAP, &format!("{CLIENT_IP}/24")).map_err(|e| e.to_string())?;
        self.netns = Some(ns);
        Ok(())
    }

    fn run_sample(&mut self, target: &Target, place: &Place) -> Result<Sample, String> {
        let guest = start_server(
            self.ns(),
            target,
            place,
            TAP,
            &[],
            "Ready to accept connections",
            "Redis",
        )?;
        // On an error, dropping `guest` kills it.
        let value = benchmark(self.ns(), SERVER_IP, self.op, self.pipeline, self.requests)?;
        shutdown(self.ns(), SERVER_IP)?;
        check_exit(guest.finish(Duration::from_secs(30)).map_err(wait_error)?)?;
        Ok(Sample {
            value,
            detail: json!({"op": self.op.name(), "pipeline": self.pipeline,
                           "requests": self.requests, "clients": CLIENTS}),
        })
    }

    fn cleanup(&mut self) {
        // The tap goes with its namespace.
        self.netns = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_redis_benchmarks_csv_report() {
        let out = [
            "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\"",
            "\"SET\",\"200803.22\",\"2.264\",\"0.344\"",
            "\"GET\",\"156494.52\",\"2.987\",\"0.416\"",
        ]
        .map(String::from);
        assert_eq!(rps(&out, Op::Get), Some(156494.52));
        assert_eq!(rps(&out, Op::Set), Some(200803.22));
        assert_eq!(rps(&out[..1], Op::Get), None);
    }

    #[test]
    fn rejects_bad_knobs() {
        let bad = |knobs: Knobs| Redis::new(&knobs).err().unwrap();
        assert_eq!(
            bad(Knobs {
                op: Some("del".into()),
                ..Knobs::default()
            }),
            "--op del: want get or set"
        );
        assert_eq!(
            bad(Knobs {
                pipeline: Some(0),
                ..Knobs::default()
            }),
            "--pipeline 0: want 1..=1024"
        );
        assert_eq!(
            bad(Knobs {
                requests: Some(10),
                ..Knobs::default()
            }),
            "--requests 10: want 1000..=100000000"
        );
    }
}
