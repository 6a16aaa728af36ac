//! The run's devices as one list: what the command line asked for, each with its
//! backend opened, its owner (the compartment hosting its driver component) and its
//! window. A device's window index is its place in the list, and everything after
//! planning walks the list: the thread policy, attachment, the boot info of the owner,
//! the end of the run.

use devices::block::{Block, Execution};
use devices::net::{Net, NetStats, Tap};
use devices::report::RateLimited;
use devices::virtio::StopFlag;
use flexos_abi::{DEVICE_BLOCK, DEVICE_NET};
use std::sync::Arc;

use super::bus::Window;
use crate::compartment::Kicks;
use crate::error::{Result, VmmError};
use crate::policy::{DeviceKind, DeviceRun, Policy};

/// The backend a planned device drives.
pub enum Model {
    Block(Block),
    Net(Net<Tap>),
}

/// One device of the run.
pub struct PlannedDevice {
    pub kind: DeviceKind,
    pub window: Window,
    pub model: Model,
    /// Its rate-limited reports of driver bugs, flushed when the run ends.
    pub faults: RateLimited,
}

impl DeviceKind {
    /// The component that drives it: the device belongs to that component's
    /// compartment.
    pub fn driver(self) -> &'static str {
        match self {
            DeviceKind::Block => "blkdev",
            DeviceKind::Net => "netdev",
        }
    }

    /// The option that asks for it.
    pub fn option(self) -> &'static str {
        match self {
            DeviceKind::Block => "--disk",
            DeviceKind::Net => "--net",
        }
    }

    /// Its virtio device id, as the boot info tells the guest.
    pub fn virtio_id(self) -> u32 {
        match self {
            DeviceKind::Block => DEVICE_BLOCK,
            DeviceKind::Net => DEVICE_NET,
        }
    }
}

impl PlannedDevice {
    /// Device number `index` of the run (its window), of `kind`, owned by `owner`.
    pub fn new(
        index: u32,
        kind: DeviceKind,
        owner: u32,
        model: Model,
        faults: RateLimited,
    ) -> Self {
        PlannedDevice {
            kind,
            window: Window::new(index, kind.virtio_id(), owner),
            model,
            faults,
        }
    }

    /// The flag that ends the device for good without its lock (see
    /// `devices::block::Block::end_flag`); only a device that may run in a vCPU thread
    /// has one.
    pub fn end_flag(&self) -> Option<StopFlag> {
        match &self.model {
            Model::Block(b) => Some(b.end_flag()),
            Model::Net(_) => None,
        }
    }

    /// The network device's counters, logged at the end of the run.
    pub fn net_stats(&self) -> Option<Arc<NetStats>> {
        match &self.model {
            Model::Net(n) => Some(n.stats().clone()),
            Model::Block(_) => None,
        }
    }

    /// How its queue kicks reach it: an ioeventfd to its thread, or an exit to the
    /// monitor when it runs in its owner's vCPU thread.
    pub fn kicks(&self) -> Kicks {
        match &self.model {
            Model::Block(b) if b.execution() == Execution::Inline => Kicks::Exit,
            _ => Kicks::InKernel,
        }
    }

    /// Applies the thread policy: where the device runs and on which CPU.
    pub fn apply(self, policy: &Policy) -> Self {
        let cpu = policy.cpu_of(&format!("{}-{}", self.kind.name(), self.window.owner));
        let model = match self.model {
            Model::Block(b) => {
                let execution = match policy.device_run(DeviceKind::Block) {
                    DeviceRun::OwnThread => Execution::OwnThread,
                    DeviceRun::OwnerVcpu => Execution::Inline,
                };
                Model::Block(
                    b.with_execution(execution)
                        // A device thread without a CPU of its own: see
                        // devices::virtio::queue.
                        .with_adaptive_poll(policy.crowded)
                        .with_cpu(cpu),
                )
            }
            Model::Net(n) => Model::Net(n.with_cpu(cpu)),
        };
        PlannedDevice { model, ..self }
    }
}

/// The compartment hosting `component` (the device's driver), given the catalog's
/// component names and the placement's assignment; a usage error listing the image's
/// components when it has none of that name.
pub fn owner_of(
    component: &str,
    option: &str,
    components: &[String],
    assignment: &[u8],
) -> Result<u32> {
    let index = components.iter().position(|c| c == component);
    match index.and_then(|i| assignment.get(i)) {
        Some(&owner) => Ok(u32::from(owner)),
        None => Err(VmmError::Usage(format!(
            "{option} needs a `{component}` component (its driver) in the image, which has: {}",
            components.join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_belongs_to_the_compartment_hosting_its_driver() {
        let comps: Vec<String> = ["app", "vfs", "blkdev"].map(String::from).to_vec();
        assert_eq!(owner_of("blkdev", "--disk", &comps, &[0, 1, 2]).unwrap(), 2);
        assert_eq!(owner_of("blkdev", "--disk", &comps, &[0, 1, 1]).unwrap(), 1);
        let e = owner_of("blkdev", "--disk", &["app".into(), "net".into()], &[0, 0]).unwrap_err();
        assert_eq!(e.exit_code(), crate::error::EXIT_USAGE);
        assert_eq!(
            e.to_string(),
            "--disk needs a `blkdev` component (its driver) in the image, which has: app, net"
        );
    }
}
