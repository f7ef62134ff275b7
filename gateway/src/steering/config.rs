//! `[steering]` configuration.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::Deserialize;

/// How connections are steered to workers. Ordered from most to least capable: a mode that is
/// unavailable falls back to the next one down (unless `required`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum SteeringMode {
    /// Kernel hash only: nothing is attached.
    Off,
    /// Classic BPF `SO_ATTACH_REUSEPORT_CBPF` returning the current CPU. Needs no privileges.
    ReuseportCbpf,
    /// eBPF SK_REUSEPORT program selecting the listener of the current CPU's worker.
    Reuseport,
    /// XDP on `interfaces` (blocklist, optional cpumap redirect by flow hash) plus `reuseport`.
    Xdp,
    /// The best available: `xdp` when `interfaces` is non-empty, else `reuseport`; falls back.
    Auto,
}

impl SteeringMode {
    /// The name used in the configuration file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::ReuseportCbpf => "reuseport-cbpf",
            Self::Reuseport => "reuseport",
            Self::Xdp => "xdp",
            Self::Auto => "auto",
        }
    }
}

impl fmt::Display for SteeringMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the XDP program is attached to an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum XdpAttachMode {
    /// Driver (native) mode, falling back to generic (SKB) mode where the driver lacks XDP.
    #[default]
    Auto,
    /// Driver mode only.
    Driver,
    /// Generic (SKB) mode: works on every interface, including `lo`, but slower.
    Generic,
}

/// Abuse blocking: sources failing `max_failures` handshakes within `window_secs` are put on
/// the blocklist for `cooldown_secs`. Off by default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AbuseConfig {
    /// Whether failed handshakes are counted at all.
    pub enabled: bool,
    /// Failures within the window that block the source (N).
    pub max_failures: u32,
    /// Length of the window in seconds (T).
    pub window_secs: u64,
    /// How long a source stays blocked, in seconds.
    pub cooldown_secs: u64,
    /// Most sources tracked at once; beyond it the oldest windows are forgotten.
    pub max_tracked: usize,
}

impl Default for AbuseConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            max_failures: 10,
            window_secs: 60,
            cooldown_secs: 300,
            max_tracked: 65_536,
        }
    }
}

/// `[steering]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SteeringConfig {
    /// Wanted steering; see [`SteeringMode`]. Default `auto`.
    pub mode: SteeringMode,
    /// Refuse to start when `mode` cannot be had, instead of falling back with a warning.
    pub required: bool,
    /// Interfaces the XDP program is attached to (mode `xdp`/`auto`).
    pub interfaces: Vec<String>,
    /// XDP attach mode.
    pub xdp_attach: XdpAttachMode,
    /// Redirect TCP to the listener ports through a cpumap to the CPU chosen by the flow hash.
    pub cpumap: bool,
    /// Per-CPU queue size of the cpumap (frames); 1..=16384.
    pub cpumap_queue_size: u32,
    /// Static blocklist: CIDRs (`203.0.113.0/24`, `2001:db8::/32`) or single addresses.
    pub blocklist: Vec<Cidr>,
    /// Abuse blocking.
    pub abuse: AbuseConfig,
}

impl Default for SteeringConfig {
    fn default() -> Self {
        Self {
            mode: SteeringMode::Auto,
            required: false,
            interfaces: Vec::new(),
            xdp_attach: XdpAttachMode::Auto,
            cpumap: true,
            cpumap_queue_size: 2048,
            blocklist: Vec::new(),
            abuse: AbuseConfig::default(),
        }
    }
}

impl SteeringConfig {
    /// Validates values; `Err((key, message))` names the key below `steering.`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |k: &str, m: &str| Err((k.to_string(), m.to_string()));
        if self.mode == SteeringMode::Xdp && self.interfaces.is_empty() {
            return err("interfaces", "mode \"xdp\" needs at least one interface");
        }
        if self.required && self.mode == SteeringMode::Auto {
            return err(
                "required",
                "name the mode that is required (\"xdp\", \"reuseport\", \"reuseport-cbpf\")",
            );
        }
        if self
            .interfaces
            .iter()
            .any(|i| i.is_empty() || i.len() >= 16 || i.contains(['\0', '/', ' ']))
        {
            return err(
                "interfaces",
                "interface names are 1 to 15 characters, without '/', NUL or spaces",
            );
        }
        if self.cpumap_queue_size == 0 || self.cpumap_queue_size > 16_384 {
            return err("cpumap_queue_size", "must be between 1 and 16384");
        }
        if self.blocklist.len() > gateway_common::MAX_BLOCKLIST_ENTRIES as usize / 2 {
            return err("blocklist", "too many entries");
        }
        let a = &self.abuse;
        if a.enabled {
            if a.max_failures == 0 {
                return err("abuse.max_failures", "must be at least 1");
            }
            if a.window_secs == 0 || a.cooldown_secs == 0 {
                return err("abuse", "window_secs and cooldown_secs must be at least 1");
            }
            if a.max_tracked == 0 {
                return err("abuse.max_tracked", "must be at least 1");
            }
        }
        Ok(())
    }

    /// The mode `auto` stands for with these settings.
    pub fn effective_mode(&self) -> SteeringMode {
        match self.mode {
            SteeringMode::Auto if self.interfaces.is_empty() => SteeringMode::Reuseport,
            SteeringMode::Auto => SteeringMode::Xdp,
            m => m,
        }
    }
}

/// An IP network: address and prefix length, host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// A blocklist entry that is not a valid CIDR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CIDR {input:?}: {reason} (expected e.g. 203.0.113.0/24 or 2001:db8::/32)")]
pub struct CidrError {
    input: String,
    reason: &'static str,
}

impl Cidr {
    /// A network; host bits of `addr` are cleared.
    ///
    /// # Errors
    /// When `prefix` exceeds 32 (IPv4) or 128 (IPv6).
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, CidrError> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(CidrError {
                input: format!("{addr}/{prefix}"),
                reason: "prefix length too long",
            });
        }
        let addr = match addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        };
        Ok(Self { addr, prefix })
    }

    /// The single-address network of `ip` (/32 or /128).
    pub fn host(ip: IpAddr) -> Self {
        let prefix = if ip.is_ipv4() { 32 } else { 128 };
        Self { addr: ip, prefix }
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` lies in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                Cidr::new(ip, self.prefix).is_ok_and(|c| c.addr == self.addr)
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason| CidrError {
            input: s.to_string(),
            reason,
        };
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| bad("not an IP address"))?;
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .map_err(|_| bad("bad prefix length"))?,
            None => Cidr::host(addr).prefix,
        };
        Cidr::new(addr, prefix).map_err(|_| bad("prefix length too long"))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl serde::Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parses_and_masks() {
        let c: Cidr = "203.0.113.77/24".parse().expect("valid");
        assert_eq!(c.to_string(), "203.0.113.0/24");
        assert!(c.contains("203.0.113.1".parse().expect("ip")));
        assert!(!c.contains("203.0.114.1".parse().expect("ip")));
        let c: Cidr = "2001:db8::1".parse().expect("valid");
        assert_eq!(c.prefix(), 128);
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense/8".parse::<Cidr>().is_err());
        let all: Cidr = "0.0.0.0/0".parse().expect("valid");
        assert!(all.contains("192.0.2.1".parse().expect("ip")));
        assert!(!all.contains("::1".parse().expect("ip")));
    }

    #[test]
    fn config_defaults_and_validation() {
        let c: SteeringConfig = toml::from_str("").expect("empty is valid");
        assert_eq!(c.mode, SteeringMode::Auto);
        assert!(!c.abuse.enabled);
        assert!(c.validate().is_ok());
        let c: SteeringConfig = toml::from_str(
            "mode = \"xdp\"\nrequired = true\ninterfaces = [\"eth0\"]\nblocklist = [\"10.0.0.0/8\"]\n[abuse]\nenabled = true\nmax_failures = 3\n",
        )
        .expect("valid");
        assert!(c.validate().is_ok());
        let c: SteeringConfig = toml::from_str("mode = \"xdp\"").expect("parses");
        assert_eq!(c.validate().map_err(|e| e.0), Err("interfaces".to_string()));
        assert!(toml::from_str::<SteeringConfig>("blocklist = [\"10.0.0.0/99\"]").is_err());
        assert!(toml::from_str::<SteeringConfig>("bogus = 1").is_err());
    }
}
