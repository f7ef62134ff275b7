//! Kernel steering, specified by what a client and a worker can observe.
//!
//! Every test builds its own network namespaces (a server namespace and a client namespace
//! joined by a veth pair, client side with TX checksum offload off) and removes them at the
//! end; no packet leaves them. The tests need root and the eBPF programs embedded in the
//! gateway (`cargo xtask build-ebpf`): outside CI they skip with a visible message, with
//! `CI=true` they fail instead.
//!
//! The workers here are plain threads pinned to one CPU each, accepting on their own
//! SO_REUSEPORT listener: the shape of the gateway's workers.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gateway::steering::{
    self, Cidr, GroupSocket, ReuseportGroup, SocketSelection, SteeringConfig, SteeringControl,
    SteeringError, SteeringHandle, SteeringMode, XdpAttachMode,
};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

// ---------------------------------------------------------------------------------------
// Environment
use gateway_tests::{have_tool as have, is_root};

/// True when the test can run (root, the eBPF programs, ip/ethtool/setpriv); otherwise the
/// one skip policy applies (`gateway_tests::skip`: a message outside CI, a failure in CI).
fn can_run(_test: &str) -> bool {
    let mut missing = Vec::new();
    if !is_root() {
        missing.push("root".to_string());
    }
    if !steering::ebpf_programs_embedded() {
        missing.push("eBPF programs embedded in the gateway (run `cargo xtask build-ebpf`)".into());
    }
    for tool in ["ip", "ethtool", "setpriv"] {
        if !have(tool) {
            missing.push(format!("the `{tool}` command"));
        }
    }
    gateway_tests::can_run(&missing)
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

static NS_SEQ: AtomicUsize = AtomicUsize::new(0);

/// A server namespace (`vsrv`: 10.77.0.1/24, fd77::1/64) and a client namespace (`vcli`:
/// 10.77.0.2 and .3, fd77::2 and ::3) joined by a veth pair. Deleted on drop.
struct Net {
    srv: String,
    cli: String,
}

const SRV4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const GOOD4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const BAD4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 3);

fn srv6() -> IpAddr {
    "fd77::1".parse().expect("literal")
}
fn good6() -> IpAddr {
    "fd77::2".parse().expect("literal")
}

impl Net {
    fn new() -> Net {
        let n = NS_SEQ.fetch_add(1, Ordering::Relaxed);
        let base = format!("gwst{}x{n}", std::process::id());
        let net = Net {
            srv: format!("{base}s"),
            cli: format!("{base}c"),
        };
        let (s, c) = (net.srv.as_str(), net.cli.as_str());
        sh(&["ip", "netns", "add", s]);
        sh(&["ip", "netns", "add", c]);
        sh(&[
            "ip", "link", "add", "vsrv", "netns", s, "type", "veth", "peer", "name", "vcli",
            "netns", c,
        ]);
        for (ns, dev, addrs) in [
            (s, "vsrv", vec!["10.77.0.1/24", "fd77::1/64"]),
            (
                c,
                "vcli",
                vec!["10.77.0.2/24", "10.77.0.3/24", "fd77::2/64", "fd77::3/64"],
            ),
        ] {
            for a in addrs {
                sh(&["ip", "-n", ns, "addr", "add", a, "dev", dev, "nodad"]);
            }
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        // Frames redirected through a cpumap lose CHECKSUM_PARTIAL: checksum on the sender.
        sh(&[
            "ip", "netns", "exec", c, "ethtool", "-K", "vcli", "tx", "off",
        ]);
        net
    }

    /// A single namespace with only `lo` up.
    fn lo_only() -> Net {
        let n = NS_SEQ.fetch_add(1, Ordering::Relaxed);
        let name = format!("gwst{}x{n}l", std::process::id());
        sh(&["ip", "netns", "add", &name]);
        sh(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        Net {
            srv: name.clone(),
            cli: name,
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.srv])
            .status();
        if self.cli != self.srv {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.cli])
                .status();
        }
    }
}

/// Moves the calling thread into network namespace `name`; threads it spawns inherit it.
fn enter(name: &str) {
    let f = File::open(format!("/run/netns/{name}")).expect("netns file");
    // SAFETY: setns on a valid namespace fd; affects only the calling thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", io::Error::last_os_error());
}

fn allowed_cpus() -> Vec<u32> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity writes at most its size.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 = this thread, set is valid for writes of its size.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    assert_eq!(rc, 0);
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: reading a bit of an initialised set within CPU_SETSIZE.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .map(|c| c as u32)
        .collect()
}

fn pin(cpu: u32) {
    // SAFETY: as in allowed_cpus; the set is initialised before use.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: cpu < CPU_SETSIZE (it came from the affinity mask).
    unsafe { libc::CPU_SET(cpu as usize, &mut set) };
    // SAFETY: pid 0 = this thread; set is initialised.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    assert_eq!(rc, 0, "sched_setaffinity: {}", io::Error::last_os_error());
}

// ---------------------------------------------------------------------------------------
// A server of pinned workers, one SO_REUSEPORT listener each

/// One accepted connection as its worker saw it.
#[derive(Debug, Clone, Copy)]
struct Accepted {
    worker_cpu: u32,
    incoming_cpu: u32,
    peer: SocketAddr,
    local: SocketAddr,
}

type OnConn = Arc<dyn Fn(&SteeringControl, TcpStream) + Send + Sync>;

struct Server {
    handle: Option<SteeringHandle>,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
    accepted: Arc<Mutex<Vec<Accepted>>>,
    port: u16,
}

fn listener(addr: SocketAddr) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&SockAddr::from(addr))?;
    s.listen(1024)?;
    s.set_read_timeout(Some(Duration::from_millis(50)))?;
    Ok(s)
}

impl Server {
    /// Listeners on each of `addrs` (same port) for every CPU in `cpus`, created and
    /// listening in CPU order, steering attached, then one pinned worker per listener.
    fn start(
        cfg: &SteeringConfig,
        addrs: &[IpAddr],
        port: u16,
        cpus: &[u32],
        on_conn: Option<OnConn>,
    ) -> Result<Server, SteeringError> {
        let mut port = port;
        let mut sockets: Vec<Vec<(u32, Socket)>> = Vec::new();
        for ip in addrs {
            let mut group = Vec::new();
            for &cpu in cpus {
                let s = listener(SocketAddr::new(*ip, port)).expect("listener");
                if port == 0 {
                    port = s
                        .local_addr()
                        .ok()
                        .and_then(|a| a.as_socket())
                        .map(|a| a.port())
                        .expect("bound port");
                }
                group.push((cpu, s));
            }
            sockets.push(group);
        }
        let groups: Vec<ReuseportGroup<'_>> = sockets
            .iter()
            .map(|g| ReuseportGroup {
                port,
                sockets: g
                    .iter()
                    .map(|(cpu, s)| GroupSocket {
                        cpu: *cpu,
                        fd: s.as_fd(),
                    })
                    .collect(),
            })
            .collect();
        let handle = steering::attach(cfg, &groups)?;
        drop(groups);
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let mut workers = Vec::new();
        for (cpu, sock) in sockets.into_iter().flatten() {
            let stop = Arc::clone(&stop);
            let accepted = Arc::clone(&accepted);
            let control = handle.control();
            let on_conn = on_conn.clone();
            workers.push(std::thread::spawn(move || {
                pin(cpu);
                let l: std::net::TcpListener = sock.into();
                while !stop.load(Ordering::Relaxed) {
                    let (stream, peer) = match l.accept() {
                        Ok(c) => c,
                        Err(_) => continue,
                    };
                    let s2 = socket2::SockRef::from(&stream);
                    let rec = Accepted {
                        worker_cpu: cpu,
                        incoming_cpu: s2.cpu_affinity().map(|c| c as u32).unwrap_or(u32::MAX),
                        peer,
                        local: stream.local_addr().expect("local addr"),
                    };
                    accepted.lock().expect("lock").push(rec);
                    match &on_conn {
                        Some(f) => f(&control, stream),
                        None => drop(stream),
                    }
                }
            }));
        }
        Ok(Server {
            handle: Some(handle),
            stop,
            workers,
            accepted,
            port,
        })
    }

    fn control(&self) -> SteeringControl {
        self.handle.as_ref().expect("running").control()
    }

    fn accepted(&self) -> Vec<Accepted> {
        self.accepted.lock().expect("lock").clone()
    }

    fn wait_accepted(&self, n: usize) -> Vec<Accepted> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let a = self.accepted();
            if a.len() >= n || Instant::now() > deadline {
                return a;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        self.handle.take();
    }
}

/// Connects from `src` to `dst` (SYN dropped → error after `timeout`).
fn connect_from(src: IpAddr, dst: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let s = Socket::new(Domain::for_address(dst), Type::STREAM, Some(Protocol::TCP))?;
    s.bind(&SockAddr::from(SocketAddr::new(src, 0)))?;
    s.connect_timeout(&SockAddr::from(dst), timeout)?;
    Ok(s.into())
}

/// In namespace `ns`, `per_cpu` connections from `src` to `dst` from a client thread pinned
/// to each CPU; returns how many succeeded.
fn clients(ns: &str, cpus: &[u32], per_cpu: usize, src: IpAddr, dst: SocketAddr) -> usize {
    let threads: Vec<_> = cpus
        .iter()
        .map(|&cpu| {
            let ns = ns.to_string();
            std::thread::spawn(move || {
                enter(&ns);
                pin(cpu);
                (0..per_cpu)
                    .filter(|_| connect_from(src, dst, Duration::from_secs(2)).is_ok())
                    .count()
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().expect("client")).sum()
}

/// Whether one connection from `src` in `ns` to `dst` succeeds within `timeout`.
fn can_connect(ns: &str, src: IpAddr, dst: SocketAddr, timeout: Duration) -> bool {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        enter(&ns);
        connect_from(src, dst, timeout).is_ok()
    })
    .join()
    .expect("client")
}

fn xdp_config(iface: &str, attach: XdpAttachMode) -> SteeringConfig {
    SteeringConfig {
        mode: SteeringMode::Xdp,
        required: true,
        interfaces: vec![iface.to_string()],
        xdp_attach: attach,
        ..SteeringConfig::default()
    }
}

fn assert_all_local(accepted: &[Accepted], targets: &[u32]) {
    let mut local = 0;
    for a in accepted {
        assert_eq!(
            a.worker_cpu, a.incoming_cpu,
            "connection {a:?} was accepted by the worker of another CPU"
        );
        assert_eq!(
            steering::predicted_cpu(targets, a.peer, a.local),
            Some(a.worker_cpu),
            "connection {a:?} did not land on the CPU its flow hash names"
        );
        local += 1;
    }
    eprintln!(
        "locality: {local}/{} connections on their CPU's worker",
        accepted.len()
    );
}

fn xdp_attached(ns: &str, dev: &str) -> bool {
    let out = Command::new("ip")
        .args(["-n", ns, "link", "show", "dev", dev])
        .output()
        .expect("ip link show");
    String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
}

// ---------------------------------------------------------------------------------------
// Specifications

#[test]
fn xdp_in_driver_mode_on_veth_puts_every_connection_on_the_worker_of_its_cpu() {
    if !can_run("xdp_in_driver_mode_on_veth_puts_every_connection_on_the_worker_of_its_cpu") {
        return;
    }
    let net = Net::new();
    enter(&net.srv);
    let cpus = allowed_cpus();
    let cfg = xdp_config("vsrv", XdpAttachMode::Driver);
    let srv = Server::start(&cfg, &[SRV4.into(), srv6()], 8443, &cpus, None).expect("attach");
    let control = srv.control();
    assert_eq!(control.report().active, SteeringMode::Xdp);
    assert_eq!(control.report().selection, SocketSelection::Ebpf);
    assert_eq!(
        control.report().xdp_interfaces,
        vec![("vsrv".to_string(), "driver")]
    );
    assert!(xdp_attached(&net.srv, "vsrv"));

    let per_cpu = 150;
    let n = per_cpu * cpus.len();
    let v4 = clients(
        &net.cli,
        &cpus,
        per_cpu,
        GOOD4.into(),
        SocketAddr::new(SRV4.into(), srv.port),
    );
    let v6 = clients(
        &net.cli,
        &cpus,
        per_cpu,
        good6(),
        SocketAddr::new(srv6(), srv.port),
    );
    assert_eq!((v4, v6), (n, n), "every client connected");
    let accepted = srv.wait_accepted(2 * n);
    assert_eq!(accepted.len(), 2 * n);
    assert_eq!(accepted.iter().filter(|a| a.peer.is_ipv6()).count(), n);
    assert_all_local(&accepted, control.targets());
    if cpus.len() > 1 {
        for cpu in &cpus {
            assert!(
                accepted.iter().any(|a| a.worker_cpu == *cpu),
                "CPU {cpu} got no connection"
            );
        }
    }

    let c = control.counters();
    eprintln!("counters: {c:?}");
    assert!(
        c.xdp_seen >= (4 * n) as u64,
        "SYN + ACK of every connection seen"
    );
    assert!(
        c.xdp_redirected >= (4 * n) as u64,
        "steered packets redirected"
    );
    assert_eq!(c.xdp_redirect_errors, 0);
    assert_eq!(c.xdp_dropped, 0);
    assert!(c.reuseport_selected >= (2 * n) as u64);
    assert_eq!(c.reuseport_fallback, 0);

    drop(srv);
    assert!(
        !xdp_attached(&net.srv, "vsrv"),
        "XDP detached when the handle is dropped"
    );
}

#[test]
fn a_blocklisted_source_cannot_connect_while_another_can_and_removal_restores_it() {
    if !can_run("a_blocklisted_source_cannot_connect_while_another_can_and_removal_restores_it") {
        return;
    }
    let net = Net::new();
    enter(&net.srv);
    let cpus = allowed_cpus();
    let mut cfg = xdp_config("vsrv", XdpAttachMode::Auto);
    cfg.blocklist = vec!["fd77::3/128".parse().expect("cidr")];
    let srv = Server::start(&cfg, &[SRV4.into(), srv6()], 8443, &cpus, None).expect("attach");
    let control = srv.control();
    let dst4 = SocketAddr::new(SRV4.into(), srv.port);
    let dst6 = SocketAddr::new(srv6(), srv.port);
    let bad6: IpAddr = "fd77::3".parse().expect("ip");
    let short = Duration::from_millis(700);

    // Static IPv6 entry from the configuration.
    assert!(
        !can_connect(&net.cli, bad6, dst6, short),
        "static blocklist entry drops fd77::3"
    );
    assert!(can_connect(&net.cli, good6(), dst6, short));
    // Entries added at run time, IPv4.
    let block: Cidr = "10.77.0.3/32".parse().expect("cidr");
    assert!(can_connect(&net.cli, BAD4.into(), dst4, short));
    control.block(block).expect("block");
    let dropped_before = control.counters().xdp_dropped;
    assert!(
        !can_connect(&net.cli, BAD4.into(), dst4, short),
        "blocked source cannot connect"
    );
    assert!(
        can_connect(&net.cli, GOOD4.into(), dst4, short),
        "another source can"
    );
    assert!(
        control.counters().xdp_dropped > dropped_before,
        "drop counter moved"
    );
    assert!(control.is_blocked(BAD4.into()));
    assert!(!control.is_blocked(GOOD4.into()));

    control.unblock(block).expect("unblock");
    assert!(
        can_connect(&net.cli, BAD4.into(), dst4, short),
        "removal restores access"
    );
    control
        .unblock("fd77::3/128".parse().expect("cidr"))
        .expect("unblock");
    assert!(can_connect(&net.cli, bad6, dst6, short));
}

/// A minimal PKI: a trusted CA with a server and a client certificate, and an untrusted CA
/// with a client certificate.
struct Pki {
    server: Arc<rustls::ServerConfig>,
    good_client: Arc<rustls::ClientConfig>,
    untrusted_client: Arc<rustls::ClientConfig>,
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let ca = |name: &str| {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        let cert = p.self_signed(&key).expect("ca");
        (cert.der().clone(), Issuer::new(p, key))
    };
    let leaf = |issuer: &Issuer<'_, KeyPair>, san: &str| {
        let key = KeyPair::generate().expect("key");
        let p = CertificateParams::new(vec![san.to_string()]).expect("params");
        let cert = p.signed_by(&key, issuer).expect("leaf");
        (
            cert.der().clone(),
            PrivateKeyDer::from(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    };
    let (good_ca, good) = ca("steering test CA");
    let (_, bad) = ca("untrusted CA");
    let (srv_cert, srv_key) = leaf(&good, "gateway.test");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(good_ca).expect("root");
    let roots = Arc::new(roots);
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots.clone(),
        provider.clone(),
    )
    .build()
    .expect("verifier");
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![srv_cert], srv_key)
        .expect("server config");
    let client = |chain: Vec<CertificateDer<'static>>, key| {
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(roots.clone())
                .with_client_auth_cert(chain, key)
                .expect("client config"),
        )
    };
    let (gc, gk) = leaf(&good, "client.test");
    let (bc, bk) = leaf(&bad, "intruder.test");
    Pki {
        server: Arc::new(server),
        good_client: client(vec![gc], gk),
        untrusted_client: client(vec![bc], bk),
    }
}

/// The worker side of a mutual-TLS handshake; failures are reported for abuse blocking.
fn tls_on_conn(server: Arc<rustls::ServerConfig>) -> OnConn {
    Arc::new(move |control: &SteeringControl, mut tcp: TcpStream| {
        let peer = tcp.peer_addr().map(|a| a.ip());
        let _ = tcp.set_read_timeout(Some(Duration::from_secs(2)));
        let Ok(mut conn) = rustls::ServerConnection::new(server.clone()) else {
            return;
        };
        let mut ok = true;
        while conn.is_handshaking() {
            if conn.complete_io(&mut tcp).is_err() {
                ok = false;
                break;
            }
        }
        if ok {
            let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
            let _ = tls.write_all(b"ok");
            let _ = tls.flush();
        } else if let Ok(ip) = peer {
            control.record_handshake_failure(ip);
        }
        let _ = tcp.shutdown(Shutdown::Both);
    })
}

/// One mutual-TLS handshake from `src`; true when the server's "ok" arrived.
fn tls_client(
    cfg: &Arc<rustls::ClientConfig>,
    src: IpAddr,
    dst: SocketAddr,
    timeout: Duration,
) -> bool {
    let Ok(mut tcp) = connect_from(src, dst, timeout) else {
        return false;
    };
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(2)));
    let name = rustls::pki_types::ServerName::try_from("gateway.test").expect("name");
    let Ok(mut conn) = rustls::ClientConnection::new(cfg.clone(), name) else {
        return false;
    };
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    let mut buf = [0u8; 2];
    tls.read_exact(&mut buf).is_ok() && &buf == b"ok"
}

#[test]
fn a_source_presenting_an_untrusted_certificate_is_blocked_after_n_failures_until_cooldown() {
    if !can_run("a_source_presenting_an_untrusted_certificate_is_blocked_after_n_failures") {
        return;
    }
    let net = Net::new();
    enter(&net.srv);
    let cpus = allowed_cpus();
    let mut cfg = xdp_config("vsrv", XdpAttachMode::Auto);
    cfg.abuse.enabled = true;
    cfg.abuse.max_failures = 3;
    cfg.abuse.window_secs = 30;
    cfg.abuse.cooldown_secs = 2;
    let pki = pki();
    let srv = Server::start(
        &cfg,
        &[SRV4.into()],
        8443,
        &cpus,
        Some(tls_on_conn(pki.server.clone())),
    )
    .expect("attach");
    let control = srv.control();
    let dst = SocketAddr::new(SRV4.into(), srv.port);
    let short = Duration::from_millis(700);
    let (cli, good, bad) = (
        net.cli.clone(),
        pki.good_client.clone(),
        pki.untrusted_client.clone(),
    );
    let in_cli = move |cfg: Arc<rustls::ClientConfig>, src: IpAddr| {
        let cli = cli.clone();
        std::thread::spawn(move || {
            enter(&cli);
            tls_client(&cfg, src, dst, short)
        })
        .join()
        .expect("client")
    };

    assert!(
        in_cli(good.clone(), GOOD4.into()),
        "trusted client completes the handshake"
    );
    for i in 0..3 {
        assert!(
            !in_cli(bad.clone(), BAD4.into()),
            "untrusted certificate #{i} rejected"
        );
    }
    // Reported after the failed handshake: give the worker a moment.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !control.is_blocked(BAD4.into()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(control.is_blocked(BAD4.into()), "blocked after 3 failures");
    assert_eq!(control.counters().abuse_blocks, 1);
    let dropped = control.counters().xdp_dropped;
    assert!(
        !can_connect(&net.cli, BAD4.into(), dst, short),
        "SYNs of the blocked source dropped"
    );
    assert!(control.counters().xdp_dropped > dropped);
    assert!(
        in_cli(good.clone(), GOOD4.into()),
        "other sources unaffected"
    );

    let deadline = Instant::now() + Duration::from_secs(6);
    while control.is_blocked(BAD4.into()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !control.is_blocked(BAD4.into()),
        "unblocked after the cooldown"
    );
    assert!(
        can_connect(&net.cli, BAD4.into(), dst, short),
        "reachable again after the cooldown"
    );
}

#[test]
fn generic_xdp_on_lo_steers_and_blocks() {
    if !can_run("generic_xdp_on_lo_steers_and_blocks") {
        return;
    }
    let net = Net::lo_only();
    enter(&net.srv);
    let cpus = allowed_cpus();
    let cfg = xdp_config("lo", XdpAttachMode::Auto);
    let lo: IpAddr = Ipv4Addr::LOCALHOST.into();
    let srv = Server::start(&cfg, &[lo], 8443, &cpus, None).expect("attach");
    let control = srv.control();
    assert_eq!(
        control.report().xdp_interfaces,
        vec![("lo".to_string(), "generic")]
    );
    let dst = SocketAddr::new(lo, srv.port);
    let per_cpu = 100;
    assert_eq!(
        clients(&net.srv, &cpus, per_cpu, lo, dst),
        per_cpu * cpus.len()
    );
    let accepted = srv.wait_accepted(per_cpu * cpus.len());
    assert_all_local(&accepted, control.targets());
    let c = control.counters();
    assert!(
        c.xdp_redirected > 0 && c.xdp_seen > c.xdp_redirected,
        "{c:?}"
    );

    let other: IpAddr = Ipv4Addr::new(127, 0, 0, 2).into();
    control.block(Cidr::host(other)).expect("block");
    let short = Duration::from_millis(700);
    assert!(!can_connect(&net.srv, other, dst, short));
    assert!(can_connect(&net.srv, lo, dst, short));
    assert!(control.counters().xdp_dropped > 0);
}

/// Runs this test binary's `unprivileged_child` as root stripped of every capability, in
/// a namespace of its own; returns its combined output and success.
fn run_unprivileged(scenario: &str) -> (bool, String) {
    run_child(scenario, "-all")
}

/// As [`run_unprivileged`] with the bounding set `bounding` (setpriv syntax): root's
/// capabilities after exec are exactly the bounding set.
fn run_child(scenario: &str, bounding: &str) -> (bool, String) {
    let net = Net::lo_only();
    let exe = std::env::current_exe().expect("test binary");
    let exe = exe.to_string_lossy().into_owned();
    let out = Command::new("ip")
        .args(["netns", "exec", &net.srv])
        .args([
            "setpriv",
            "--inh-caps=-all",
            "--ambient-caps=-all",
            &format!("--bounding-set={bounding}"),
            "--",
            &exe,
            "--ignored",
            "--exact",
            "unprivileged_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("GW_STEERING_CHILD", scenario)
        .output()
        .expect("running the unprivileged child");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn without_capabilities_the_default_mode_falls_back_to_classic_bpf_and_serves() {
    if !can_run("without_capabilities_the_default_mode_falls_back_to_classic_bpf_and_serves") {
        return;
    }
    let (ok, out) = run_unprivileged("fallback");
    eprintln!("{out}");
    assert!(ok && out.contains("CHILD OK"), "child failed:\n{out}");
    assert_eq!(
        out.matches("WARN").count(),
        1,
        "exactly one warning:\n{out}"
    );
    assert!(
        out.contains("CAP_BPF"),
        "the warning names what was missing:\n{out}"
    );
}

#[test]
fn without_capabilities_required_steering_refuses_with_a_clear_error() {
    if !can_run("without_capabilities_required_steering_refuses_with_a_clear_error") {
        return;
    }
    let (ok, out) = run_unprivileged("required");
    eprintln!("{out}");
    assert!(ok && out.contains("CHILD OK"), "child failed:\n{out}");
}

#[test]
fn xdp_and_sk_reuseport_need_no_more_than_cap_bpf_net_admin_and_perfmon() {
    if !can_run("xdp_and_sk_reuseport_need_no_more_than_cap_bpf_net_admin_and_perfmon") {
        return;
    }
    let (ok, out) = run_child("xdp-min-caps", "-all,+bpf,+net_admin,+perfmon");
    eprintln!("{out}");
    assert!(ok && out.contains("CHILD OK"), "child failed:\n{out}");
    // CAP_BPF | CAP_NET_ADMIN | CAP_PERFMON and nothing else.
    assert!(
        out.contains("CapEff:\t000000c000001000"),
        "unexpected capabilities:\n{out}"
    );
}

/// Entry point of the capability-less child process (see `run_unprivileged`).
#[test]
#[ignore = "run by the capability tests in a child process without capabilities"]
fn unprivileged_child() {
    let Ok(scenario) = std::env::var("GW_STEERING_CHILD") else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_ansi(false)
        .try_init();
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let capeff = status
        .lines()
        .find(|l| l.starts_with("CapEff"))
        .expect("CapEff");
    eprintln!("child {capeff}");
    if scenario != "xdp-min-caps" {
        assert!(
            capeff.ends_with("0000000000000000"),
            "child still has capabilities: {capeff}"
        );
    }
    let cpus = allowed_cpus();
    let lo: IpAddr = Ipv4Addr::LOCALHOST.into();
    match scenario.as_str() {
        "fallback" => {
            let srv = Server::start(&SteeringConfig::default(), &[lo], 0, &cpus, None)
                .expect("the default mode never refuses");
            let report = srv.control().report().clone();
            assert_eq!(report.wanted, SteeringMode::Reuseport);
            assert_eq!(report.active, SteeringMode::ReuseportCbpf);
            assert_eq!(report.selection, SocketSelection::Cbpf);
            let per_cpu = 100;
            let dst = SocketAddr::new(lo, srv.port);
            let threads: Vec<_> = cpus
                .iter()
                .map(|&cpu| {
                    std::thread::spawn(move || {
                        pin(cpu);
                        (0..per_cpu)
                            .filter(|_| connect_from(lo, dst, Duration::from_secs(2)).is_ok())
                            .count()
                    })
                })
                .collect();
            let n: usize = threads.into_iter().map(|t| t.join().expect("client")).sum();
            assert_eq!(n, per_cpu * cpus.len());
            let accepted = srv.wait_accepted(n);
            assert_eq!(accepted.len(), n);
            // Classic BPF also keeps a connection on the CPU that processed it.
            for a in &accepted {
                assert_eq!(a.worker_cpu, a.incoming_cpu, "{a:?}");
            }
            println!(
                "CHILD OK: served {n} connections with {:?}",
                report.selection
            );
        }
        "required" => {
            let cfg = SteeringConfig {
                mode: SteeringMode::Reuseport,
                required: true,
                ..SteeringConfig::default()
            };
            let err = Server::start(&cfg, &[lo], 0, &cpus, None)
                .err()
                .expect("required steering must refuse without capabilities");
            let msg = err.to_string();
            println!("refused: {msg}");
            assert!(matches!(err, SteeringError::Unavailable { .. }));
            assert!(msg.contains("required") && msg.contains("CAP_BPF"), "{msg}");
            println!("CHILD OK");
        }
        "xdp-min-caps" => {
            let mut cfg = xdp_config("lo", XdpAttachMode::Generic);
            cfg.blocklist = vec!["127.0.0.2/32".parse().expect("cidr")];
            let srv = Server::start(&cfg, &[lo], 0, &cpus, None)
                .expect("XDP + SK_REUSEPORT load with CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON only");
            let dst = SocketAddr::new(lo, srv.port);
            let n = (0..50)
                .filter(|_| connect_from(lo, dst, Duration::from_secs(2)).is_ok())
                .count();
            assert_eq!(n, 50);
            assert!(connect_from(
                "127.0.0.2".parse().expect("ip"),
                dst,
                Duration::from_millis(500)
            )
            .is_err());
            let c = srv.control().counters();
            assert!(c.xdp_redirected > 0 && c.xdp_dropped > 0, "{c:?}");
            println!("CHILD OK: {c:?}");
        }
        other => panic!("unknown scenario {other}"),
    }
}

// ---------------------------------------------------------------------------------------
// Through the gateway itself

/// curl from `src` in namespace `ns` to the gateway at 10.77.0.1:`port` (as `localhost`).
fn curl_from(
    ns: &str,
    src: Ipv4Addr,
    port: u16,
    ca: &std::path::Path,
    leaf: &gateway_tests::pki::Leaf,
) -> gateway_tests::clients::Outcome {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "curl", "-sS", "-i", "--max-time", "5"])
        .args(["--connect-timeout", "1", "--interface", &src.to_string()])
        .args(["--resolve", &format!("localhost:{port}:{SRV4}")])
        .arg("--cacert")
        .arg(ca)
        .arg("--cert")
        .arg(&leaf.cert)
        .arg("--key")
        .arg(&leaf.key)
        .arg(format!("https://localhost:{port}/app"))
        .output()
        .expect("curl");
    gateway_tests::clients::Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// curl's exit code for "connection timed out": the SYN was dropped.
const CURL_TIMEOUT: i32 = 28;

#[test]
fn through_the_gateway_untrusted_certificates_get_a_source_blocked_and_xdp_detaches_on_exit() {
    if !can_run("through_the_gateway_untrusted_certificates_get_a_source_blocked")
        || !gateway_tests::require_tool("curl")
    {
        return;
    }
    use gateway_tests::pki::{LeafSpec, TestCa};
    let net = Net::new();
    enter(&net.srv);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let ca = TestCa::new("Client CA");
    let intruder_ca = TestCa::new("Intruder CA");
    let ca_file = ca.write_cert(dir, "ca.pem");
    let server_ca = TestCa::new("Server CA");
    let server = server_ca.issue(dir, "server", &LeafSpec::server());
    let server_ca_file = server_ca.write_cert(dir, "server-ca.pem");
    let alice = ca.issue(dir, "alice", &LeafSpec::client("Alice"));
    let mallory = intruder_ca.issue(dir, "mallory", &LeafSpec::client("Mallory"));
    let backend = gateway_tests::backend::EchoBackend::start();
    let port = 8443;
    let listener = gateway_tests::gw::listener_toml(
        &backend.url(),
        &server.cert,
        &server.key,
        &[ca_file.as_path()],
        "in-confidence",
        "",
    )
    .replace("127.0.0.1:0", &format!("{SRV4}:{port}"));
    let toml = format!(
        "{}{listener}\n[steering]\nmode = \"xdp\"\nrequired = true\ninterfaces = [\"vsrv\"]\n\
         [steering.abuse]\nenabled = true\nmax_failures = 3\nwindow_secs = 30\ncooldown_secs = 2\n",
        gateway_tests::gw::GLOBAL
    );
    let gw = gateway_tests::gw::TestGateway::start(dir, &toml);
    let control = gw.steering().expect("running");
    assert_eq!(control.report().active, SteeringMode::Xdp);
    assert!(xdp_attached(&net.srv, "vsrv"));

    let ok = curl_from(&net.cli, GOOD4, port, &server_ca_file, &alice);
    assert!(ok.ok_200(), "trusted client served: {ok:?}");
    for i in 0..3 {
        let out = curl_from(&net.cli, BAD4, port, &server_ca_file, &mallory);
        assert!(
            !out.ok_200() && out.code != CURL_TIMEOUT,
            "attempt {i} reached TLS and failed: {out:?}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while !control.is_blocked(BAD4.into()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        control.is_blocked(BAD4.into()),
        "blocked after 3 failed handshakes"
    );
    let out = curl_from(&net.cli, BAD4, port, &server_ca_file, &mallory);
    assert_eq!(
        out.code, CURL_TIMEOUT,
        "the blocked source's SYNs are dropped: {out:?}"
    );
    let ok = curl_from(&net.cli, GOOD4, port, &server_ca_file, &alice);
    assert!(ok.ok_200(), "others still served: {ok:?}");
    let c = control.counters();
    assert!(c.xdp_dropped > 0 && c.abuse_blocks == 1, "{c:?}");
    let m = gw.metrics();
    assert!(m.local_cpu >= 5, "{m:?}");
    assert_eq!(
        m.remote_cpu, 0,
        "every connection on the worker of its CPU: {m:?}"
    );

    let deadline = Instant::now() + Duration::from_secs(6);
    while control.is_blocked(BAD4.into()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = curl_from(&net.cli, BAD4, port, &server_ca_file, &mallory);
    assert_ne!(
        out.code, CURL_TIMEOUT,
        "reachable again after the cooldown: {out:?}"
    );

    drop(control);
    drop(gw);
    assert!(
        !xdp_attached(&net.srv, "vsrv"),
        "no XDP program left after the gateway stopped"
    );
}

// ---------------------------------------------------------------------------------------
// Benchmark (not a test): `cargo test --release -p gateway-tests --test steering
// bench_steering -- --ignored --nocapture` after `cargo build --release -p gateway-benches
// --bin loadgen`. Namespaces only; bounded in time and packet count.

/// Process CPU time (user + system) in seconds, from /proc/self/stat.
fn process_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("stat");
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the ')'.
    (ticks(11) + ticks(12)) / 100.0
}

/// TCP SYNs from `src` to `dst` through a raw socket in namespace `ns`, for at most `dur`
/// and `max` packets; returns how many were sent.
fn syn_flood(ns: &str, src: Ipv4Addr, dst: std::net::SocketAddrV4, dur: Duration, max: u64) -> u64 {
    enter(ns);
    let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::TCP)).expect("raw socket");
    sock.bind(&SockAddr::from(SocketAddr::new(src.into(), 0)))
        .expect("bind");
    let to = SockAddr::from(SocketAddr::V4(dst));
    let started = Instant::now();
    let mut sent = 0u64;
    let (s, d) = (src.octets(), dst.ip().octets());
    while sent < max && started.elapsed() < dur {
        for _ in 0..256 {
            let sport = 1024 + (sent % 60000) as u16;
            let mut tcp = [0u8; 20];
            tcp[0..2].copy_from_slice(&sport.to_be_bytes());
            tcp[2..4].copy_from_slice(&dst.port().to_be_bytes());
            tcp[4..8].copy_from_slice(&(sent as u32).to_be_bytes());
            tcp[12] = 5 << 4; // data offset 5 words
            tcp[13] = 0x02; // SYN
            tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
            let mut sum: u32 = 0;
            for pair in s.chunks(2).chain(d.chunks(2)) {
                sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
            }
            sum += 6 + 20;
            for pair in tcp.chunks(2) {
                sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
            }
            while sum > 0xFFFF {
                sum = (sum & 0xFFFF) + (sum >> 16);
            }
            tcp[16..18].copy_from_slice(&(!(sum as u16)).to_be_bytes());
            if sock.send_to(&tcp, &to).is_ok() {
                sent += 1;
            }
        }
    }
    sent
}

struct BenchFixture {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    listener: String,
    ca: std::path::PathBuf,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    _backend: gateway_tests::backend::EchoBackend,
}

fn bench_fixture(port: u16) -> BenchFixture {
    use gateway_tests::pki::{LeafSpec, TestCa};
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    let ca = TestCa::new("Client CA");
    let ca_file = ca.write_cert(&dir, "ca.pem");
    let server_ca = TestCa::new("Server CA");
    let server = server_ca.issue(&dir, "server", &LeafSpec::server());
    let server_ca_file = server_ca.write_cert(&dir, "server-ca.pem");
    let alice = ca.issue(&dir, "alice", &LeafSpec::client("Alice"));
    let backend = gateway_tests::backend::EchoBackend::start();
    let listener = gateway_tests::gw::listener_toml(
        &backend.url(),
        &server.cert,
        &server.key,
        &[ca_file.as_path()],
        "sensitive",
        "",
    )
    .replace("127.0.0.1:0", &format!("{SRV4}:{port}"));
    BenchFixture {
        _tmp: tmp,
        dir,
        listener,
        ca: server_ca_file,
        cert: alice.cert,
        key: alice.key,
        _backend: backend,
    }
}

/// Runs loadgen (handshake mode) from namespace `ns`; returns (handshakes/s, ok count).
fn loadgen(ns: &str, f: &BenchFixture, port: u16, secs: u64) -> (f64, u64) {
    let exe = std::env::current_exe().expect("exe");
    let loadgen = exe
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("loadgen"))
        .expect("target dir");
    assert!(
        loadgen.exists(),
        "build it first: cargo build --release -p gateway-benches --bin loadgen"
    );
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(&loadgen)
        .args(["--addr", &format!("{SRV4}:{port}"), "--mode", "handshake"])
        .args([
            "--connections",
            "16",
            "--seconds",
            &secs.to_string(),
            "--path",
            "/app",
        ])
        .arg("--ca")
        .arg(&f.ca)
        .arg("--cert")
        .arg(&f.cert)
        .arg("--key")
        .arg(&f.key)
        .output()
        .expect("loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "loadgen output {e}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (
        v["rate"].as_f64().unwrap_or(0.0),
        v["ok"].as_u64().unwrap_or(0),
    )
}

#[test]
#[ignore = "benchmark: run explicitly with --ignored --nocapture (release build)"]
fn bench_steering() {
    if !can_run("bench_steering") {
        return;
    }
    let port = 8443;
    let secs = 5;
    let mut lines = Vec::new();
    for mode in ["xdp", "reuseport", "reuseport-cbpf", "off"] {
        let net = Net::new();
        enter(&net.srv);
        let f = bench_fixture(port);
        let steering = match mode {
            "xdp" => "mode = \"xdp\"\nrequired = true\ninterfaces = [\"vsrv\"]\n".to_string(),
            m => format!("mode = \"{m}\"\nrequired = true\n"),
        };
        let toml = format!(
            "{}{}\n[steering]\n{steering}blocklist = [\"{BAD4}/32\"]\n",
            gateway_tests::gw::GLOBAL,
            f.listener
        );
        let gw = gateway_tests::gw::TestGateway::start(&f.dir, &toml);
        let control = gw.steering().expect("running");
        // Warm-up, then the measured run.
        let _ = loadgen(&net.cli, &f, port, 1);
        let m0 = gw.metrics();
        let cpu0 = process_cpu_secs();
        let (rate, ok) = loadgen(&net.cli, &f, port, secs);
        let cpu = process_cpu_secs() - cpu0;
        let m1 = gw.metrics();
        let per = if ok > 0 { cpu / ok as f64 * 1e6 } else { 0.0 };
        let (local, remote) = (m1.local_cpu - m0.local_cpu, m1.remote_cpu - m0.remote_cpu);
        let locality = 100.0 * local as f64 / (local + remote).max(1) as f64;
        let line = format!(
            "steering {mode:>15}: {rate:8.0} handshakes/s ({ok} in {secs} s), server CPU {per:6.0} us/handshake, \
             accepted on the worker of SO_INCOMING_CPU {locality:5.1}%; {:?}",
            control.counters()
        );
        eprintln!("{line}");
        lines.push(line);

        if mode == "xdp" {
            // A blocklisted SYN flood from 10.77.0.3 while legitimate clients (10.77.0.2)
            // keep handshaking.
            let dropped0 = control.counters().xdp_dropped;
            let cli = net.cli.clone();
            let dst = std::net::SocketAddrV4::new(SRV4, port);
            let flood = std::thread::spawn(move || {
                let t = Instant::now();
                let sent = syn_flood(&cli, BAD4, dst, Duration::from_secs(secs), 20_000_000);
                (sent, t.elapsed().as_secs_f64())
            });
            let (rate_flood, _) = loadgen(&net.cli, &f, port, secs);
            let (sent, elapsed) = flood.join().expect("flood");
            let dropped = control.counters().xdp_dropped - dropped0;
            let line = format!(
                "xdp SYN flood from a blocklisted source: sent {sent} SYNs in {elapsed:.1} s \
                 ({:.0}/s), XDP dropped {dropped} ({:.0}/s); legitimate handshakes during the \
                 flood {rate_flood:.0}/s (vs {rate:.0}/s without)",
                sent as f64 / elapsed,
                dropped as f64 / elapsed
            );
            eprintln!("{line}");
            lines.push(line);
        }
        drop(gw);
    }
    eprintln!(
        "\n=== steering benchmark ({} CPUs) ===",
        allowed_cpus().len()
    );
    for l in lines {
        eprintln!("{l}");
    }
}
