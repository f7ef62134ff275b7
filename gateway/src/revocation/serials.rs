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
        let kept = || {
            serials
                .iter()
                .copied()
                .filter(|s| !s.is_empty() && s.len() <= MAX_SERIAL_LEN)
        };
        let longest = kept().map(<[u8]>::len).max().unwrap_or(0);
        let mut b = SerialSet::builder(kept().count(), longest);
        kept().for_each(|s| b.push(s));
        b.finish()
    }

    /// A builder for exactly `count` serials of at most `longest` bytes: one allocation of
    /// the final size, filled in place (a CRL's entries are counted in a first pass).
    pub fn builder(count: usize, longest: usize) -> SerialSetBuilder {
        let longest = longest.min(MAX_SERIAL_LEN);
        let width = if longest == 0 { 0 } else { longest + 1 };
        SerialSetBuilder {
            width,
            data: Vec::with_capacity(count.saturating_mul(width)),
        }
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

/// Compares two entries of the same width as big-endian 8-byte words (entries are at most
/// 21 bytes: a memcmp call per comparison dominated sorting a big CRL's serials).
fn cmp_entries(a: &[u8], b: &[u8]) -> Ordering {
    let n = a.len().min(b.len());
    if n < 8 {
        return a.iter().cmp(b.iter());
    }
    let word = |s: &[u8], i: usize| {
        u64::from_be_bytes(<[u8; 8]>::try_from(&s[i..i + 8]).unwrap_or([0; 8]))
    };
    let mut i = 0;
    while i + 8 <= n {
        let (x, y) = (word(a, i), word(b, i));
        if x != y {
            return x.cmp(&y);
        }
        i += 8;
    }
    if i < n {
        // The last 8 bytes, overlapping the words already found equal.
        return word(a, n - 8).cmp(&word(b, n - 8));
    }
    Ordering::Equal
}

/// Fills a [`SerialSet`] one serial at a time ([`SerialSet::builder`]).
#[derive(Debug)]
pub struct SerialSetBuilder {
    width: usize,
    data: Vec<u8>,
}

impl SerialSetBuilder {
    /// Adds `serial`. Empty serials and serials longer than the builder's `longest` are
    /// never members and are skipped (the CRL reader refuses them before).
    pub fn push(&mut self, serial: &[u8]) {
        let w = self.width;
        if serial.is_empty() || serial.len() >= w {
            return;
        }
        let at = self.data.len();
        self.data.resize(at + w, 0);
        entry(serial, w, &mut self.data[at..at + w]);
    }

    /// Sorts (in place, unless already sorted), drops duplicates and returns the set. An
    /// unsorted list costs one transient `u32` per serial for the sort order.
    pub fn finish(self) -> SerialSet {
        let SerialSetBuilder { width, mut data } = self;
        if width == 0 || data.is_empty() {
            return SerialSet::default();
        }
        let n = data.len() / width;
        let sorted = data
            .chunks_exact(width)
            .zip(data.chunks_exact(width).skip(1))
            .all(|(a, b)| cmp_entries(a, b) == Ordering::Less);
        if !sorted {
            // Sort an index (4 bytes per serial), then apply the permutation in place
            // cycle by cycle: no second copy of the serials.
            let mut order: Vec<u32> = (0..u32::try_from(n).unwrap_or(u32::MAX)).collect();
            order.sort_unstable_by(|&a, &b| {
                let (a, b) = (a as usize * width, b as usize * width);
                cmp_entries(&data[a..a + width], &data[b..b + width])
            });
            let mut tmp = [0u8; MAX_SERIAL_LEN + 1];
            for start in 0..order.len() {
                if order[start] as usize == start {
                    continue;
                }
                // Position j receives the entry at order[j]; mark each placed position.
                tmp[..width].copy_from_slice(&data[start * width..(start + 1) * width]);
                let mut j = start;
                loop {
                    let from = order[j] as usize;
                    order[j] = j as u32;
                    if from == start {
                        data[j * width..(j + 1) * width].copy_from_slice(&tmp[..width]);
                        break;
                    }
                    data.copy_within(from * width..(from + 1) * width, j * width);
                    j = from;
                }
            }
            drop(order);
            // Drop duplicates in place.
            let mut kept = 1usize;
            for i in 1..n {
                if data[i * width..(i + 1) * width] != data[(kept - 1) * width..kept * width] {
                    if i != kept {
                        data.copy_within(i * width..(i + 1) * width, kept * width);
                    }
                    kept += 1;
                }
            }
            data.truncate(kept * width);
        }
        if data.capacity() > data.len() {
            data.shrink_to_fit();
        }
        SerialSet { width, data }
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

    #[test]
    fn unsorted_input_with_duplicates_is_sorted_in_place() {
        // A pseudo-random order with repeats, mixed widths; compared with a BTreeSet.
        let mut x = 0x1234_5678_9abc_def0u64;
        let mut serials: Vec<Vec<u8>> = Vec::new();
        for i in 0..5000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = 1 + (x % 9) as usize;
            let mut s = x.to_be_bytes()[8 - len.min(8)..].to_vec();
            if len > 8 {
                s.insert(0, 0x11);
            }
            serials.push(s.clone());
            if i % 7 == 0 {
                serials.push(s);
            }
        }
        let refs: Vec<&[u8]> = serials.iter().map(Vec::as_slice).collect();
        let set = SerialSet::build(&refs);
        let distinct: std::collections::BTreeSet<&[u8]> = refs.iter().copied().collect();
        assert_eq!(set.len(), distinct.len());
        for s in &distinct {
            assert!(set.contains(s));
        }
        assert!(!set.contains(&[0x11; 20]));
        // The builder path with an exact count gives the same set, without spare capacity.
        let mut b = SerialSet::builder(refs.len(), 9);
        refs.iter().for_each(|s| b.push(s));
        let built = b.finish();
        assert_eq!(built.data, set.data);
        assert_eq!(built.heap_bytes(), built.data.len());
    }

    #[test]
    fn builder_skips_what_can_never_match() {
        let mut b = SerialSet::builder(3, 2);
        b.push(&[]);
        b.push(&[1, 2, 3]);
        b.push(&[7]);
        let set = b.finish();
        assert_eq!(set.len(), 1);
        assert!(set.contains(&[7]));
        assert!(SerialSet::builder(0, 0).finish().is_empty());
    }

    #[test]
    fn word_compare_is_byte_order() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for width in 2..=21usize {
            for _ in 0..200 {
                let mut a = vec![0u8; width];
                let mut b = vec![0u8; width];
                for i in 0..width {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    a[i] = (x & 3) as u8;
                    b[i] = ((x >> 8) & 3) as u8;
                }
                assert_eq!(cmp_entries(&a, &b), a.cmp(&b), "{a:?} {b:?}");
                assert_eq!(cmp_entries(&a, &a), std::cmp::Ordering::Equal);
            }
        }
    }
}
