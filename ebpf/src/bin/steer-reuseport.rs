//! SK_REUSEPORT program: hands each new connection to the listener of the worker pinned to
//! the CPU that is processing it (`SOCKETS[smp_processor_id]`). An empty slot (no worker on
//! this CPU, or a drained worker) lets the kernel's reuseport hash choose.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::sk_action,
    helpers::bpf_get_smp_processor_id,
    macros::{map, sk_reuseport},
    maps::{PerCpuArray, ReusePortSockArray},
    programs::SkReuseportContext,
};
use gateway_common::{ReuseportCounter, MAX_CPUS, REUSEPORT_COUNTERS};

#[map(name = "SOCKETS")]
static SOCKETS: ReusePortSockArray = ReusePortSockArray::with_max_entries(MAX_CPUS, 0);
#[map(name = "REUSEPORT_COUNTERS")]
static REUSEPORT_COUNTERS_MAP: PerCpuArray<u64> =
    PerCpuArray::with_max_entries(REUSEPORT_COUNTERS, 0);

#[inline(always)]
fn count(c: ReuseportCounter) {
    if let Some(p) = REUSEPORT_COUNTERS_MAP.get_ptr_mut(c as u32) {
        // SAFETY: per-CPU slot of this CPU; the program runs with preemption disabled.
        unsafe { *p += 1 };
    }
}

#[sk_reuseport]
pub fn gateway_select_socket(ctx: SkReuseportContext) -> u32 {
    // SAFETY: helper without arguments or side effects.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    match SOCKETS.select_reuseport(&ctx, cpu) {
        Ok(()) => count(ReuseportCounter::Selected),
        Err(_) => count(ReuseportCounter::Fallback),
    }
    sk_action::SK_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
