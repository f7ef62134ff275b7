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

#[inline(always)]
fn load<T: Copy>(ctx: &XdpContext, off: usize) -> Option<T> {
    // SAFETY: ptr_at checked that size_of::<T>() bytes at `off` lie inside the packet;
    // read_unaligned because packet data has no alignment guarantee.
    ptr_at::<T>(ctx, off).map(|p| unsafe { core::ptr::read_unaligned(p) })
}

/// What the parser found out about a packet.
struct Flow {
    src: [u32; 4],
    dst: [u32; 4],
    /// Offset of the TCP header, when the packet is unfragmented TCP.
    tcp: Option<usize>,
}

/// The parser's verdict.
enum Parsed {
    /// Not IP, truncated, or otherwise not ours: pass.
    Pass,
    /// The source is on a blocklist.
    Blocked,
    /// An IP packet from an allowed source.
    Flow(Flow),
}

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
    let Some(ethertype) = load::<u16>(ctx, 12) else {
        return xdp_action::XDP_PASS;
    };
    let parsed = match u16::from_be(ethertype) {
        ETH_P_IP => parse_v4(ctx),
        ETH_P_IPV6 => parse_v6(ctx),
        _ => Parsed::Pass,
    };
    match parsed {
        Parsed::Pass => xdp_action::XDP_PASS,
        Parsed::Blocked => xdp_action::XDP_DROP,
        Parsed::Flow(flow) => match flow.tcp {
            Some(tcp) => steer(ctx, &flow, tcp),
            None => xdp_action::XDP_PASS,
        },
    }
}

#[inline(always)]
fn parse_v4(ctx: &XdpContext) -> Parsed {
    let (Some(vihl), Some(frag), Some(proto), Some(src), Some(dst)) = (
        load::<u8>(ctx, ETH_HLEN),
        load::<u16>(ctx, ETH_HLEN + 6),
        load::<u8>(ctx, ETH_HLEN + 9),
        load::<[u8; 4]>(ctx, ETH_HLEN + 12),
        load::<[u8; 4]>(ctx, ETH_HLEN + 16),
    ) else {
        return Parsed::Pass;
    };
    if BLOCK_V4.get(Key::new(32, src)).is_some() {
        return Parsed::Blocked;
    }
    let ihl = ((vihl & 0x0F) as usize) * 4;
    // Only an unfragmented segment carries both ports where we look for them.
    let unfragmented = u16::from_be(frag) & 0x3FFF == 0;
    let tcp = if proto == IPPROTO_TCP && unfragmented && ihl >= 20 {
        Some(ETH_HLEN + ihl)
    } else {
        None
    };
    Parsed::Flow(Flow {
        src: gateway_common::v4_words(src),
        dst: gateway_common::v4_words(dst),
        tcp,
    })
}

#[inline(always)]
fn parse_v6(ctx: &XdpContext) -> Parsed {
    let (Some(next), Some(src), Some(dst)) = (
        load::<u8>(ctx, ETH_HLEN + 6),
        load::<[u8; 16]>(ctx, ETH_HLEN + 8),
        load::<[u8; 16]>(ctx, ETH_HLEN + 24),
    ) else {
        return Parsed::Pass;
    };
    if BLOCK_V6.get(Key::new(128, src)).is_some() {
        return Parsed::Blocked;
    }
    // Extension headers are not followed: such packets pass unsteered.
    let tcp = if next == IPPROTO_TCP {
        Some(ETH_HLEN + IPV6_HLEN)
    } else {
        None
    };
    Parsed::Flow(Flow {
        src: gateway_common::v6_words(src),
        dst: gateway_common::v6_words(dst),
        tcp,
    })
}

#[inline(always)]
fn steer(ctx: &XdpContext, flow: &Flow, tcp: usize) -> u32 {
    let Some(ports) = load::<[u16; 2]>(ctx, tcp) else {
        return xdp_action::XDP_PASS;
    };
    let sport = u16::from_be(ports[0]);
    let dport = u16::from_be(ports[1]);
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
