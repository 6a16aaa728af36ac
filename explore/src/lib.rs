//! `flexos-explore`: the design space that per-component isolation opens, measured.
//!
//! Given an image and a workload, every placement of the image's components into
//! compartments (every set partition, or those a filter names) is run under the monitor
//! with a generated `--config` file, the workload's figure is normalised to NONE (every
//! component in one compartment) measured in the same run, and the placements are
//! ordered by safety: P is at least as safe as Q when P refines Q. The safest
//! placements within a budget are the maximal ones, under refinement, of those that
//! meet it (FlexOS ASPLOS'22, Figures 6 and 8).
//!
//! - [`partition`]: placements as set partitions, enumeration, refinement, specs;
//! - [`filter`]: the subset of placements the command line names;
//! - [`search`]: what runs in which order, pruning, ratios, the safest set, the check
//!   of the hypothesis that a refinement is never faster;
//! - [`workload`]: how one placement is measured (iperf, sqlite, gatebench adapters);
//! - [`measure`]: the engine of the benchmark presets (`flexos-bench`): cases, rounds,
//!   medians, ratios to a baseline, competing load, tables, JSON, SVG;
//! - [`process`]: child processes with deadlines, and stopping on SIGINT/SIGTERM;
//! - [`report`]: the table, the JSON and the SVG Hasse diagram;
//! - [`error`]: why a run of the tool fails, and its exit status.

pub mod error;
pub mod filter;
pub mod measure;
pub mod partition;
pub mod presets;
pub mod process;
pub mod report;
pub mod search;
pub mod workload;
