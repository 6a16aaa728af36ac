//! Hand-built guests for the device tests: a few x86-64 instructions ([`Asm`]) in a
//! one-page image with a component table ([`image`]), so a test drives a device's
//! registers and rings exactly as a (possibly hostile) driver would, with no guest
//! kernel in between. Registers: RDI holds the boot info's address at entry; the
//! helpers keep an MMIO window's base in RBX and the heap's start in RSI.

use std::path::PathBuf;

use crate::{ElfBuilder, TempDir};

/// The monitor's exit port (flexos_abi::PORT_EXIT).
pub const PORT_EXIT: u32 = 0x0F01;
/// Boot-info offsets (flexos_abi::BootInfo).
pub const BOOT_COMPARTMENT_ID: u32 = 16;
pub const BOOT_HEAP_START: u32 = 56;
pub const BOOT_DEVICE_COUNT: u32 = 176;
/// devices[i] is 24 bytes: kind (u32), reserved, mmio_base (u64), mmio_size (u64).
pub const BOOT_DEVICE0: u32 = 184;
pub const DEVICE_SLOT: u32 = 24;
pub const BOOT_DEVICE0_KIND: u32 = BOOT_DEVICE0;
pub const BOOT_DEVICE0_BASE: u32 = BOOT_DEVICE0 + 8;
pub const BOOT_DEVICE0_SIZE: u32 = BOOT_DEVICE0 + 16;

/// x86-64 machine code, a few instructions at a time.
#[derive(Default)]
pub struct Asm(pub Vec<u8>);

impl Asm {
    pub fn bytes(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }
    /// Continues if the flags say equal, else `ud2` (a crash report names the spot).
    pub fn or_crash(self) -> Self {
        self.bytes(&[0x74, 0x02, 0x0f, 0x0b]) // je +2; ud2
    }
    /// `cmp dword [rdi + off], imm32`, then [`Self::or_crash`]: checks a boot-info field.
    pub fn expect_boot_u32(self, off: u32, value: u32) -> Self {
        self.bytes(&[0x81, 0xbf])
            .bytes(&off.to_le_bytes())
            .bytes(&value.to_le_bytes())
            .or_crash()
    }
    /// `mov rbx, [rdi + off]`: a u64 boot-info field into rbx.
    pub fn rbx_from_boot(self, off: u32) -> Self {
        self.bytes(&[0x48, 0x8b, 0x9f]).bytes(&off.to_le_bytes())
    }
    /// `mov rbx, imm64`.
    pub fn rbx(self, value: u64) -> Self {
        self.bytes(&[0x48, 0xbb]).bytes(&value.to_le_bytes())
    }
    /// `mov rsi, [rdi + heap_start]`.
    pub fn rsi_heap(self) -> Self {
        self.bytes(&[0x48, 0x8b, 0xb7])
            .bytes(&BOOT_HEAP_START.to_le_bytes())
    }
    /// `mov eax, [rbx + off]`: a 4-byte MMIO read of register `off`.
    pub fn read_reg(self, off: u32) -> Self {
        self.bytes(&[0x8b, 0x83]).bytes(&off.to_le_bytes())
    }
    /// `cmp eax, imm32`, then [`Self::or_crash`].
    pub fn expect_eax(self, value: u32) -> Self {
        self.bytes(&[0x3d]).bytes(&value.to_le_bytes()).or_crash()
    }
    /// `mov dword [rbx + off], imm32`: a 4-byte MMIO write of register `off`.
    pub fn write_reg(self, off: u32, value: u32) -> Self {
        self.bytes(&[0xc7, 0x83])
            .bytes(&off.to_le_bytes())
            .bytes(&value.to_le_bytes())
    }
    /// `lea eax, [rsi + off]; mov [rbx + reg], eax`: a heap address into register `reg`.
    pub fn write_reg_heap(self, reg: u32, off: u32) -> Self {
        self.bytes(&[0x8d, 0x86])
            .bytes(&off.to_le_bytes())
            .bytes(&[0x89, 0x83])
            .bytes(&reg.to_le_bytes())
    }
    /// `mov word [rsi + off], imm16`.
    pub fn heap_u16(self, off: u32, value: u16) -> Self {
        self.bytes(&[0x66, 0xc7, 0x86])
            .bytes(&off.to_le_bytes())
            .bytes(&value.to_le_bytes())
    }
    /// `mov dword [rsi + off], imm32`: heap memory.
    pub fn heap_u32(self, off: u32, value: u32) -> Self {
        self.bytes(&[0xc7, 0x86])
            .bytes(&off.to_le_bytes())
            .bytes(&value.to_le_bytes())
    }
    /// `bytes` into the heap at `off`, four at a time (zero-padded).
    pub fn heap_bytes(mut self, off: u32, bytes: &[u8]) -> Self {
        for (i, chunk) in (0u32..).zip(bytes.chunks(4)) {
            let mut word = [0u8; 4];
            word[..chunk.len()].copy_from_slice(chunk);
            self = self.heap_u32(off + 4 * i, u32::from_le_bytes(word));
        }
        self
    }
    /// `lea rax, [rsi + target]; mov [rsi + off], rax`: a heap address into the heap.
    pub fn heap_ptr(self, off: u32, target: u32) -> Self {
        self.bytes(&[0x48, 0x8d, 0x86])
            .bytes(&target.to_le_bytes())
            .bytes(&[0x48, 0x89, 0x86])
            .bytes(&off.to_le_bytes())
    }
    /// `mov qword [rsi + off], imm32`: an absolute (low) address into the heap.
    pub fn heap_abs(self, off: u32, addr: u32) -> Self {
        self.bytes(&[0x48, 0xc7, 0x86])
            .bytes(&off.to_le_bytes())
            .bytes(&addr.to_le_bytes())
    }
    /// Spins until the u16 at `[rsi + off]` is `value`: pause; movzx eax, word
    /// [rsi + off]; cmp eax, value; jne back.
    pub fn spin_heap_u16(self, off: u32, value: u8) -> Self {
        self.bytes(&[0xf3, 0x90, 0x0f, 0xb7, 0x86])
            .bytes(&off.to_le_bytes())
            .bytes(&[0x83, 0xf8, value, 0x75, 0xf2])
    }
    /// `movzx eax, word [rsi + off]`, then [`Self::expect_eax`].
    pub fn expect_heap_u16(self, off: u32, value: u16) -> Self {
        self.bytes(&[0x0f, 0xb7, 0x86])
            .bytes(&off.to_le_bytes())
            .expect_eax(u32::from(value))
    }
    /// `mov eax, [rsi + off]`, then [`Self::expect_eax`].
    pub fn expect_heap_u32(self, off: u32, value: u32) -> Self {
        self.bytes(&[0x8b, 0x86])
            .bytes(&off.to_le_bytes())
            .expect_eax(value)
    }
    /// Copies 6 heap bytes from `from` to `to` (a MAC address).
    pub fn heap_copy6(self, from: u32, to: u32) -> Self {
        self.bytes(&[0x8b, 0x86]) // mov eax, [rsi + from]
            .bytes(&from.to_le_bytes())
            .bytes(&[0x89, 0x86]) // mov [rsi + to], eax
            .bytes(&to.to_le_bytes())
            .bytes(&[0x0f, 0xb7, 0x86]) // movzx eax, word [rsi + from + 4]
            .bytes(&(from + 4).to_le_bytes())
            .bytes(&[0x66, 0x89, 0x86]) // mov [rsi + to + 4], ax
            .bytes(&(to + 4).to_le_bytes())
    }
    /// `push rax; mov eax, esp; mov edx, PORT_EXIT; out dx, eax`: exits with the
    /// code in rax (ExitArgs on the stack, below 4 GiB in the data window).
    pub fn exit_with_rax(self) -> Self {
        self.bytes(&[0x50, 0x89, 0xe0, 0xba])
            .bytes(&PORT_EXIT.to_le_bytes())
            .bytes(&[0xef, 0x0f, 0x0b])
    }
    /// `mov eax, imm32`, then [`Self::exit_with_rax`].
    pub fn exit(self, code: u32) -> Self {
        self.bytes(&[0xb8])
            .bytes(&code.to_le_bytes())
            .exit_with_rax()
    }
}

/// Where a request's data segment points.
pub enum Data {
    /// The guest's heap (in the device's memory).
    Heap,
    /// An absolute low address: page tables, the image.
    Low(u32),
}

/// A guest that brings the block device up by hand (virtio 1.2 section 3.1.1: one
/// queue of 4 in its heap, VERSION_1 only), posts one request of `kind` (0 IN, 1 OUT)
/// for sector 0 whose data segment is `data`, kicks the queue (a QueueNotify write: an
/// ioeventfd), spins on the used ring, and exits with the data buffer's first byte +
/// 32 * the status byte. Heap layout: descriptors 0x000, available ring 0x100, used
/// ring 0x200, header 0x300, data 0x400, status 0x600.
pub fn blk_one_request(kind: u32, data: Data) -> Asm {
    const NEXT: u32 = 1;
    const WRITE: u32 = 2;
    let data_flags = if kind == 0 { NEXT | WRITE } else { NEXT };
    let code = Asm::default()
        .bytes(&[0x48, 0x8b, 0xb7])
        .bytes(&56u32.to_le_bytes()) // mov rsi, [rdi + heap_start]
        .rbx_from_boot(BOOT_DEVICE0_BASE)
        // Descriptor 0: the header, device-readable, next 1.
        .heap_ptr(0x000, 0x300)
        .heap_u32(0x008, 16)
        .heap_u32(0x00c, NEXT | (1 << 16));
    // Descriptor 1: 512 bytes of data, next 2.
    let code = match data {
        Data::Heap => code.heap_ptr(0x010, 0x400),
        Data::Low(addr) => code.heap_abs(0x010, addr),
    };
    code.heap_u32(0x018, 512)
        .heap_u32(0x01c, data_flags | (2 << 16))
        // Descriptor 2: the status byte, device-writable.
        .heap_ptr(0x020, 0x600)
        .heap_u32(0x028, 1)
        .heap_u32(0x02c, WRITE)
        .heap_u32(0x300, kind) // header: type, sector 0
        .heap_u32(0x600, 0xff) // status: "not answered"
        .write_reg(0x70, 1) // ACKNOWLEDGE
        .write_reg(0x70, 3) // DRIVER
        .write_reg(0x24, 1) // DriverFeaturesSel: bits 32..
        .write_reg(0x20, 1) // VIRTIO_F_VERSION_1
        .write_reg(0x70, 11) // FEATURES_OK
        .write_reg(0x30, 0) // QueueSel
        .write_reg(0x38, 4) // QueueNum
        .write_reg_heap(0x80, 0x000) // QueueDescLow
        .write_reg_heap(0x90, 0x100) // QueueDriverLow
        .write_reg_heap(0xa0, 0x200) // QueueDeviceLow
        .write_reg(0x44, 1) // QueueReady
        .write_reg(0x70, 15) // DRIVER_OK
        .read_reg(0x70)
        .bytes(&[0x83, 0xf8, 0x0f]) // cmp eax, 15: the device is live
        .or_crash()
        .bytes(&[0x66, 0xc7, 0x86])
        .bytes(&0x102u32.to_le_bytes())
        .bytes(&1u16.to_le_bytes()) // avail.idx = 1
        .write_reg(0x50, 0) // QueueNotify(0)
        // Spin until used.idx == 1: pause; movzx eax, word [rsi+0x202]; cmp eax, 1; jne.
        .bytes(&[0xf3, 0x90, 0x0f, 0xb7, 0x86])
        .bytes(&0x202u32.to_le_bytes())
        .bytes(&[0x83, 0xf8, 0x01, 0x75, 0xf2])
        .bytes(&[0x0f, 0xb6, 0x86])
        .bytes(&0x400u32.to_le_bytes()) // movzx eax, byte [rsi+0x400]
        .bytes(&[0x0f, 0xb6, 0x8e])
        .bytes(&0x600u32.to_le_bytes()) // movzx ecx, byte [rsi+0x600]
        .bytes(&[0xc1, 0xe1, 0x05, 0x01, 0xc8]) // shl ecx, 5; add eax, ecx
        .exit_with_rax()
}

/// Sets the network device up by hand after `asm` (rbx at its window, rsi at the
/// heap): VERSION_1 only (receive chains must hold 12 + 1514 bytes), both queues of 4
/// in the heap (receive 0x000/0x100/0x200, transmit 0x400/0x500/0x600), then checks
/// that the status reads DRIVER_OK.
pub fn net_driver_ok(asm: Asm) -> Asm {
    asm.write_reg(0x70, 1)
        .write_reg(0x70, 3)
        .write_reg(0x24, 1) // DriverFeaturesSel: bits 32..
        .write_reg(0x20, 1) // VIRTIO_F_VERSION_1
        .write_reg(0x70, 11)
        .write_reg(0x30, 0)
        .write_reg(0x38, 4)
        .write_reg_heap(0x80, 0x000)
        .write_reg_heap(0x90, 0x100)
        .write_reg_heap(0xa0, 0x200)
        .write_reg(0x44, 1)
        .write_reg(0x30, 1)
        .write_reg(0x38, 4)
        .write_reg_heap(0x80, 0x400)
        .write_reg_heap(0x90, 0x500)
        .write_reg_heap(0xa0, 0x600)
        .write_reg(0x44, 1)
        .write_reg(0x70, 15)
        .read_reg(0x70)
        .expect_eax(15)
}

/// An ELF component table (flexos_abi::ComponentTable, version 1) with `components`
/// and one split into `names.len()` compartments by `placement`.
pub fn component_table(components: &[&str], names: &[&str], placement: &[u8]) -> Vec<u8> {
    fn field(s: &str) -> [u8; 16] {
        let mut n = [0u8; 16];
        n[..s.len()].copy_from_slice(s.as_bytes());
        n
    }
    let count = |n: usize| u32::try_from(n).expect("a handful of components");
    let mut t = Vec::new();
    t.extend_from_slice(b"FLEXCOMP");
    for word in [1u32, count(components.len()), 1, 0] {
        t.extend_from_slice(&word.to_le_bytes());
    }
    for i in 0..32 {
        t.extend_from_slice(&field(components.get(i).copied().unwrap_or("")));
    }
    for split in 0..8 {
        let mut s = vec![0u8; 8 + 32 + 16 * 16];
        if split == 0 {
            s[..4].copy_from_slice(&count(names.len()).to_le_bytes());
            s[8..8 + placement.len()].copy_from_slice(placement);
            for (c, n) in names.iter().enumerate() {
                s[40 + 16 * c..56 + 16 * c].copy_from_slice(&field(n));
            }
        }
        t.extend_from_slice(&s);
    }
    t
}

/// Writes a one-page image running `code`, with component table `table`, into `dir`.
pub fn image(dir: &TempDir, code: Asm, table: Vec<u8>) -> PathBuf {
    let mut page = code.0;
    assert!(page.len() <= 0x1000, "crafted code is {} bytes", page.len());
    page.resize(0x1000, 0);
    ElfBuilder::new()
        .code(&page)
        .section(".flexos.components", &table)
        .write(dir, "guest.elf")
}
