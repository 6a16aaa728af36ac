//! virtio-blk through the transport, as a guest drives it: the happy path and hostile
//! drivers. Every bad chain ends in an error status or DEVICE_NEEDS_RESET, never in a
//! panic or a byte moved outside the device's memory.

use std::io::ErrorKind;

use virtio_bindings::bindings::virtio_blk::*;
use virtio_bindings::bindings::virtio_config::{
    VIRTIO_CONFIG_S_DRIVER_OK, VIRTIO_CONFIG_S_NEEDS_RESET, VIRTIO_F_VERSION_1,
};
use virtio_bindings::bindings::virtio_mmio::*;
use virtio_bindings::bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VRING_DESC_F_NEXT};
use vmm_sys_util::tempfile::TempFile;

use super::*;
use crate::testing::*;
use crate::virtio::mmio::MmioTransport;
use crate::virtio::StopFlag;

const DISK_SECTORS: u64 = 64;
const FEATURES: u64 =
    (1 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_RING_F_EVENT_IDX) | (1 << VIRTIO_BLK_F_FLUSH);
const OK: u8 = VIRTIO_BLK_S_OK as u8;
const IOERR: u8 = VIRTIO_BLK_S_IOERR as u8;

const HDR: u64 = DATA;
const BUF: u64 = DATA + 0x1000;
const STATUS: u64 = DATA + 0x100;

/// A disk file whose sector n is filled with byte n.
fn disk_file() -> TempFile {
    let file = TempFile::new().unwrap();
    let mut bytes = Vec::new();
    for s in 0..DISK_SECTORS {
        bytes.extend(std::iter::repeat_n(s as u8, SECTOR_SIZE as usize));
    }
    std::fs::write(file.as_path(), bytes).unwrap();
    file
}

struct Setup {
    file: TempFile,
    t: MmioTransport<Block>,
    d: Driver,
}

fn setup_with(readonly: bool, features: u64) -> Setup {
    let file = disk_file();
    let blk = Block::open(file.as_path(), readonly)
        .unwrap()
        .with_execution(Execution::Inline);
    let mem = memory();
    let mut t = MmioTransport::new(blk, mem.clone()).unwrap();
    let d = Driver::new(&mem, 16);
    let status = d.init(&mut t, features);
    assert_eq!(
        status & VIRTIO_CONFIG_S_DRIVER_OK,
        VIRTIO_CONFIG_S_DRIVER_OK
    );
    Setup { file, t, d }
}

fn setup() -> Setup {
    setup_with(false, FEATURES)
}

impl Setup {
    fn kick(&mut self) {
        write_reg(&mut self.t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    }

    /// Posts `parts` with the header at HDR, runs the device, returns (status, used len).
    fn request(&mut self, kind: u32, sector: u64, parts: &[(u64, u32, u16)]) -> (u8, u32) {
        self.d.header(HDR, kind, sector);
        self.d.fill(STATUS, 1, 0xee);
        let before = self.d.used_idx();
        self.d.chain(parts);
        self.kick();
        assert_eq!(
            self.d.used_idx(),
            before.wrapping_add(1),
            "chain not consumed"
        );
        (self.d.byte(STATUS), self.d.used(before).1)
    }

    fn needs_reset(&mut self) -> bool {
        read_reg(&mut self.t, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET != 0
    }

    fn disk(&self) -> Vec<u8> {
        std::fs::read(self.file.as_path()).unwrap()
    }

    /// One more good request still works (the device did not give up).
    fn still_serves(&mut self) {
        assert!(!self.needs_reset());
        let r = self.request(
            VIRTIO_BLK_T_IN,
            3,
            &[(HDR, 16, R), (BUF, 512, W), (STATUS, 1, W)],
        );
        assert_eq!(r, (OK, 513));
        assert_eq!(self.d.bytes(BUF, 512), vec![3; 512]);
    }
}

#[test]
fn write_then_read_back() {
    let mut s = setup();
    let pattern: Vec<u8> = (0..1024u32).map(|i| (i * 7) as u8).collect();
    s.d.mem
        .write_slice(&pattern, vm_memory::GuestAddress(BUF))
        .unwrap();
    // Data split over two descriptors, header split too (any layout).
    let r = s.request(
        VIRTIO_BLK_T_OUT,
        2,
        &[
            (HDR, 8, R),
            (HDR + 8, 8, R),
            (BUF, 300, R),
            (BUF + 300, 724, R),
            (STATUS, 1, W),
        ],
    );
    assert_eq!(r, (OK, 1));
    let disk = s.disk();
    assert_eq!(&disk[1024..2048], &pattern[..]);
    assert_eq!(&disk[2048..2560], &[4u8; 512][..]);

    let back = BUF + 0x2000;
    let r = s.request(
        VIRTIO_BLK_T_IN,
        2,
        &[(HDR, 16, R), (back, 1024, W), (STATUS, 1, W)],
    );
    assert_eq!(r, (OK, 1025));
    assert_eq!(s.d.bytes(back, 1024), pattern);
}

#[test]
fn flush_after_write_leaves_bytes_in_the_file() {
    let mut s = setup();
    s.d.fill(BUF, 512, 0x5a);
    let r = s.request(
        VIRTIO_BLK_T_OUT,
        DISK_SECTORS - 1,
        &[(HDR, 16, R), (BUF, 512, R), (STATUS, 1, W)],
    );
    assert_eq!(r, (OK, 1));
    let r = s.request(VIRTIO_BLK_T_FLUSH, 0, &[(HDR, 16, R), (STATUS, 1, W)]);
    assert_eq!(r, (OK, 1));
    let disk = s.disk();
    assert_eq!(disk.len() as u64, DISK_SECTORS * SECTOR_SIZE);
    assert_eq!(&disk[disk.len() - 512..], &[0x5a; 512][..]);
}

#[test]
fn a_disk_on_tmpfs_is_write_through_without_flush() {
    // /dev/shm is tmpfs: fdatasync there does nothing, so FLUSH is not offered.
    let file = TempFile::new_in(std::path::Path::new("/dev/shm")).unwrap();
    std::fs::write(file.as_path(), vec![0u8; 4096]).unwrap();
    let blk = Block::open(file.as_path(), false).unwrap();
    assert!(blk.disk().memory_only());
    assert_eq!(blk.features() & (1 << VIRTIO_BLK_F_FLUSH), 0);
    assert_ne!(blk.features() & (1 << VIRTIO_RING_F_EVENT_IDX), 0);
    // The disk files of the other tests (in /tmp, on the host's disk here) get FLUSH.
    let s = setup();
    assert!(!s.t.device().disk().memory_only());
    assert_ne!(s.t.device().features() & (1 << VIRTIO_BLK_F_FLUSH), 0);
    // A driver that sends FLUSH anyway gets OK.
    let mem = memory();
    let blk = blk.with_execution(Execution::Inline);
    let mut t = MmioTransport::new(blk, mem.clone()).unwrap();
    let mut d = Driver::new(&mem, 16);
    d.init(
        &mut t,
        (1 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_RING_F_EVENT_IDX),
    );
    d.header(HDR, VIRTIO_BLK_T_FLUSH, 0);
    d.chain(&[(HDR, 16, R), (STATUS, 1, W)]);
    write_reg(&mut t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    assert_eq!(d.used_idx(), 1);
    assert_eq!(d.byte(STATUS), OK);
}

#[test]
fn get_id_answers_twenty_bytes_or_what_fits() {
    let mut s = setup();
    let id = *s.t.device().disk().id();
    assert!(id.iter().any(|&b| b != 0));
    let r = s.request(
        VIRTIO_BLK_T_GET_ID,
        0,
        &[(HDR, 16, R), (BUF, 20, W), (STATUS, 1, W)],
    );
    assert_eq!(r, (OK, 21));
    assert_eq!(s.d.bytes(BUF, 20), id);
    s.d.fill(BUF, 20, 0);
    let r = s.request(
        VIRTIO_BLK_T_GET_ID,
        0,
        &[(HDR, 16, R), (BUF, 8, W), (STATUS, 1, W)],
    );
    assert_eq!(r, (OK, 9));
    assert_eq!(s.d.bytes(BUF, 20), [&id[..8], &[0; 12]].concat());
}

#[test]
fn readonly_disk_offers_ro_and_refuses_writes() {
    let mut s = setup_with(true, FEATURES | (1 << VIRTIO_BLK_F_RO));
    assert_ne!(s.t.device().features() & (1 << VIRTIO_BLK_F_RO), 0);
    let before = s.disk();
    s.d.fill(BUF, 512, 0x77);
    let r = s.request(
        VIRTIO_BLK_T_OUT,
        1,
        &[(HDR, 16, R), (BUF, 512, R), (STATUS, 1, W)],
    );
    assert_eq!(r, (IOERR, 1));
    assert_eq!(s.disk(), before);
    let r = s.request(VIRTIO_BLK_T_FLUSH, 0, &[(HDR, 16, R), (STATUS, 1, W)]);
    assert_eq!(r, (OK, 1));
    s.still_serves();
}

#[test]
fn unsupported_type_gets_unsupp() {
    let mut s = setup();
    let r = s.request(
        VIRTIO_BLK_T_DISCARD,
        0,
        &[(HDR, 16, R), (BUF, 16, R), (STATUS, 1, W)],
    );
    assert_eq!(r, (VIRTIO_BLK_S_UNSUPP as u8, 1));
    s.still_serves();
}

#[test]
fn config_space_reports_capacity_seg_max_and_block_size() {
    let mut s = setup();
    let mut cap = [0u8; 8];
    s.t.read(0x100, &mut cap);
    assert_eq!(u64::from_le_bytes(cap), DISK_SECTORS);
    assert_eq!(read_reg(&mut s.t, 0x100), DISK_SECTORS as u32);
    assert_eq!(read_reg(&mut s.t, 0x104), 0);
    assert_eq!(read_reg(&mut s.t, 0x10c), u32::from(QUEUE_SIZE - 2));
    assert_eq!(read_reg(&mut s.t, 0x114), 512);
    // Past the end, and at offsets that overflow, config reads as zero.
    assert_eq!(read_reg(&mut s.t, 0x118), 0);
    let mut far = [0xffu8; 8];
    s.t.read(u64::MAX - 3, &mut far);
    assert_eq!(far, [0; 8]);
    assert_eq!(read_reg(&mut s.t, VIRTIO_MMIO_DEVICE_ID), 2);
}

#[test]
fn disk_files_that_cannot_back_a_device_are_typed_errors() {
    let odd = TempFile::new().unwrap();
    std::fs::write(odd.as_path(), [0u8; 1000]).unwrap();
    match Block::open(odd.as_path(), false) {
        Err(DiskError::Size { size: 1000, .. }) => {}
        other => panic!("{:?}", other.err()),
    }
    let empty = TempFile::new().unwrap();
    assert!(matches!(
        Block::open(empty.as_path(), true),
        Err(DiskError::Size { size: 0, .. })
    ));
    match Block::open(std::path::Path::new("/nonexistent/disk.img"), false) {
        Err(e @ DiskError::Open { .. }) => {
            assert_eq!(
                e.to_string(),
                "cannot open disk /nonexistent/disk.img: No such file or directory (os error 2)"
            );
            let DiskError::Open { source, .. } = e else {
                unreachable!()
            };
            assert_eq!(source.kind(), ErrorKind::NotFound);
        }
        other => panic!("{:?}", other.err()),
    }
    assert!(matches!(
        Block::open(std::path::Path::new("/"), true),
        Err(DiskError::NotAFile { .. })
    ));
}

// ---- hostile drivers ----

#[test]
fn data_outside_memory_is_an_io_error() {
    let mut s = setup();
    let r = s.request(
        VIRTIO_BLK_T_IN,
        0,
        &[(HDR, 16, R), (MEM_END, 512, W), (STATUS, 1, W)],
    );
    assert_eq!(r, (IOERR, 1));
    let r = s.request(
        VIRTIO_BLK_T_OUT,
        0,
        &[(HDR, 16, R), (0, 512, R), (STATUS, 1, W)],
    );
    assert_eq!(r, (IOERR, 1));
    // Address arithmetic that wraps.
    let r = s.request(
        VIRTIO_BLK_T_IN,
        0,
        &[(HDR, 16, R), (u64::MAX - 100, 512, W), (STATUS, 1, W)],
    );
    assert_eq!(r, (IOERR, 1));
    s.still_serves();
}

#[test]
fn data_straddling_the_end_of_memory_moves_no_byte() {
    let mut s = setup();
    let tail = MEM_END - 256;
    s.d.fill(tail, 256, 0xaa);
    let r = s.request(
        VIRTIO_BLK_T_IN,
        5,
        &[(HDR, 16, R), (tail, 512, W), (STATUS, 1, W)],
    );
    assert_eq!(r, (IOERR, 1));
    assert_eq!(s.d.bytes(tail, 256), vec![0xaa; 256]);
    // And an OUT from there leaves the file alone.
    let before = s.disk();
    let r = s.request(
        VIRTIO_BLK_T_OUT,
        5,
        &[(HDR, 16, R), (tail, 512, R), (STATUS, 1, W)],
    );
    assert_eq!(r, (IOERR, 1));
    assert_eq!(s.disk(), before);
}

#[test]
fn header_outside_memory_is_an_io_error() {
    let mut s = setup();
    let r = s.request(
        VIRTIO_BLK_T_IN,
        0,
        &[(MEM_END - 8, 16, R), (BUF, 512, W), (STATUS, 1, W)],
    );
    assert_eq!(r, (IOERR, 1));
    s.still_serves();
}

#[test]
fn sector_ranges_past_the_disk_are_io_errors() {
    let mut s = setup();
    for (sector, len) in [
        (u64::MAX, 512),
        (u64::MAX / 512, 512),
        (u64::MAX / 512 + 1, 512),
        (DISK_SECTORS, 512),
        (DISK_SECTORS - 1, 1024),
    ] {
        let r = s.request(
            VIRTIO_BLK_T_IN,
            sector,
            &[(HDR, 16, R), (BUF, len, W), (STATUS, 1, W)],
        );
        assert_eq!(r, (IOERR, 1), "sector {sector} len {len}");
        let r = s.request(
            VIRTIO_BLK_T_OUT,
            sector,
            &[(HDR, 16, R), (BUF, len, R), (STATUS, 1, W)],
        );
        assert_eq!(r, (IOERR, 1), "sector {sector} len {len}");
    }
    s.still_serves();
}

#[test]
fn wrong_directions_are_io_errors() {
    let mut s = setup();
    let before = s.disk();
    s.d.fill(BUF, 512, 0x33);
    // IN whose data the device could only read.
    let r = s.request(
        VIRTIO_BLK_T_IN,
        1,
        &[(HDR, 16, R), (BUF, 512, R), (STATUS, 1, W)],
    );
    assert_eq!(r, (IOERR, 1));
    assert_eq!(s.d.bytes(BUF, 512), vec![0x33; 512]);
    // OUT whose data the device could only write.
    let r = s.request(
        VIRTIO_BLK_T_OUT,
        1,
        &[(HDR, 16, R), (BUF, 512, W), (STATUS, 1, W)],
    );
    assert_eq!(r, (IOERR, 1));
    assert_eq!(s.disk(), before);
    // Header the device may only write.
    let r = s.request(
        VIRTIO_BLK_T_IN,
        1,
        &[(HDR, 16, W), (BUF, 512, W), (STATUS, 1, W)],
    );
    assert_eq!(r, (IOERR, 1));
    // A readable descriptor after a writable one.
    let r = s.request(
        VIRTIO_BLK_T_IN,
        1,
        &[(HDR, 16, R), (BUF, 512, W), (BUF, 16, R), (STATUS, 1, W)],
    );
    assert_eq!(r, (IOERR, 1));
    // FLUSH carrying data.
    let r = s.request(
        VIRTIO_BLK_T_FLUSH,
        0,
        &[(HDR, 16, R), (BUF, 512, W), (STATUS, 1, W)],
    );
    assert_eq!(r, (IOERR, 1));
    s.still_serves();
}

#[test]
fn short_header_and_partial_sectors_are_io_errors() {
    let mut s = setup();
    let r = s.request(
        VIRTIO_BLK_T_IN,
        0,
        &[(HDR, 8, R), (BUF, 512, W), (STATUS, 1, W)],
    );
    assert_eq!(r, (IOERR, 1));
    let r = s.request(
        VIRTIO_BLK_T_IN,
        0,
        &[(HDR, 16, R), (BUF, 100, W), (STATUS, 1, W)],
    );
    assert_eq!(r, (IOERR, 1));
    let r = s.request(
        VIRTIO_BLK_T_OUT,
        0,
        &[(HDR, 16, R), (BUF, 513, R), (STATUS, 1, W)],
    );
    assert_eq!(r, (IOERR, 1));
    s.still_serves();
}

/// Posts a chain that cannot carry a status; the device must consume it with length 0
/// and need a reset, then answer nothing until the driver resets it.
fn assert_unanswerable(s: &mut Setup, post: impl FnOnce(&mut Driver)) {
    s.d.fill(STATUS, 1, 0xee);
    let before = s.d.used_idx();
    post(&mut s.d);
    s.kick();
    assert_eq!(s.d.used_idx(), before.wrapping_add(1));
    assert_eq!(s.d.used(before).1, 0);
    assert!(s.needs_reset());
    assert_eq!(
        read_reg(&mut s.t, VIRTIO_MMIO_INTERRUPT_STATUS),
        VIRTIO_MMIO_INT_CONFIG
    );
    // Nothing more is processed until reset.
    s.d.header(HDR, VIRTIO_BLK_T_IN, 0);
    s.d.chain(&[(HDR, 16, R), (BUF, 512, W), (STATUS, 1, W)]);
    s.kick();
    assert_eq!(s.d.used_idx(), before.wrapping_add(1));
    // A reset and a fresh initialisation bring the device back.
    s.d = Driver::new(&s.d.mem, 16);
    s.d.fill(DESC, 0x3000, 0);
    let status = s.d.init(&mut s.t, FEATURES);
    assert_eq!(
        status & (VIRTIO_CONFIG_S_DRIVER_OK | VIRTIO_CONFIG_S_NEEDS_RESET),
        VIRTIO_CONFIG_S_DRIVER_OK
    );
    s.still_serves();
}

#[test]
fn looping_chain_needs_reset() {
    let mut s = setup();
    assert_unanswerable(&mut s, |d| {
        d.header(HDR, VIRTIO_BLK_T_IN, 0);
        d.put_desc(0, HDR, 16, R | VRING_DESC_F_NEXT as u16, 1);
        d.put_desc(1, BUF, 512, W | VRING_DESC_F_NEXT as u16, 0);
        d.post(0);
    });
}

#[test]
fn next_index_past_the_table_needs_reset() {
    let mut s = setup();
    assert_unanswerable(&mut s, |d| {
        d.put_desc(0, HDR, 16, R | VRING_DESC_F_NEXT as u16, 16);
        d.post(0);
    });
}

#[test]
fn lengths_summing_past_u32_need_reset() {
    let mut s = setup();
    assert_unanswerable(&mut s, |d| {
        d.header(HDR, VIRTIO_BLK_T_IN, 0);
        d.chain(&[
            (HDR, 16, R),
            (BUF, 0x8000_0000, W),
            (BUF, 0x8000_0000, W),
            (STATUS, 1, W),
        ]);
    });
}

#[test]
fn missing_status_byte_needs_reset() {
    let mut s = setup();
    assert_unanswerable(&mut s, |d| {
        d.header(HDR, VIRTIO_BLK_T_IN, 0);
        d.chain(&[(HDR, 16, R), (BUF, 512, W)]);
        // The "status" would be the last data byte: make the chain end readable.
        d.put_desc(1, BUF, 512, R, 0);
    });
}

#[test]
fn read_only_status_descriptor_needs_reset() {
    let mut s = setup();
    assert_unanswerable(&mut s, |d| {
        d.header(HDR, VIRTIO_BLK_T_FLUSH, 0);
        d.chain(&[(HDR, 16, R), (STATUS, 1, R)]);
    });
}

#[test]
fn empty_or_outside_status_needs_reset() {
    let mut s = setup();
    assert_unanswerable(&mut s, |d| {
        d.header(HDR, VIRTIO_BLK_T_FLUSH, 0);
        d.chain(&[(HDR, 16, R), (STATUS, 0, W)]);
    });
    assert_unanswerable(&mut s, |d| {
        d.header(HDR, VIRTIO_BLK_T_FLUSH, 0);
        d.chain(&[(HDR, 16, R), (MEM_END, 1, W)]);
    });
}

#[test]
fn head_index_past_the_queue_needs_reset_without_a_used_entry() {
    let mut s = setup();
    s.d.post(200);
    s.kick();
    assert!(s.needs_reset());
    assert_eq!(s.d.used_idx(), 0);
}

#[test]
fn available_index_far_ahead_needs_reset() {
    let mut s = setup();
    s.d.header(HDR, VIRTIO_BLK_T_IN, 0);
    s.d.chain(&[(HDR, 16, R), (BUF, 512, W), (STATUS, 1, W)]);
    s.d.set_avail_idx(1000);
    s.kick();
    assert!(s.needs_reset());
    assert_eq!(s.d.used_idx(), 0);
    assert_eq!(s.d.byte(STATUS), 0);
}

#[test]
fn rings_outside_memory_refuse_driver_ok() {
    let file = disk_file();
    let blk = Block::open(file.as_path(), false)
        .unwrap()
        .with_execution(Execution::Inline);
    let mem = memory();
    let mut t = MmioTransport::new(blk, mem.clone()).unwrap();
    let d = Driver::new(&mem, 16);
    for (desc, avail, used) in [
        (MEM_END, AVAIL, USED),
        (DESC, MEM_END - 2, USED),
        (DESC, AVAIL, MEM_END - 8),
        (DESC, AVAIL, 0),
        (DESC + 8, AVAIL, USED), // misaligned table
    ] {
        write_reg(&mut t, VIRTIO_MMIO_STATUS, 0);
        write_reg(&mut t, VIRTIO_MMIO_STATUS, 1);
        write_reg(&mut t, VIRTIO_MMIO_STATUS, 3);
        write_reg(&mut t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
        write_reg(&mut t, VIRTIO_MMIO_DRIVER_FEATURES, 1);
        write_reg(&mut t, VIRTIO_MMIO_STATUS, 11);
        d.setup_queue(&mut t, desc, avail, used);
        write_reg(&mut t, VIRTIO_MMIO_STATUS, 15);
        assert_eq!(
            read_reg(&mut t, VIRTIO_MMIO_STATUS),
            11 | VIRTIO_CONFIG_S_NEEDS_RESET
        );
        assert!(!t.is_activated());
    }
}

#[test]
fn event_idx_publishes_avail_event_before_sleeping() {
    let mut s = setup();
    s.request(
        VIRTIO_BLK_T_IN,
        0,
        &[(HDR, 16, R), (BUF, 512, W), (STATUS, 1, W)],
    );
    s.request(
        VIRTIO_BLK_T_IN,
        0,
        &[(HDR, 16, R), (BUF, 512, W), (STATUS, 1, W)],
    );
    // avail_event sits after the used ring's 16 elements: it asks for a kick at the
    // next chain the device has not seen.
    let avail_event: u16 =
        s.d.mem
            .read_obj(vm_memory::GuestAddress(USED + 4 + 8 * 16))
            .unwrap();
    assert_eq!(avail_event, 2);
}

#[test]
fn without_event_idx_notifications_are_reenabled_through_used_flags() {
    let mut s = setup_with(false, (1 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_BLK_F_FLUSH));
    // As if an earlier batch had left NO_NOTIFY set.
    s.d.mem
        .write_obj(1u16, vm_memory::GuestAddress(USED))
        .unwrap();
    s.still_serves();
    let flags: u16 = s.d.mem.read_obj(vm_memory::GuestAddress(USED)).unwrap();
    assert_eq!(flags, 0);
}

#[test]
fn a_disk_has_one_writer_or_any_number_of_readers() {
    let file = disk_file();
    let path = file.as_path();
    let locked = |r: Result<Block, DiskError>| match r.err() {
        Some(DiskError::Locked { holder, .. }) => holder,
        other => panic!("want Locked, got {other:?}"),
    };
    let me = std::fs::read_to_string("/proc/self/comm").unwrap();
    let pid = std::process::id();
    {
        let _writer = Block::open(path, false).unwrap();
        assert_eq!(
            locked(Block::open(path, false)),
            format!("{} (pid {pid}) holds a write lock", me.trim_end())
        );
        assert_eq!(
            locked(Block::open(path, true)),
            format!("{} (pid {pid}) holds a write lock", me.trim_end())
        );
    }
    {
        let _r1 = Block::open(path, true).unwrap();
        let _r2 = Block::open(path, true).unwrap();
        let holder = locked(Block::open(path, false));
        assert_eq!(
            holder,
            format!(
                "{0} (pid {pid}) holds a read lock, {0} (pid {pid}) holds a read lock",
                me.trim_end()
            )
        );
    }
    // Every lock went with its device.
    drop(Block::open(path, false).unwrap());
}

#[test]
fn proc_locks_lines_name_the_holders_of_one_file() {
    let text = "1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF\n\
                2: POSIX  ADVISORY  WRITE 77 fd:01:1234 0 EOF\n\
                3: FLOCK  ADVISORY  READ  99 fd:01:999 0 EOF\n\
                4: FLOCK  ADVISORY  READ  100 fd:01:1234 0 EOF\n\
                garbage\n";
    let dev = libc::makedev(0xfd, 1);
    assert_eq!(
        disk::lock_holders(text, dev, 1234),
        [(4242, "write"), (100, "read")]
    );
    assert!(disk::lock_holders("", dev, 1234).is_empty());
}

#[test]
fn a_fifo_is_refused_without_blocking_even_read_only() {
    let dir = TempFile::new().unwrap();
    let fifo = dir.as_path().with_extension("fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a NUL-terminated path; mkfifo only creates a node.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    for readonly in [true, false] {
        assert!(
            matches!(
                Block::open(&fifo, readonly),
                Err(DiskError::NotAFile { .. })
            ),
            "readonly={readonly}"
        );
    }
    std::fs::remove_file(&fifo).unwrap();
}

/// Requests larger than a [`request::CHUNK`] move in pieces, each after a look at the
/// stop flag: the pieces land where one whole copy would, and a set flag stops the
/// request before its first byte, with no answer.
#[test]
fn large_requests_move_in_chunks_and_stop_when_asked() {
    use request::{Request, RequestType, Segment, CHUNK};
    use vm_memory::GuestAddress;

    let file = TempFile::new().unwrap();
    let bytes: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(file.as_path(), &bytes).unwrap();
    let disk = Disk::open(file.as_path(), false).unwrap();
    let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 4 << 20)]).unwrap();
    let first = CHUNK * 2 + 4096;
    let req = Request {
        kind: RequestType::In,
        sector: 1,
        data: vec![
            Segment {
                addr: GuestAddress(0),
                len: first,
            },
            Segment {
                addr: GuestAddress(u64::from(first) + 512),
                len: 8192,
            },
        ],
        data_len: first + 8192,
        status: GuestAddress(0),
    };
    let stop = StopFlag::default();
    assert_eq!(
        request::execute(&req, &disk, &mem, &stop),
        Some((OK, first + 8192 + 1))
    );
    let mut got = vec![0u8; first as usize];
    mem.read_slice(&mut got, GuestAddress(0)).unwrap();
    assert!(got == bytes[512..512 + first as usize], "first segment");
    let mut got = vec![0u8; 8192];
    mem.read_slice(&mut got, GuestAddress(u64::from(first) + 512))
        .unwrap();
    let at = 512 + first as usize;
    assert!(got == bytes[at..at + 8192], "second segment");

    let fresh = GuestMemory::from_ranges(&[(GuestAddress(0), 4 << 20)]).unwrap();
    stop.set();
    assert_eq!(request::execute(&req, &disk, &fresh, &stop), None);
    let mut got = vec![0xffu8; 4096];
    fresh.read_slice(&mut got, GuestAddress(0)).unwrap();
    assert_eq!(got, vec![0u8; 4096]);
}
