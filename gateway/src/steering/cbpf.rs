//! Classic BPF reuseport selection (`SO_ATTACH_REUSEPORT_CBPF`): needs no privileges.
//!
//! The program loads the current CPU (`SKF_AD_CPU`) and returns the index, within the
//! reuseport group, of the listener of that CPU's worker. Indices are the order in which the
//! sockets called `listen()`; a CPU without a worker returns an out-of-range index, which
//! makes the kernel use its hash.

use std::io;
use std::os::fd::RawFd;

/// `SKF_AD_OFF` (ancillary data base offset, -0x1000 as u32).
const SKF_AD_OFF: u32 = (-0x1000_i32) as u32;
/// `SKF_AD_CPU`.
const SKF_AD_CPU: u32 = 36;
const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS (0x20)
const BPF_JEQ_K: u16 = 0x05 | 0x10; // BPF_JMP | BPF_JEQ | BPF_K
const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K
/// Most listeners per group the program can map (cBPF programs have at most 4096 insns).
pub(super) const MAX_SOCKETS: usize = 2000;

/// The program for a group whose `i`-th socket (listen order) belongs to CPU `cpus[i]`.
pub(super) fn program(cpus: &[u32]) -> Vec<libc::sock_filter> {
    let insn = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let mut prog = Vec::with_capacity(cpus.len() * 2 + 2);
    prog.push(insn(
        BPF_LD_W_ABS,
        0,
        0,
        SKF_AD_OFF.wrapping_add(SKF_AD_CPU),
    ));
    for (index, &cpu) in cpus.iter().enumerate() {
        // if A == cpu: return index (next insn) else skip it.
        prog.push(insn(BPF_JEQ_K, 0, 1, cpu));
        prog.push(insn(BPF_RET_K, 0, 0, index as u32));
    }
    prog.push(insn(BPF_RET_K, 0, 0, u32::MAX));
    prog
}

/// Attaches `program(cpus)` to the reuseport group of `fd`.
///
/// # Errors
/// The `setsockopt` error (e.g. `EINVAL` when the socket has no `SO_REUSEPORT`).
pub(super) fn attach(fd: RawFd, cpus: &[u32]) -> io::Result<()> {
    if cpus.len() > MAX_SOCKETS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many sockets for a classic BPF reuseport program",
        ));
    }
    let mut prog = program(cpus);
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: `fprog` points to `prog`, which outlives the call; the kernel copies the
    // program. `fd` is an open socket of the caller's; setsockopt does not keep the pointer.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Detaches any reuseport program (classic or eBPF) from the group of `fd`.
///
/// # Errors
/// The `setsockopt` error (`ENOENT` when nothing was attached).
pub(super) fn detach(fd: RawFd) -> io::Result<()> {
    let dummy: libc::c_int = 0;
    // SAFETY: passes a readable int as optval, as SOL_SOCKET options require; the value is
    // ignored by SO_DETACH_REUSEPORT_BPF.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_DETACH_REUSEPORT_BPF,
            (&dummy as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_maps_cpus_to_listen_order() {
        let p = program(&[3, 1]);
        assert_eq!(p.len(), 6);
        assert_eq!(p[0].k, 0xFFFF_F000 + 36);
        assert_eq!((p[1].k, p[2].k), (3, 0));
        assert_eq!((p[3].k, p[4].k), (1, 1));
        assert_eq!(p[5].k, u32::MAX);
    }
}
