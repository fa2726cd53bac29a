//! Comparing and copying the short byte strings a request handles many times: value names
//! (`"user_id"`), small values (`1`), the cookie's name.
//!
//! `==` on slices and `copy_from_slice` call `memcmp` and `memcpy` whenever the length is not
//! known when compiling, and a call into the C library costs more than the few bytes of a name
//! (BENCHMARKS.md, "In process: fewer instructions, and why the clock does not follow"). Up to
//! 16 bytes these read at most two overlapping words of each side; longer strings go to the
//! library as before.

// `word8` and `word4` are left to the compiler's inlining: marked `#[inline]`, a request that
// reads and writes a key measured about 125 instructions more.

/// The eight bytes of `bytes` from `at`.
fn word8(bytes: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(bytes[at..at + 8].try_into().expect("eight bytes"))
}

/// The four bytes of `bytes` from `at`.
fn word4(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
}

/// `a == b`.
#[inline]
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        0 => true,
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..=7 => word4(a, 0) == word4(b, 0) && word4(a, n - 4) == word4(b, n - 4),
        8..=16 => word8(a, 0) == word8(b, 0) && word8(a, n - 8) == word8(b, n - 8),
        _ => a == b,
    }
}

/// `bytes.strip_prefix(prefix)`.
#[inline]
pub(crate) fn strip_prefix<'a>(bytes: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let (head, rest) = bytes.split_at_checked(prefix.len())?;
    same(head, prefix).then_some(rest)
}

/// `to.copy_from_slice(from)`.
///
/// # Panics
///
/// If the two lengths differ.
#[inline]
pub(crate) fn copy(to: &mut [u8], from: &[u8]) {
    let n = from.len();
    assert_eq!(to.len(), n, "copy between slices of different lengths");
    // Both words are read before either is written, so the two may overlap in `to`.
    match n {
        0 => {}
        1..=3 => {
            let (first, middle, last) = (from[0], from[n / 2], from[n - 1]);
            to[0] = first;
            to[n / 2] = middle;
            to[n - 1] = last;
        }
        4..=7 => {
            let (head, tail) = (word4(from, 0), word4(from, n - 4));
            to[..4].copy_from_slice(&head.to_ne_bytes());
            to[n - 4..].copy_from_slice(&tail.to_ne_bytes());
        }
        8..=16 => {
            let (head, tail) = (word8(from, 0), word8(from, n - 8));
            to[..8].copy_from_slice(&head.to_ne_bytes());
            to[n - 8..].copy_from_slice(&tail.to_ne_bytes());
        }
        _ => to.copy_from_slice(from),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        /// Every length up to past the word-sized cases, equal and differing at any byte.
        #[test]
        fn same_is_slice_equality(
            a in proptest::collection::vec(any::<u8>(), 0..40),
            flip in any::<usize>(),
            other_len in 0usize..40,
        ) {
            prop_assert!(super::same(&a, &a.clone()));
            let mut b = a.clone();
            if !b.is_empty() {
                let at = flip % b.len();
                b[at] ^= 1;
                prop_assert!(!super::same(&a, &b));
            }
            let c: Vec<u8> = a.iter().copied().chain(std::iter::repeat(0)).take(other_len).collect();
            prop_assert_eq!(super::same(&a, &c), a == c);
        }

        #[test]
        fn copy_is_copy_from_slice(from in proptest::collection::vec(any::<u8>(), 0..40), fill in any::<u8>()) {
            let mut to = vec![fill; from.len()];
            super::copy(&mut to, &from);
            prop_assert_eq!(to, from);
        }

        #[test]
        fn strip_prefix_is_slice_strip_prefix(
            bytes in proptest::collection::vec(0u8..3, 0..24),
            prefix in proptest::collection::vec(0u8..3, 0..12),
        ) {
            prop_assert_eq!(super::strip_prefix(&bytes, &prefix), bytes.strip_prefix(prefix.as_slice()));
        }
    }
}
