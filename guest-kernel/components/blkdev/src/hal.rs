//! `virtio_drivers::Hal` for an identity-mapped compartment: DMA memory comes from the
//! private heap (the data window, which the device can reach), and an address is its
//! own physical address.

use alloc::alloc::{Layout, alloc_zeroed, dealloc, handle_alloc_error};
use core::ptr::NonNull;

use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE, PhysAddr};

pub struct HeapHal;

fn pages_layout(pages: usize) -> Layout {
    match Layout::from_size_align(pages.saturating_mul(PAGE_SIZE), PAGE_SIZE) {
        Ok(layout) => layout,
        Err(_) => panic!("blkdev: a DMA allocation of {pages} pages is too large"),
    }
}

// SAFETY: dma_alloc returns zeroed, page-aligned heap memory that nothing else uses
// until dma_dealloc; memory is identity-mapped, so the address the device is given is
// the one the driver uses, and `share` needs no copy (the device reaches the data window).
unsafe impl Hal for HeapHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let layout = pages_layout(pages);
        // SAFETY: the layout has a non-zero size (virtio-drivers asks for >= 1 page).
        let ptr = unsafe { alloc_zeroed(layout) };
        match NonNull::new(ptr) {
            Some(p) => (p.as_ptr() as PhysAddr, p),
            None => handle_alloc_error(layout),
        }
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        // SAFETY: the caller passes back what dma_alloc returned for `pages` pages.
        unsafe { dealloc(vaddr.as_ptr(), pages_layout(pages)) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as *mut u8).expect("blkdev: MMIO window at address 0")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.cast::<u8>().as_ptr() as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}
