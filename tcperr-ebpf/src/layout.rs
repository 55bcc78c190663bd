//! The running kernel's offsets, set by userspace before load (`EbpfLoader::set_global`).
//! Read-only (`.rodata`): the verifier sees each value as a constant.
use tcperr_common::KernelLayout;

#[unsafe(no_mangle)]
pub(crate) static LAYOUT: KernelLayout = KernelLayout::UNSET;

/// Reads one field of [`LAYOUT`]; volatile so the compiler cannot fold the UNSET placeholder.
macro_rules! layout {
    ($field:ident) => {
        // SAFETY: LAYOUT is a valid static; the read is of a u32 field.
        unsafe { core::ptr::read_volatile(&raw const $crate::layout::LAYOUT.$field) }
    };
}
pub(crate) use layout;
