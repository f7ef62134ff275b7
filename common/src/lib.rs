//! Types shared by the gateway's eBPF programs (`ebpf/`) and its userspace loader.
//!
//! Only `#[repr(C)]` map keys and values, map names, limits and the flow hash (so userspace
//! can predict which CPU the XDP program steers a connection to) live here; this crate is
//! `#![no_std]` so the eBPF side can use it.
#![no_std]

/// Maximum number of worker CPUs the steering maps are sized for (cpumap, socket array).
pub const MAX_CPUS: u32 = 256;
/// Maximum number of gateway listener ports the XDP program steers.
pub const MAX_PORTS: u32 = 64;
/// Maximum number of entries in each blocklist (IPv4, IPv6).
pub const MAX_BLOCKLIST_ENTRIES: u32 = 65_536;

/// Name of the XDP program in the `steer-xdp` object.
pub const PROG_XDP: &str = "gateway_xdp";
/// Name of the SK_REUSEPORT program in the `steer-reuseport` object.
pub const PROG_REUSEPORT: &str = "gateway_select_socket";

/// LPM trie of blocked IPv4 sources: key `Key<[u8; 4]>` (network order), value [`BlockEntry`].
pub const MAP_BLOCK_V4: &str = "BLOCK_V4";
/// LPM trie of blocked IPv6 sources: key `Key<[u8; 16]>`, value [`BlockEntry`].
pub const MAP_BLOCK_V6: &str = "BLOCK_V6";
/// Hash map of steered TCP destination ports (host order `u16`) to `u8` (1 = steered).
pub const MAP_PORTS: &str = "PORTS";
/// CPU map the XDP program redirects into, indexed by CPU id.
pub const MAP_CPUMAP: &str = "CPUMAP";
/// Array of [`XdpConfig`] (one entry) written by userspace.
pub const MAP_XDP_CONFIG: &str = "XDP_CONFIG";
/// Array of target CPU ids (`u32`); the first [`XdpConfig::n_cpus`] entries are used.
pub const MAP_CPU_TARGETS: &str = "CPU_TARGETS";
/// Per-CPU array of `u64` XDP counters, indexed by [`XdpCounter`].
pub const MAP_XDP_COUNTERS: &str = "XDP_COUNTERS";
/// REUSEPORT_SOCKARRAY indexed by CPU id: the listener of the worker pinned to that CPU.
pub const MAP_SOCKETS: &str = "SOCKETS";
/// Per-CPU array of `u64` socket-selection counters, indexed by [`ReuseportCounter`].
pub const MAP_REUSEPORT_COUNTERS: &str = "REUSEPORT_COUNTERS";

/// Indices of [`MAP_XDP_COUNTERS`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpCounter {
    /// Every packet the program saw.
    Seen = 0,
    /// Packets passed to the stack unchanged (not dropped, not redirected).
    Passed = 1,
    /// Packets dropped because the source is on a blocklist.
    Dropped = 2,
    /// Packets redirected to another CPU through the cpumap.
    Redirected = 3,
    /// Redirects the helper refused (no cpumap entry); those packets were passed.
    RedirectErrors = 4,
}

/// Number of XDP counters.
pub const XDP_COUNTERS: u32 = 5;

/// Indices of [`MAP_REUSEPORT_COUNTERS`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReuseportCounter {
    /// Connections handed to the listener of the current CPU's worker.
    Selected = 0,
    /// No listener for the current CPU: the kernel's hash chose.
    Fallback = 1,
}

/// Number of socket-selection counters.
pub const REUSEPORT_COUNTERS: u32 = 2;

/// Value of the blocklist tries.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct BlockEntry {
    /// Why the entry exists: [`BLOCK_STATIC`] or [`BLOCK_ABUSE`].
    pub reason: u32,
}

/// A blocklist entry from the configuration.
pub const BLOCK_STATIC: u32 = 1;
/// A blocklist entry added by abuse blocking (removed after its cooldown).
pub const BLOCK_ABUSE: u32 = 2;

/// The XDP program's settings (entry 0 of [`MAP_XDP_CONFIG`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct XdpConfig {
    /// 1 when TCP to a steered port is redirected through the cpumap.
    pub redirect: u32,
    /// Number of valid entries in [`MAP_CPU_TARGETS`] (0 disables redirection).
    pub n_cpus: u32,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] integers without padding; every bit pattern is valid.
    unsafe impl aya::Pod for super::BlockEntry {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::XdpConfig {}
}

const HASH_MUL: u32 = 0x9E37_79B1;

#[inline(always)]
const fn mix(h: u32, w: u32) -> u32 {
    let h = (h ^ w).wrapping_mul(HASH_MUL);
    h ^ (h >> 16)
}

/// Flow hash of a TCP connection, symmetric in nothing: `(src, dst, sport, dport)` as seen
/// on the wire (addresses as the 4 or 16 bytes in network order, ports in host order).
/// IPv4 addresses are hashed as their single 32-bit word (`words[0]`, the rest zero).
///
/// The XDP program uses it to choose the CPU (`targets[hash % n]`); userspace uses it to
/// predict that CPU in tests.
#[inline(always)]
pub const fn flow_hash(src: [u32; 4], dst: [u32; 4], sport: u16, dport: u16) -> u32 {
    let mut h = 0x5EED_u32;
    h = mix(h, src[0]);
    h = mix(h, src[1]);
    h = mix(h, src[2]);
    h = mix(h, src[3]);
    h = mix(h, dst[0]);
    h = mix(h, dst[1]);
    h = mix(h, dst[2]);
    h = mix(h, dst[3]);
    mix(h, ((sport as u32) << 16) | dport as u32)
}

/// Address words for [`flow_hash`] from the bytes of an IPv4 address (network order).
#[inline(always)]
pub const fn v4_words(octets: [u8; 4]) -> [u32; 4] {
    [u32::from_ne_bytes(octets), 0, 0, 0]
}

/// Address words for [`flow_hash`] from the bytes of an IPv6 address (network order).
#[inline(always)]
pub const fn v6_words(o: [u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([o[0], o[1], o[2], o[3]]),
        u32::from_ne_bytes([o[4], o[5], o[6], o[7]]),
        u32::from_ne_bytes([o[8], o[9], o[10], o[11]]),
        u32::from_ne_bytes([o[12], o[13], o[14], o[15]]),
    ]
}
