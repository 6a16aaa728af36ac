//! The virtio-mmio register file under arbitrary accesses: any offset, any width, any
//! order of status, feature and queue writes. Nothing may panic, and the magic value
//! must read back whatever the guest did.

#![no_main]

use devices::block::{Block, Execution};
use devices::virtio::mmio::{MmioTransport, MMIO_MAGIC};
use libfuzzer_sys::fuzz_target;
use vm_memory::{GuestAddress, GuestMemoryMmap};

mod disk;

fuzz_target!(|data: &[u8]| {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0x1_0000), 0x1_0000)]).unwrap();
    let blk = Block::open(disk::path(), false)
        .unwrap()
        .with_execution(Execution::Inline);
    let mut t = MmioTransport::new(blk, mem).unwrap();
    // Each access: 1 byte kind/width, 2 bytes offset, 4 bytes value.
    for op in data.chunks_exact(7) {
        let width = usize::from(op[0] >> 1) % 9;
        let offset = u64::from(u16::from_le_bytes([op[1], op[2]]));
        let value = [op[3], op[4], op[5], op[6], 0, 0, 0, 0];
        if op[0] & 1 == 0 {
            let mut buf = vec![0u8; width];
            t.read(offset, &mut buf);
        } else {
            t.write(offset, &value[..width]);
        }
    }
    let mut magic = [0u8; 4];
    t.read(0, &mut magic);
    assert_eq!(u32::from_le_bytes(magic), MMIO_MAGIC);
});
