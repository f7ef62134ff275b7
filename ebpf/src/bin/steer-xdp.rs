//! XDP program: drops packets from blocklisted sources (LPM tries, IPv4 + IPv6) and
//! redirects TCP to the gateway's listener ports to the CPU chosen by the flow hash of
//! `gateway_common::flow_hash` through a cpumap. Everything else passes untouched.
//!
//! Parsing uses constant offsets plus the IPv4 header length, every access bounds-checked
//! against `data_end`.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{lpm_trie::Key, Array, CpuMap, HashMap, LpmTrie, PerCpuArray},
    programs::XdpContext,
};
use gateway_common::{
    flow_hash, BlockEntry, XdpConfig, XdpCounter, MAX_BLOCKLIST_ENTRIES, MAX_CPUS, MAX_PORTS,
    XDP_COUNTERS,
};

#[map(name = "BLOCK_V4")]
static BLOCK_V4: LpmTrie<[u8; 4], BlockEntry> = LpmTrie::with_max_entries(MAX_BLOCKLIST_ENTRIES, 0);
#[map(name = "BLOCK_V6")]
static BLOCK_V6: LpmTrie<[u8; 16], BlockEntry> =
    LpmTrie::with_max_entries(MAX_BLOCKLIST_ENTRIES, 0);
#[map(name = "PORTS")]
static PORTS: HashMap<u16, u8> = HashMap::with_max_entries(MAX_PORTS, 0);
#[map(name = "CPUMAP")]
static CPUMAP: CpuMap = CpuMap::with_max_entries(MAX_CPUS, 0);
#[map(name = "XDP_CONFIG")]
static XDP_CONFIG: Array<XdpConfig> = Array::with_max_entries(1, 0);
#[map(name = "CPU_TARGETS")]
static CPU_TARGETS: Array<u32> = Array::with_max_entries(MAX_CPUS, 0);
#[map(name = "XDP_COUNTERS")]
static XDP_COUNTERS_MAP: PerCpuArray<u64> = PerCpuArray::with_max_entries(XDP_COUNTERS, 0);

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const IPPROTO_TCP: u8 = 6;
const IPV6_HLEN: usize = 40;

#[inline(always)]
fn count(c: XdpCounter) {
    if let Some(p) = XDP_COUNTERS_MAP.get_ptr_mut(c as u32) {
        // SAFETY: per-CPU slot of this CPU; XDP programs are not preempted on their CPU.
        unsafe { *p += 1 };
    }
}

/// Pointer to a `T` at `off` from the packet start, if the packet is long enough.
#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, off: usize) -> Option<*const T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + core::mem::size_of::<T>() > end {
        return None;
    }
    Some((start + off) as *const T)
}

/// Ethernet header (only the type is used).
#[repr(C)]
#[derive(Clone, Copy)]
struct EthHdr {
    dst: [u8; 6],
    src: [u8; 6],
    ethertype: [u8; 2],
}

/// IPv4 header without options.
#[repr(C)]
#[derive(Clone, Copy)]
struct Ipv4Hdr {
    vihl: u8,
    tos: u8,
    tot_len: [u8; 2],
    id: [u8; 2],
    frag: [u8; 2],
    ttl: u8,
    proto: u8,
    csum: [u8; 2],
    src: [u8; 4],
    dst: [u8; 4],
}

/// IPv6 fixed header.
#[repr(C)]
#[derive(Clone, Copy)]
struct Ipv6Hdr {
    vtcfl: [u8; 4],
    payload_len: [u8; 2],
    next: u8,
    hop_limit: u8,
    src: [u8; 16],
    dst: [u8; 16],
}

/// The first four bytes of a TCP header.
#[repr(C)]
#[derive(Clone, Copy)]
struct Ports {
    src: [u8; 2],
    dst: [u8; 2],
}

/// A copy of the `T` at `off`, if the packet is long enough. Every header type here has
/// alignment 1, so the read is aligned.
#[inline(always)]
fn read<T: Copy>(ctx: &XdpContext, off: usize) -> Option<T> {
    // SAFETY: ptr_at checked that size_of::<T>() bytes at `off` lie inside the packet.
    ptr_at::<T>(ctx, off).map(|p| unsafe { *p })
}

/// What the parser found out about a packet.
struct Flow {
    src: [u32; 4],
    dst: [u32; 4],
    /// Offset of the TCP header (0: not unfragmented TCP).
    tcp: usize,
}

const BLOCKED: u32 = u32::MAX;

#[xdp]
pub fn gateway_xdp(ctx: XdpContext) -> u32 {
    count(XdpCounter::Seen);
    let action = decide(&ctx);
    match action {
        xdp_action::XDP_DROP => count(XdpCounter::Dropped),
        xdp_action::XDP_REDIRECT => count(XdpCounter::Redirected),
        _ => count(XdpCounter::Passed),
    }
    action
}

#[inline(always)]
fn decide(ctx: &XdpContext) -> u32 {
    let Some(eth) = read::<EthHdr>(ctx, 0) else {
        return xdp_action::XDP_PASS;
    };
    let mut flow = Flow {
        src: [0; 4],
        dst: [0; 4],
        tcp: 0,
    };
    let verdict = match u16::from_be_bytes(eth.ethertype) {
        ETH_P_IP => parse_v4(ctx, &mut flow),
        ETH_P_IPV6 => parse_v6(ctx, &mut flow),
        _ => xdp_action::XDP_PASS,
    };
    if verdict == BLOCKED {
        return xdp_action::XDP_DROP;
    }
    if verdict != 0 || flow.tcp == 0 {
        return xdp_action::XDP_PASS;
    }
    steer(ctx, &flow)
}

/// 0 when `flow` was filled in, `BLOCKED`, or an XDP action to return.
#[inline(always)]
fn parse_v4(ctx: &XdpContext, flow: &mut Flow) -> u32 {
    let Some(ip) = read::<Ipv4Hdr>(ctx, ETH_HLEN) else {
        return xdp_action::XDP_PASS;
    };
    if BLOCK_V4.get(Key::new(32, ip.src)).is_some() {
        return BLOCKED;
    }
    let ihl = ((ip.vihl & 0x0F) as usize) * 4;
    // Only an unfragmented segment carries both ports where we look for them.
    let unfragmented = u16::from_be_bytes(ip.frag) & 0x3FFF == 0;
    flow.src = gateway_common::v4_words(ip.src);
    flow.dst = gateway_common::v4_words(ip.dst);
    if ip.proto == IPPROTO_TCP && unfragmented && ihl >= 20 {
        flow.tcp = ETH_HLEN + ihl;
    }
    0
}

/// As [`parse_v4`]. Extension headers are not followed: such packets pass unsteered.
#[inline(always)]
fn parse_v6(ctx: &XdpContext, flow: &mut Flow) -> u32 {
    let Some(ip) = read::<Ipv6Hdr>(ctx, ETH_HLEN) else {
        return xdp_action::XDP_PASS;
    };
    if BLOCK_V6.get(Key::new(128, ip.src)).is_some() {
        return BLOCKED;
    }
    flow.src = gateway_common::v6_words(ip.src);
    flow.dst = gateway_common::v6_words(ip.dst);
    if ip.next == IPPROTO_TCP {
        flow.tcp = ETH_HLEN + IPV6_HLEN;
    }
    0
}

#[inline(always)]
fn steer(ctx: &XdpContext, flow: &Flow) -> u32 {
    let Some(ports) = read::<Ports>(ctx, flow.tcp) else {
        return xdp_action::XDP_PASS;
    };
    let sport = u16::from_be_bytes(ports.src);
    let dport = u16::from_be_bytes(ports.dst);
    if PORTS.get_ptr(dport).is_none() {
        return xdp_action::XDP_PASS;
    }
    let Some(cfg) = XDP_CONFIG.get(0) else {
        return xdp_action::XDP_PASS;
    };
    if cfg.redirect == 0 || cfg.n_cpus == 0 || cfg.n_cpus > MAX_CPUS {
        return xdp_action::XDP_PASS;
    }
    let slot = flow_hash(flow.src, flow.dst, sport, dport) % cfg.n_cpus;
    let Some(cpu) = CPU_TARGETS.get(slot) else {
        return xdp_action::XDP_PASS;
    };
    match CPUMAP.redirect(*cpu, xdp_action::XDP_PASS as u64) {
        Ok(action) => action,
        Err(_) => {
            count(XdpCounter::RedirectErrors);
            xdp_action::XDP_PASS
        }
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
