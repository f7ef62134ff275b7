//! Types shared by the gateway's eBPF programs (`ebpf/`) and its userspace loader.
//!
//! Only `#[repr(C)]` map keys and values, map names and limits live here; this crate is
//! `#![no_std]` so the eBPF side can use it.
#![no_std]

/// Maximum number of worker CPUs the steering maps are sized for.
pub const MAX_CPUS: u32 = 256;
