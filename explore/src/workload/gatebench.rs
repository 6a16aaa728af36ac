//! gatebench: the latency of one gate case (by default `gate-chain`, bench -> relay1
//! -> relay2 -> callee and back, which crosses every compartment boundary a placement
//! draws through the chain). Figure: median nanoseconds per call (lower is better).

use std::time::Duration;

use flexos_abi::bench::{GATEBENCH_CASES, GATEBENCH_EXTRA_CASES};

use super::{bench_line, field, run_vmm, Knobs, Place, Sample, Target, Workload};
use crate::search::Metric;

const DEFAULT_CALLS: u32 = 20_000;
/// gatebench ends a case after this many seconds whatever `calls` says.
const CASE_SECONDS: u32 = 5;

pub struct Gatebench {
    calls: u32,
    case: String,
}

impl Gatebench {
    pub fn new(knobs: &Knobs) -> Result<Gatebench, String> {
        let case = knobs.case.clone().unwrap_or_else(|| "gate-chain".into());
        if !GATEBENCH_CASES.contains(&case.as_str())
            && !GATEBENCH_EXTRA_CASES.contains(&case.as_str())
        {
            return Err(format!(
                "--case {case}: gatebench has no such case (cases: {})",
                GATEBENCH_CASES.join(", ")
            ));
        }
        let calls = knobs.calls.unwrap_or(DEFAULT_CALLS);
        if !(1..=4_000_000).contains(&calls) {
            return Err(format!("--calls {calls}: want 1..=4000000"));
        }
        Ok(Gatebench { calls, case })
    }
}

impl Workload for Gatebench {
    fn name(&self) -> &'static str {
        "gatebench"
    }

    fn default_image(&self) -> &'static str {
        "gatebench.elf"
    }

    fn metric(&self) -> Metric {
        Metric {
            unit: "ns/call",
            higher_is_better: false,
        }
    }

    fn describe(&self) -> String {
        format!(
            "gatebench case={} calls={} (at most {CASE_SECONDS} s): median ns per call",
            self.case, self.calls
        )
    }

    fn prepare(&mut self, _target: &Target) -> Result<(), String> {
        Ok(())
    }

    fn run_sample(&mut self, target: &Target, place: &Place) -> Result<Sample, String> {
        let args = vec![
            format!("case={}", self.case),
            format!("calls={}", self.calls),
            format!("seconds={CASE_SECONDS}"),
        ];
        // Warm-up and the case's own bound, plus boot, with room to spare.
        let done = run_vmm(
            target.vmm_command(place, &[], &args),
            Duration::from_secs(u64::from(CASE_SECONDS) * 2 + 60),
        )?;
        let line = bench_line(&done.stdout, "gate")
            .ok_or_else(|| format!("gatebench printed no result\n{}", done.tail(8)))?;
        let ns = field(&line, "ns_median")?;
        if !(ns >= 0.0 && ns.is_finite()) {
            return Err(format!(
                "gatebench reported a median of {ns} ns per call, which no call can take"
            ));
        }
        // A median below one TSC step reads 0; keep the ratio finite.
        Ok(Sample {
            value: ns.max(0.1),
            detail: line,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_zero_calls() {
        let bad = |knobs: Knobs| Gatebench::new(&knobs).err().unwrap();
        assert_eq!(
            bad(Knobs {
                calls: Some(0),
                ..Knobs::default()
            }),
            "--calls 0: want 1..=4000000"
        );
    }
}
