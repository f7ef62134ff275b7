//! A minimal DER TLV walker for the raw pieces x509-parser does not keep (the signed part,
//! the signature AlgorithmIdentifier contents). Definite lengths only, bounds-checked.

/// One TLV: its tag, the whole encoding and the contents.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tlv<'a> {
    #[allow(dead_code)]
    pub tag: u8,
    pub raw: &'a [u8],
    pub value: &'a [u8],
}

/// Reads consecutive TLVs from a buffer.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn new(input: &'a [u8]) -> Self {
        Reader { rest: input }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    pub(super) fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// The next TLV, or `None` on malformed or truncated input.
    pub(super) fn next(&mut self) -> Option<Tlv<'a>> {
        let input = self.rest;
        let tag = *input.first()?;
        if tag & 0x1f == 0x1f {
            return None; // high tag numbers do not occur in X.509
        }
        let first = *input.get(1)? as usize;
        let (len, hdr) = if first < 0x80 {
            (first, 2)
        } else {
            let n = first & 0x7f;
            if n == 0 || n > 4 {
                return None;
            }
            let mut len = 0usize;
            for i in 0..n {
                len = (len << 8) | *input.get(2 + i)? as usize;
            }
            (len, 2 + n)
        };
        let end = hdr.checked_add(len)?;
        if end > input.len() {
            return None;
        }
        self.rest = &input[end..];
        Some(Tlv {
            tag,
            raw: &input[..end],
            value: &input[hdr..end],
        })
    }

    /// The next TLV if it has `tag`.
    pub(super) fn expect(&mut self, tag: u8) -> Option<Tlv<'a>> {
        if self.peek_tag() == Some(tag) {
            self.next()
        } else {
            None
        }
    }
}

/// The byte offset range of `part` inside `whole` (both from the same allocation).
pub(crate) fn range_in(whole: &[u8], part: &[u8]) -> std::ops::Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize);
    start..start + part.len()
}
