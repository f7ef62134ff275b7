//! A compact, immutable set of certificate serial numbers: one flat byte array of
//! fixed-width entries, sorted, searched by bisection. No heap node per entry: a
//! 1,000,000-entry CRL of 20-byte serials takes 21 MB.
//!
//! Serials are the INTEGER contents as encoded (DER is minimal, so equal integers have equal
//! encodings, and the sign is part of them: -128 is `80`, 128 is `00 80`). Each entry is the
//! length byte followed by the zero-padded bytes, so padding never makes two serials equal.

use std::cmp::Ordering;

/// The longest serial accepted (RFC 5280 4.1.2.2: at most 20 octets).
pub const MAX_SERIAL_LEN: usize = 20;

/// A sorted set of serials.
#[derive(Debug, Clone, Default)]
pub struct SerialSet {
    width: usize,
    data: Vec<u8>,
}

fn entry(serial: &[u8], width: usize, out: &mut [u8]) {
    out[0] = u8::try_from(serial.len()).unwrap_or(u8::MAX);
    out[1..].fill(0);
    out[width - serial.len()..].copy_from_slice(serial);
}

impl SerialSet {
    /// Builds the set from serials of at most [`MAX_SERIAL_LEN`] bytes (longer ones are
    /// never members; duplicates allowed).
    pub fn build(serials: &[&[u8]]) -> SerialSet {
        let longest = serials
            .iter()
            .map(|s| s.len())
            .filter(|&l| l <= MAX_SERIAL_LEN)
            .max()
            .unwrap_or(0);
        if longest == 0 {
            return SerialSet::default();
        }
        let width = longest + 1;
        let kept: Vec<&[u8]> = serials
            .iter()
            .copied()
            .filter(|s| !s.is_empty() && s.len() <= MAX_SERIAL_LEN)
            .collect();
        let mut data = vec![0u8; kept.len() * width];
        for (chunk, s) in data.chunks_exact_mut(width).zip(&kept) {
            entry(s, width, chunk);
        }
        let sorted = data
            .chunks_exact(width)
            .zip(data.chunks_exact(width).skip(1))
            .all(|(a, b)| a < b);
        if !sorted {
            let mut idx: Vec<u32> = (0..kept.len() as u32).collect();
            idx.sort_unstable_by(|&a, &b| {
                let (a, b) = (a as usize * width, b as usize * width);
                data[a..a + width].cmp(&data[b..b + width])
            });
            let mut out = Vec::with_capacity(data.len());
            let mut last: Option<&[u8]> = None;
            for i in idx {
                let s = &data[i as usize * width..(i as usize + 1) * width];
                if last != Some(s) {
                    out.extend_from_slice(s);
                    last = Some(s);
                }
            }
            data = out;
        }
        data.shrink_to_fit();
        SerialSet { width, data }
    }

    /// Number of serials.
    pub fn len(&self) -> usize {
        self.data.len().checked_div(self.width).unwrap_or(0)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Bytes held on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.data.capacity()
    }

    /// Whether `serial` (INTEGER contents as encoded) is in the set.
    pub fn contains(&self, serial: &[u8]) -> bool {
        let w = self.width;
        if w == 0 || serial.is_empty() || serial.len() >= w {
            return false;
        }
        let mut probe = [0u8; MAX_SERIAL_LEN + 1];
        entry(serial, w, &mut probe[..w]);
        let probe = &probe[..w];
        let (mut lo, mut hi) = (0usize, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.data[mid * w..(mid + 1) * w].cmp(probe) {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => return true,
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_with_mixed_widths() {
        let s: Vec<&[u8]> = vec![&[5], &[1, 0], &[0x7f, 1, 2], &[3], &[5]];
        let set = SerialSet::build(&s);
        assert_eq!(set.len(), 4);
        for x in &s {
            assert!(set.contains(x));
        }
        assert!(!set.contains(&[4]));
        assert!(!set.contains(&[1, 2, 3, 4]));
        assert!(!set.contains(&[0x7f, 1]));
        assert!(!SerialSet::build(&[]).contains(&[1]));
    }

    #[test]
    fn sign_is_part_of_the_serial() {
        // -128 (80) and 128 (00 80) are different certificates.
        let set = SerialSet::build(&[&[0x80]]);
        assert!(set.contains(&[0x80]));
        assert!(!set.contains(&[0x00, 0x80]));
        let set = SerialSet::build(&[&[0x00, 0x80]]);
        assert!(!set.contains(&[0x80]));
    }
}
