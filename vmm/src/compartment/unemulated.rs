//! Instructions KVM could not emulate. An access to guest-physical memory that no slot
//! backs exits to KVM's instruction emulator; kvm-pvm's cannot do SSE, x87, AES-NI,
//! popcnt, crc32 and the like, and ends KVM_RUN with an internal error. Memory the guest
//! does not own is the only way there, so this is the guest's fault: an isolation
//! violation, reported with the instruction and, where it decodes, its address.

use kvm_bindings::{
    KVM_INTERNAL_ERROR_EMULATION, KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES,
};
use vm_memory::{Bytes, GuestAddress};

use super::Compartment;
use crate::error::VmmError;
use crate::insn;
use crate::report::CrashKind;

impl Compartment {
    /// Explains a KVM_EXIT_INTERNAL_ERROR: an emulation failure is the guest's crash;
    /// any other internal error is KVM's failure.
    pub(super) fn internal_error(&mut self) -> Result<CrashKind, VmmError> {
        let run = self.vcpu.get_kvm_run();
        // SAFETY: the exit reason is KVM_EXIT_INTERNAL_ERROR, for which KVM fills
        // `emulation_failure` (its suberror, flags and instruction bytes overlay
        // `internal`); every bit pattern of these integer fields is valid.
        let failure = unsafe { run.__bindgen_anon_1.emulation_failure };
        if failure.suberror != KVM_INTERNAL_ERROR_EMULATION {
            return Err(VmmError::KvmInternal {
                suberror: failure.suberror,
            });
        }
        let regs = self
            .vcpu
            .get_regs()
            .map_err(VmmError::kvm("KVM_GET_REGS"))?;
        let sregs = self
            .vcpu
            .get_sregs()
            .map_err(VmmError::kvm("KVM_GET_SREGS"))?;
        let given = u64::from(KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES);
        tracing::debug!(
            ndata = failure.ndata,
            flags = failure.flags,
            "emulation failure"
        );
        let mut bytes = if failure.ndata >= 3 && failure.flags & given != 0 {
            // SAFETY: the flag says KVM filled the instruction-bytes view of the union.
            let insn = unsafe { failure.__bindgen_anon_1.__bindgen_anon_1 };
            let len = usize::from(insn.insn_size).min(insn::MAX_LEN);
            insn.insn_bytes[..len].to_vec()
        } else {
            self.code_at(regs.rip)
        };
        let decoded = insn::operand_address(&bytes, &regs, sregs.fs.base, sregs.gs.base);
        let gpa = decoded.map(|(gpa, len)| {
            bytes.truncate(len);
            gpa
        });
        let owner = gpa.and_then(|gpa| self.describe_gpa(gpa));
        Ok(CrashKind::Unemulated { bytes, gpa, owner })
    }

    /// Up to one instruction's worth of bytes at `rip` (guest addresses are identity
    /// mapped), fewer where memory ends.
    fn code_at(&self, rip: u64) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(insn::MAX_LEN);
        for i in 0..insn::MAX_LEN as u64 {
            match self.mem.read_obj::<u8>(GuestAddress(rip.wrapping_add(i))) {
                Ok(b) => bytes.push(b),
                Err(_) => break,
            }
        }
        bytes
    }
}
