//! iperf: FlexOS Figure 9's workload at one receive size. A stock iperf2 client
//! streams into the image's server (`recv=N count=1`) for a few seconds; the figure is
//! the client's Gbit/s (higher is better).
//!
//! Everything happens in a network namespace this workload creates with
//! [`flexos_netns`] (a tap with the client's address, the monitor's device on it) and
//! removes at the end, on errors and on SIGINT/SIGTERM: nothing is routed to or from
//! the host's own namespace.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use flexos_netns::NetNs;
use serde_json::{json, Value};

use super::{check_exit, require_tool, wait_error, Knobs, Place, Sample, Target, Workload};
use crate::measure::ThreadSampler;
use crate::process::{self, Running};
use crate::search::Metric;

const DEFAULT_RECV: u32 = 1024;
const DEFAULT_SECONDS: u32 = 3;
const CLIENT_IP: &str = "10.0.0.1";
const SERVER_IP: &str = flexos_netns::GUEST_IP;
const TAP: &str = "fxt0";

pub struct Iperf {
    recv: u32,
    seconds: u32,
    /// Run the stock iperf3 client with these extra arguments (`-R`, `-P 4`) instead of
    /// iperf2's; the figure is what the receiver got.
    iperf3: Option<Vec<String>>,
    netns: Option<NetNs>,
}

impl Iperf {
    /// From now on, the iperf3 client with `args` (`None`: iperf2, as Figure 9).
    pub fn set_iperf3(&mut self, args: Option<Vec<String>>) {
        self.iperf3 = args;
    }

    /// The guest's receive size from now on (a sweep over sizes).
    pub fn set_recv(&mut self, recv: u32) {
        self.recv = recv;
    }

    pub fn new(knobs: &Knobs) -> Result<Iperf, String> {
        let recv = knobs.recv.unwrap_or(DEFAULT_RECV);
        if !(1..=1 << 20).contains(&recv) {
            return Err(format!("--recv {recv}: want 1..=1048576 bytes"));
        }
        let seconds = knobs.seconds.unwrap_or(DEFAULT_SECONDS);
        if !(1..=600).contains(&seconds) {
            return Err(format!("--seconds {seconds}: want 1..=600"));
        }
        Ok(Iperf {
            recv,
            seconds,
            iperf3: None,
            netns: None,
        })
    }

    /// `program` inside the namespace.
    fn in_ns(&self, program: &Path) -> Result<Command, String> {
        let ns = self.netns.as_ref().expect("prepare ran");
        ns.command(program).map_err(|e| e.to_string())
    }
}

impl Workload for Iperf {
    fn name(&self) -> &'static str {
        "iperf"
    }

    fn default_image(&self) -> &'static str {
        "iperf.elf"
    }

    fn metric(&self) -> Metric {
        Metric {
            unit: "Gbit/s",
            higher_is_better: true,
        }
    }

    fn describe(&self) -> String {
        format!(
            "iperf2 client -t {} into the guest's server, recv={} B: client Gbit/s",
            self.seconds, self.recv
        )
    }

    fn prepare(&mut self, _target: &Target) -> Result<(), String> {
        require_tool("ip", "iproute2")?;
        require_tool("iperf", "iperf")?;
        // Dropped (and so removed, with its tap) by cleanup(), whatever fails next.
        let ns = NetNs::with_tap("explore", TAP, &format!("{CLIENT_IP}/24"))
            .map_err(|e| e.to_string())?;
        self.netns = Some(ns);
        Ok(())
    }

    fn run_sample(&mut self, target: &Target, place: &Place) -> Result<Sample, String> {
        let mut vmm = self.in_ns(&target.vmm)?;
        let tap = format!("tap={TAP}");
        let guest_args = [
            format!("ip={SERVER_IP}/24"),
            format!("recv={}", self.recv),
            "count=1".to_string(),
        ];
        vmm.args(target.vmm_args(place, &["--net", &tap], &guest_args));
        let mut guest = Running::spawn(vmm, "flexos-vmm").map_err(wait_error)?;
        if !guest
            .wait_for("iperf: listening", Duration::from_secs(60))
            .map_err(wait_error)?
        {
            return Err(
                check_exit(guest.finish(Duration::from_secs(10)).map_err(wait_error)?)
                    .err()
                    .unwrap_or_else(|| "the guest exited before it listened".into()),
            );
        }
        // The host cores each of the monitor's threads uses while the client streams.
        let sampler = ThreadSampler::start(guest.id());
        if let Some(extra) = self.iperf3.clone() {
            let mut client = self.in_ns(Path::new("iperf3"))?;
            client.args(["-c", SERVER_IP, "-t", &self.seconds.to_string(), "-J"]);
            client.args(&extra);
            let timeout = Duration::from_secs(u64::from(self.seconds) + 60);
            let report = process::run(client, "the iperf3 client", timeout).map_err(wait_error)?;
            let cores = sampler.cores();
            let (gbps, streams) = iperf3_report(&report.stdout)
                .filter(|_| report.status.success())
                .ok_or_else(|| {
                    format!(
                        "the iperf3 client failed ({})\n{}",
                        report.status,
                        report.tail(5)
                    )
                })?;
            check_exit(guest.finish(Duration::from_secs(60)).map_err(wait_error)?)?;
            return Ok(Sample {
                value: gbps,
                detail: json!({"streams": streams, "cores": cores}),
            });
        }
        let mut client = self.in_ns(Path::new("iperf"))?;
        client.args(["-c", SERVER_IP, "-t", &self.seconds.to_string(), "-y", "C"]);
        let timeout = Duration::from_secs(u64::from(self.seconds) + 60);
        let report = process::run(client, "the iperf client", timeout).map_err(wait_error)?;
        if !report.status.success() {
            // Dropping `guest` kills it: it would wait for a client for ever.
            return Err(format!(
                "the iperf client failed ({})\n{}",
                report.status,
                report.tail(5)
            ));
        }
        let cores = sampler.cores();
        // count=1: the guest exits after its one test.
        let done = check_exit(guest.finish(Duration::from_secs(60)).map_err(wait_error)?)?;
        let (gbps, bytes) = client_report(&report.stdout)
            .ok_or_else(|| format!("no CSV report from the iperf client\n{}", report.tail(5)))?;
        let guest: Vec<Value> = done
            .stdout
            .iter()
            .filter_map(|l| l.find("{\"bench\":\"iperf\"").map(|at| &l[at..]))
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        Ok(Sample {
            value: gbps,
            detail: json!({"client_bytes": bytes, "cores": cores, "guest": guest}),
        })
    }

    fn cleanup(&mut self) {
        // The tap goes with its namespace.
        self.netns = None;
    }
}

/// From iperf3's `-J` report: the Gbit/s the receiving side got (all streams, and
/// each stream's, in the client's order; with `--bidir` both directions count).
pub fn iperf3_report(stdout: &[String]) -> Option<(f64, Vec<f64>)> {
    let json: Value = serde_json::from_str(&stdout.join("\n")).ok()?;
    let end = &json["end"];
    let gbps = |v: &Value| v["bits_per_second"].as_f64().map(|b| b / 1e9);
    let mut total = gbps(&end["sum_received"])?;
    if let Some(back) = gbps(&end["sum_received_bidir_reverse"]) {
        total += back;
    }
    let streams = end["streams"]
        .as_array()?
        .iter()
        .filter_map(|s| gbps(&s["receiver"]))
        .collect();
    Some((total, streams))
}

/// Gbit/s and bytes from iperf2's CSV report (`-y C`): the last line with the bits per
/// second in its ninth field, the bytes in its eighth.
pub fn client_report(stdout: &[String]) -> Option<(f64, u64)> {
    let row = stdout.iter().rev().find(|l| l.split(',').count() >= 9)?;
    let bps: f64 = row.split(',').nth(8)?.trim().parse().ok()?;
    let bytes: u64 = row.split(',').nth(7)?.trim().parse().ok()?;
    Some((bps / 1e9, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_iperf3s_json_report_per_stream() {
        let report = r#"{"end":{"streams":[
            {"sender":{"bits_per_second":2.0e9},"receiver":{"bits_per_second":1.5e9}},
            {"sender":{"bits_per_second":2.0e9},"receiver":{"bits_per_second":2.5e9}}],
            "sum_received":{"bits_per_second":4.0e9}}}"#;
        let lines: Vec<String> = report.lines().map(String::from).collect();
        assert_eq!(iperf3_report(&lines), Some((4.0, vec![1.5, 2.5])));
        let bidir = r#"{"end":{"streams":[],"sum_received":{"bits_per_second":1e9},
            "sum_received_bidir_reverse":{"bits_per_second":2e9}}}"#;
        assert_eq!(iperf3_report(&[bidir.to_string()]), Some((3.0, vec![])));
        assert_eq!(iperf3_report(&["{\"error\":\"x\"}".to_string()]), None);
    }

    #[test]
    fn reads_the_clients_csv_report() {
        let out = [
            "------",
            "19700101000000,10.0.0.1,43082,10.0.0.2,5001,1,0.0-3.0,1644167228,4373100660",
        ]
        .map(String::from);
        assert_eq!(client_report(&out), Some((4.37310066, 1644167228)));
        assert_eq!(client_report(&["connect failed".to_string()]), None);
    }

    #[test]
    fn rejects_sizes_and_durations_out_of_range() {
        let bad = |knobs: Knobs| Iperf::new(&knobs).err().unwrap();
        assert_eq!(
            bad(Knobs {
                recv: Some(0),
                ..Knobs::default()
            }),
            "--recv 0: want 1..=1048576 bytes"
        );
        assert_eq!(
            bad(Knobs {
                seconds: Some(0),
                ..Knobs::default()
            }),
            "--seconds 0: want 1..=600"
        );
    }
}
