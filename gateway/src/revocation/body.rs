//! Response bodies of the status fetches. A small body (an OCSP response, a small CRL) is a
//! `Vec`; from [`MAPPED_MIN`] bytes on (a big CRL: 24 MB for 1,000,000 entries) the body
//! lives in its own anonymous memory mapping, sized from `Content-Length` when announced,
//! and is unmapped when its last reference goes. The allocator never holds it, so the
//! memory returns to the operating system at once, whichever thread drops it (an allocator
//! keeps freed blocks of another thread's heap until that thread runs again).

use std::io;
use std::ptr::NonNull;

use bytes::Bytes;

/// Bodies from this size on get their own mapping.
pub(crate) const MAPPED_MIN: usize = 1 << 20;

/// A body being read.
#[derive(Debug)]
pub(crate) enum BodyBuf {
    /// Below [`MAPPED_MIN`].
    Small(Vec<u8>),
    /// In its own mapping.
    Mapped(Mapped),
}

impl BodyBuf {
    /// A buffer for a body of `expected` bytes (0 when unknown), already bounded by the cap.
    ///
    /// # Errors
    /// The mapping could not be made.
    pub(crate) fn new(expected: usize) -> io::Result<BodyBuf> {
        Ok(if expected >= MAPPED_MIN {
            BodyBuf::Mapped(Mapped::with_capacity(expected)?)
        } else {
            BodyBuf::Small(Vec::with_capacity(expected))
        })
    }

    /// Bytes held.
    pub(crate) fn len(&self) -> usize {
        match self {
            BodyBuf::Small(v) => v.len(),
            BodyBuf::Mapped(m) => m.len,
        }
    }

    /// Appends `data`, moving to a mapping when the body reaches [`MAPPED_MIN`].
    ///
    /// # Errors
    /// A mapping could not be made or grown.
    pub(crate) fn extend(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            BodyBuf::Small(v) if v.len() + data.len() < MAPPED_MIN => {
                v.extend_from_slice(data);
                Ok(())
            }
            BodyBuf::Small(v) => {
                let mut m = Mapped::with_capacity((v.len() + data.len()).max(2 * MAPPED_MIN))?;
                m.extend(v)?;
                m.extend(data)?;
                *self = BodyBuf::Mapped(m);
                Ok(())
            }
            BodyBuf::Mapped(m) => m.extend(data),
        }
    }

    /// The body as `Bytes` (no copy).
    pub(crate) fn into_bytes(self) -> Bytes {
        match self {
            BodyBuf::Small(v) => Bytes::from(v),
            BodyBuf::Mapped(m) => Bytes::from_owner(m),
        }
    }
}

/// Bytes in a private anonymous mapping of their own, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapped {
    ptr: NonNull<u8>,
    len: usize,
    cap: usize,
}

// SAFETY: `Mapped` owns its mapping exclusively (like a `Vec<u8>`); shared access is
// read-only through `as_ref`.
unsafe impl Send for Mapped {}
// SAFETY: as above: `&Mapped` only reads.
unsafe impl Sync for Mapped {}

impl Mapped {
    fn with_capacity(cap: usize) -> io::Result<Mapped> {
        let cap = cap.max(1);
        // SAFETY: a new private anonymous mapping; no existing memory is touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                cap,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(Mapped { ptr, len: 0, cap })
    }

    fn extend(&mut self, data: &[u8]) -> io::Result<()> {
        let need = self
            .len
            .checked_add(data.len())
            .ok_or_else(|| io::Error::other("body length overflows"))?;
        if need > self.cap {
            let new_cap = need.max(self.cap.saturating_mul(2));
            // SAFETY: `ptr`/`cap` describe our own live mapping; MREMAP_MAYMOVE returns the
            // (possibly moved) mapping with the first `len` bytes preserved.
            let p = unsafe {
                libc::mremap(
                    self.ptr.as_ptr().cast(),
                    self.cap,
                    new_cap,
                    libc::MREMAP_MAYMOVE,
                )
            };
            if p == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            self.ptr =
                NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mremap gave null"))?;
            self.cap = new_cap;
        }
        // SAFETY: `len + data.len() <= cap`, the destination is our writable mapping and
        // cannot overlap `data` (which is not in it: we hold `&mut self`).
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.ptr.as_ptr().add(self.len),
                data.len(),
            );
        }
        self.len = need;
        Ok(())
    }
}

impl AsRef<[u8]> for Mapped {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the first `len` bytes of the mapping are initialized (written by `extend`)
        // and live as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: our own mapping of `cap` bytes, unmapped once.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.cap);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_bodies_stay_in_a_vec_and_big_ones_move_to_a_mapping() {
        let mut b = BodyBuf::new(0).expect("buf");
        b.extend(b"abc").expect("extend");
        assert!(matches!(b, BodyBuf::Small(_)));
        let chunk: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        let mut expect = b"abc".to_vec();
        for _ in 0..40 {
            b.extend(&chunk).expect("extend");
            expect.extend_from_slice(&chunk);
        }
        assert!(matches!(b, BodyBuf::Mapped(_)));
        assert_eq!(b.len(), expect.len());
        let bytes = b.into_bytes();
        assert_eq!(&bytes[..], &expect[..]);
        // Slices of it outlive the original handle.
        let tail = bytes.slice(3..10);
        drop(bytes);
        assert_eq!(&tail[..], &chunk[..7]);
    }

    #[test]
    fn announced_big_body_is_mapped_and_may_be_shorter_or_longer() {
        let mut b = BodyBuf::new(MAPPED_MIN + 10).expect("buf");
        assert!(matches!(b, BodyBuf::Mapped(_)));
        b.extend(&[7u8; 100]).expect("extend");
        assert_eq!(&b.into_bytes()[..], &[7u8; 100][..]);
        let mut b = BodyBuf::new(MAPPED_MIN).expect("buf");
        b.extend(&vec![1u8; MAPPED_MIN * 3]).expect("grow");
        assert_eq!(b.len(), MAPPED_MIN * 3);
    }
}
