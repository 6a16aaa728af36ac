//! The boot-info block and guest arguments, written into the boot-info window before
//! the compartment's first instruction.

use flexos_abi::{
    BootInfo, BOOT_FLAG_DISK, BOOT_FLAG_TIMINGS, BOOT_INFO_ADDR, BOOT_INFO_SIZE, DEVICE_BLOCK,
    MAX_DEVICES, NAME_LEN, SHARED_BASE,
};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::CompartmentSpec;
use crate::arch::layout::GuestLayout;
use crate::error::{Result, VmmError};
use crate::pod::Pod;

/// Writes the boot-info block and the guest arguments into the boot-info window.
pub(super) fn write(
    mem: &GuestMemoryMmap,
    spec: &CompartmentSpec,
    layout: &GuestLayout,
    tsc_khz: u64,
    tsc_now: u64,
) -> Result<()> {
    let header = std::mem::size_of::<BootInfo>() as u64;
    let mut args = Vec::new();
    for a in &spec.guest_args {
        if a.as_bytes().contains(&0) {
            return Err(VmmError::Usage(format!(
                "guest argument {a:?} contains a NUL byte"
            )));
        }
        args.extend_from_slice(a.as_bytes());
        args.push(0);
    }
    if header + args.len() as u64 > BOOT_INFO_SIZE {
        return Err(VmmError::Usage(format!(
            "guest arguments take {} bytes; at most {} fit",
            args.len(),
            BOOT_INFO_SIZE - header
        )));
    }
    let mut info = BootInfo::empty();
    info.flags = if spec.timings { BOOT_FLAG_TIMINGS } else { 0 };
    if spec.windows.iter().any(|w| w.kind == DEVICE_BLOCK) {
        info.flags |= BOOT_FLAG_DISK;
    }
    info.compartment_id = spec.id;
    info.compartment_count = count_u32(spec.all_names.len(), "compartments")?;
    let name = &spec.name.as_bytes()[..spec.name.len().min(NAME_LEN)];
    info.compartment_name[..name.len()].copy_from_slice(name);
    info.mem_size = layout.plan.mem_size;
    info.image_end = layout.image_end;
    info.heap_start = layout.heap_start;
    info.heap_size = layout.heap_end - layout.heap_start;
    info.stack_top = layout.stack_top;
    info.stack_size = layout.stack_top - layout.stack_bottom;
    info.shared_base = SHARED_BASE;
    info.shared_size = layout.shared_size;
    info.tsc_khz = tsc_khz;
    info.tsc_at_start = tsc_now;
    // A host clock before 1970 (or past 2554) is a broken host: the guest then counts
    // from the epoch.
    info.wall_clock_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| u64::try_from(d.as_nanos()).ok())
        .unwrap_or(0);
    info.host_cpus = spec.host_cpus;
    info.spin_rounds = spec.spin_rounds;
    info.argc = count_u32(spec.guest_args.len(), "guest arguments")?;
    info.args_addr = BOOT_INFO_ADDR + header;
    info.args_len = args.len() as u64;
    info.component_count = count_u32(spec.assignment.len(), "components")?;
    info.placement[..spec.assignment.len()].copy_from_slice(&spec.assignment);
    let own = spec.windows.iter().filter(|w| w.owner == spec.id);
    for (slot, w) in own.enumerate() {
        let Some(entry) = info.devices.get_mut(slot) else {
            return Err(VmmError::BootInfo(format!(
                "compartment {} ({}) would own more than {MAX_DEVICES} devices",
                spec.id, spec.name
            )));
        };
        *entry = w.info();
        info.device_count += 1;
    }

    let write = |r: std::result::Result<(), vm_memory::GuestMemoryError>| {
        r.map_err(|source| {
            crate::memory::MemoryError::Write {
                what: "the boot info",
                addr: BOOT_INFO_ADDR,
                source,
            }
            .into()
        })
    };
    write(mem.write_obj(Pod(info), GuestAddress(BOOT_INFO_ADDR)))?;
    write(mem.write_slice(&args, GuestAddress(BOOT_INFO_ADDR + header)))
}

/// A count for a u32 field of the boot info; the placement and the argument size limit
/// keep every count far below, so a failure here is a monitor bug, reported as such.
fn count_u32(n: usize, what: &str) -> Result<u32> {
    u32::try_from(n).map_err(|_| VmmError::BootInfo(format!("{n} {what} do not fit")))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::arch::layout::MemoryPlan;
    use crate::memory::{compartment_memory, SharedRegion};
    use crate::mmio::Window;
    use flexos_abi::{DEVICE_BLOCK, DEVICE_NET};

    #[test]
    fn boot_info_packs_arguments_after_the_block() {
        let shared = SharedRegion::new(2 << 20, 2).unwrap();
        let plan = MemoryPlan::new(64 << 20, 0x10_1000, 2).unwrap();
        let mem = compartment_memory(&plan, 1, &shared).unwrap();
        let spec = CompartmentSpec {
            id: 1,
            name: "net".into(),
            components: vec![],
            assignment: vec![0, 1, 1],
            all_names: Arc::new(vec!["app".into(), "net".into()]),
            guest_args: vec!["a=1".into(), "".into(), "b c".into()],
            timings: true,
            windows: Arc::new(vec![
                Window::new(0, DEVICE_NET, 0),
                Window::new(1, DEVICE_BLOCK, 1),
            ]),
            host_cpus: 6,
            spin_rounds: 77,
        };
        let layout = GuestLayout::new(plan, 1, vec![], 0x10_1000, shared.mappings(1), 2 << 20);
        let unix_ns = || {
            let since = std::time::UNIX_EPOCH.elapsed().unwrap();
            u64::try_from(since.as_nanos()).unwrap()
        };
        let before = unix_ns();
        write(&mem, &spec, &layout, 2_596_000, 42).unwrap();
        let after = unix_ns();
        let info: Pod<BootInfo> = mem.read_obj(GuestAddress(BOOT_INFO_ADDR)).unwrap();
        let info = info.0;
        assert_eq!(info.version, flexos_abi::BOOT_VERSION);
        // The host's clock, read while the block was written.
        assert!(before > 1_600_000_000 * 1_000_000_000, "a clock after 2020");
        assert!((before..=after).contains(&info.wall_clock_ns));
        assert_eq!(info.magic, flexos_abi::BOOT_MAGIC);
        assert_eq!((info.compartment_id, info.compartment_count), (1, 2));
        assert_eq!(info.name(), "net");
        assert_eq!(info.host_cpus, 6);
        assert_eq!(info.spin_rounds, 77);
        assert_eq!(info.flags, BOOT_FLAG_TIMINGS | BOOT_FLAG_DISK);
        assert_eq!(&info.placement[..3], &[0, 1, 1]);
        // Only its own device, at the run's window for it.
        assert_eq!(
            info.devices(),
            [flexos_abi::DeviceInfo {
                kind: DEVICE_BLOCK,
                reserved: 0,
                mmio_base: flexos_abi::MMIO_BASE + flexos_abi::MMIO_WINDOW_SIZE,
                mmio_size: flexos_abi::MMIO_WINDOW_SIZE,
            }]
        );
        assert_eq!(info.stack_top, plan.data_window(1).end);
        let mut args = vec![0u8; usize::try_from(info.args_len).unwrap()];
        mem.read_slice(&mut args, GuestAddress(info.args_addr))
            .unwrap();
        assert_eq!(args, b"a=1\0\0b c\0");

        let mut bad = spec;
        bad.guest_args = vec!["x\0y".into()];
        assert!(write(&mem, &bad, &layout, 0, 0).is_err());
        bad.guest_args = vec!["x".repeat(usize::try_from(BOOT_INFO_SIZE).unwrap())];
        assert!(write(&mem, &bad, &layout, 0, 0).is_err());

        // A run without a block device: no disk flag. With one that another compartment
        // owns: the flag (every compartment of the run is told, not only the owner).
        let mut plain = bad;
        plain.guest_args = vec![];
        plain.timings = false;
        plain.windows = Arc::new(vec![Window::new(0, DEVICE_NET, 0)]);
        write(&mem, &plain, &layout, 0, 0).unwrap();
        let info: Pod<BootInfo> = mem.read_obj(GuestAddress(BOOT_INFO_ADDR)).unwrap();
        assert_eq!(info.0.flags, 0);
        plain.windows = Arc::new(vec![
            Window::new(0, DEVICE_NET, 1),
            Window::new(1, DEVICE_BLOCK, 0),
        ]);
        write(&mem, &plain, &layout, 0, 0).unwrap();
        let info: Pod<BootInfo> = mem.read_obj(GuestAddress(BOOT_INFO_ADDR)).unwrap();
        assert_eq!(info.0.flags, BOOT_FLAG_DISK);
    }
}
