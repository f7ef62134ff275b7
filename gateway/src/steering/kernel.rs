//! Loading and attaching the eBPF programs with aya.

use std::fs;
use std::os::fd::{AsFd, BorrowedFd};

use aya::maps::lpm_trie::Key;
use aya::maps::{
    Array, CpuMap, HashMap as BpfHashMap, LpmTrie, MapData, PerCpuArray, ReusePortSockArray,
};
use aya::programs::{SkReuseport, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use gateway_common::{BlockEntry, XdpConfig, XdpCounter, MAX_CPUS};

use super::config::{Cidr, SteeringConfig, XdpAttachMode};
use super::ReuseportGroup;

static XDP_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/steer-xdp"));
static REUSEPORT_OBJ: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/steer-reuseport"));
const BUILD_STATUS: &str = include_str!(concat!(env!("OUT_DIR"), "/ebpf-status"));

/// Why the eBPF programs are not in this binary, if they are not.
pub(crate) fn missing_programs() -> Option<String> {
    if XDP_OBJ.is_empty() || REUSEPORT_OBJ.is_empty() {
        Some(format!(
            "this gateway binary was built without its eBPF programs ({}); \
             run `cargo xtask build-ebpf` and rebuild",
            BUILD_STATUS.trim()
        ))
    } else {
        None
    }
}

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Effective capabilities of this thread, from `/proc/thread-self/status`.
fn effective_caps() -> u64 {
    fs::read_to_string("/proc/thread-self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// Names of the capabilities missing for `xdp` (true) or SK_REUSEPORT (false).
pub(crate) fn missing_caps(xdp: bool) -> Vec<&'static str> {
    let caps = effective_caps();
    let has = |c: u32| caps & (1u64 << c) != 0;
    let admin = has(CAP_SYS_ADMIN);
    let mut missing = Vec::new();
    if !has(CAP_BPF) && !admin {
        missing.push("CAP_BPF");
    }
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    if xdp && !has(CAP_PERFMON) && !admin {
        missing.push("CAP_PERFMON");
    }
    missing
}

/// `step: error`, with a long verifier log cut to its head and tail.
fn err(step: impl Into<String>, e: impl std::fmt::Display) -> String {
    let msg = e.to_string();
    let chars: Vec<char> = msg.chars().collect();
    let msg = if chars.len() > 800 {
        let head: String = chars[..300].iter().collect();
        let tail: String = chars[chars.len() - 400..].iter().collect();
        format!("{head} [...] {tail}")
    } else {
        msg
    };
    format!("{}: {msg}", step.into())
}

/// The loaded XDP side: the object (owning the program and its links: dropping it detaches
/// from every interface), the blocklist tries and the counters.
pub(crate) struct XdpLoaded {
    pub(crate) ebpf: Ebpf,
    pub(crate) maps: XdpMaps,
    pub(crate) counters: PerCpuArray<MapData, u64>,
    /// `(interface, "driver" | "generic")` for every attachment.
    pub(crate) attached: Vec<(String, &'static str)>,
}

/// The blocklist tries.
pub(crate) struct XdpMaps {
    v4: LpmTrie<MapData, [u8; 4], BlockEntry>,
    v6: LpmTrie<MapData, [u8; 16], BlockEntry>,
}

impl XdpMaps {
    pub(crate) fn insert(&mut self, net: Cidr, reason: u32) -> Result<(), String> {
        let v = BlockEntry { reason };
        match net.addr() {
            std::net::IpAddr::V4(a) => {
                self.v4
                    .insert(&Key::new(u32::from(net.prefix()), a.octets()), v, 0)
            }
            std::net::IpAddr::V6(a) => {
                self.v6
                    .insert(&Key::new(u32::from(net.prefix()), a.octets()), v, 0)
            }
        }
        .map_err(|e| err(format!("adding {net} to the XDP blocklist"), e))
    }

    pub(crate) fn remove(&mut self, net: Cidr) -> Result<(), String> {
        let r = match net.addr() {
            std::net::IpAddr::V4(a) => self
                .v4
                .remove(&Key::new(u32::from(net.prefix()), a.octets())),
            std::net::IpAddr::V6(a) => self
                .v6
                .remove(&Key::new(u32::from(net.prefix()), a.octets())),
        };
        match r {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(err(format!("removing {net} from the XDP blocklist"), e)),
        }
    }

    /// The exact entry for `net`, if any.
    pub(crate) fn get(&self, net: Cidr) -> Option<BlockEntry> {
        match net.addr() {
            std::net::IpAddr::V4(a) => self
                .v4
                .get(&Key::new(u32::from(net.prefix()), a.octets()), 0)
                .ok(),
            std::net::IpAddr::V6(a) => self
                .v6
                .get(&Key::new(u32::from(net.prefix()), a.octets()), 0)
                .ok(),
        }
    }
}

fn take<T: TryFrom<aya::maps::Map>>(ebpf: &mut Ebpf, name: &str) -> Result<T, String>
where
    T::Error: std::fmt::Display,
{
    let map = ebpf
        .take_map(name)
        .ok_or_else(|| format!("map {name} missing from the eBPF object"))?;
    T::try_from(map).map_err(|e| err(format!("map {name}"), e))
}

/// Loads the XDP program, fills its maps and attaches it to `cfg.interfaces`.
pub(crate) fn load_xdp(
    cfg: &SteeringConfig,
    ports: &[u16],
    cpus: &[u32],
) -> Result<XdpLoaded, String> {
    let mut ebpf = EbpfLoader::new()
        .load(XDP_OBJ)
        .map_err(|e| err("loading the XDP object", e))?;
    // Load the program before taking maps out of the object: a taken map that is dropped
    // closes the fd the program's relocations refer to.
    load_program_xdp(&mut ebpf)?;
    let redirect = cfg.cpumap && !cpus.is_empty();
    {
        let mut targets: Array<MapData, u32> = take(&mut ebpf, gateway_common::MAP_CPU_TARGETS)?;
        for (i, cpu) in cpus.iter().enumerate() {
            targets
                .set(i as u32, cpu, 0)
                .map_err(|e| err("filling CPU_TARGETS", e))?;
        }
        let mut port_map: BpfHashMap<MapData, u16, u8> =
            take(&mut ebpf, gateway_common::MAP_PORTS)?;
        for p in ports {
            port_map
                .insert(p, 1, 0)
                .map_err(|e| err("filling PORTS", e))?;
        }
        if redirect {
            let mut cpumap: CpuMap<MapData> = take(&mut ebpf, gateway_common::MAP_CPUMAP)?;
            for &cpu in cpus {
                cpumap
                    .set(cpu, cfg.cpumap_queue_size, None, 0)
                    .map_err(|e| err(format!("adding CPU {cpu} to the cpumap"), e))?;
            }
        }
        let mut config: Array<MapData, XdpConfig> =
            take(&mut ebpf, gateway_common::MAP_XDP_CONFIG)?;
        config
            .set(
                0,
                XdpConfig {
                    redirect: u32::from(redirect),
                    n_cpus: cpus.len() as u32,
                },
                0,
            )
            .map_err(|e| err("writing XDP_CONFIG", e))?;
    }
    let mut maps = XdpMaps {
        v4: take(&mut ebpf, gateway_common::MAP_BLOCK_V4)?,
        v6: take(&mut ebpf, gateway_common::MAP_BLOCK_V6)?,
    };
    for net in &cfg.blocklist {
        maps.insert(*net, gateway_common::BLOCK_STATIC)?;
    }
    let counters = take(&mut ebpf, gateway_common::MAP_XDP_COUNTERS)?;
    let prog = xdp_program(&mut ebpf)?;
    let mut attached = Vec::new();
    for ifname in &cfg.interfaces {
        let mode = match cfg.xdp_attach {
            XdpAttachMode::Generic => None,
            XdpAttachMode::Driver | XdpAttachMode::Auto => {
                match prog.attach(ifname, XdpMode::Driver) {
                    Ok(_) => Some("driver"),
                    Err(e) if cfg.xdp_attach == XdpAttachMode::Driver => {
                        return Err(err(format!("attaching XDP to {ifname} in driver mode"), e));
                    }
                    Err(_) => None,
                }
            }
        };
        let mode = match mode {
            Some(m) => m,
            None => {
                prog.attach(ifname, XdpMode::Skb)
                    .map_err(|e| err(format!("attaching XDP to {ifname}"), e))?;
                "generic"
            }
        };
        attached.push((ifname.clone(), mode));
    }
    Ok(XdpLoaded {
        ebpf,
        maps,
        counters,
        attached,
    })
}

fn xdp_program(ebpf: &mut Ebpf) -> Result<&mut Xdp, String> {
    ebpf.program_mut(gateway_common::PROG_XDP)
        .ok_or("XDP program missing from the object")?
        .try_into()
        .map_err(|e| err("XDP program", e))
}

fn load_program_xdp(ebpf: &mut Ebpf) -> Result<(), String> {
    xdp_program(ebpf)?
        .load()
        .map_err(|e| err("loading the XDP program", e))
}

/// One reuseport group's SK_REUSEPORT program (the object keeps it loaded).
pub(crate) struct ReuseportLoaded {
    pub(crate) ebpf: Ebpf,
    pub(crate) counters: PerCpuArray<MapData, u64>,
}

/// Loads a SK_REUSEPORT program for `group`, fills its socket array (index = CPU) and
/// attaches it to the group.
pub(crate) fn load_reuseport(group: &ReuseportGroup<'_>) -> Result<ReuseportLoaded, String> {
    let mut ebpf = EbpfLoader::new()
        .load(REUSEPORT_OBJ)
        .map_err(|e| err("loading the SK_REUSEPORT object", e))?;
    // As for XDP: load before taking maps out of the object.
    reuseport_program(&mut ebpf)?
        .load()
        .map_err(|e| err("loading the SK_REUSEPORT program", e))?;
    let mut sockets: ReusePortSockArray<MapData> = take(&mut ebpf, gateway_common::MAP_SOCKETS)?;
    for s in &group.sockets {
        if s.cpu >= MAX_CPUS {
            return Err(format!("CPU {} is beyond the {MAX_CPUS} supported", s.cpu));
        }
        sockets.set(s.cpu, &s.fd.as_fd(), 0).map_err(|e| {
            err(
                format!("adding the listener of CPU {} (port {})", s.cpu, group.port),
                e,
            )
        })?;
    }
    let counters = take(&mut ebpf, gateway_common::MAP_REUSEPORT_COUNTERS)?;
    let prog = reuseport_program(&mut ebpf)?;
    let first: BorrowedFd<'_> = group
        .sockets
        .first()
        .map(|s| s.fd)
        .ok_or("empty reuseport group")?;
    prog.attach(first)
        .map_err(|e| err(format!("attaching SK_REUSEPORT to port {}", group.port), e))?;
    Ok(ReuseportLoaded { ebpf, counters })
}

fn reuseport_program(ebpf: &mut Ebpf) -> Result<&mut SkReuseport, String> {
    ebpf.program_mut(gateway_common::PROG_REUSEPORT)
        .ok_or("SK_REUSEPORT program missing from the object")?
        .try_into()
        .map_err(|e| err("SK_REUSEPORT program", e))
}

/// Sum over CPUs of per-CPU counter `index`.
pub(crate) fn sum(map: &PerCpuArray<MapData, u64>, index: u32) -> u64 {
    map.get(&index, 0)
        .map(|v| v.iter().copied().fold(0u64, u64::wrapping_add))
        .unwrap_or(0)
}

/// Sum of XDP counter `c`.
pub(crate) fn xdp_sum(map: &PerCpuArray<MapData, u64>, c: XdpCounter) -> u64 {
    sum(map, c as u32)
}
