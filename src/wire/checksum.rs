//! The internet checksum of RFC 1071: the one's complement of the one's complement sum of
//! the data taken as 16-bit big-endian words (a last odd byte is padded with a zero).
//!
//! Because the one's complement sum is commutative and carries wrap around, the sum can be
//! taken over wider words and folded down at the end (RFC 1071 section 2 (C), "parallel
//! summation"): `0xAABBCCDD = 0xAABB * 2^16 + 0xCCDD`, and `2^16 = 1` modulo `2^16 - 1`, so
//! summing 32-bit words and folding gives the same result as summing 16-bit words. That
//! lets the compiler keep a 64-bit accumulator and vectorise the loop.

// ANCHOR: sum
// ANCHOR: student_ch4_checksum "chapter 4: the internet checksum"
/// Adds `data` into a running 32-bit-folded one's complement sum (not yet complemented).
///
/// Use it to sum several pieces (a pseudo-header, then a payload); every piece but the
/// last must have an even length, as with any 16-bit word sum.
pub fn sum(data: &[u8]) -> u32 {
    let (words, mut rest) = data.as_chunks::<4>();
    let mut acc: u64 = 0;
    for word in words {
        acc += u64::from(u32::from_be_bytes(*word));
    }
    if let [hi, lo, tail @ ..] = rest {
        acc += u64::from(u16::from_be_bytes([*hi, *lo]));
        rest = tail;
    }
    if let [last] = rest {
        // RFC 1071: an odd byte is the high half of a word whose low half is zero.
        acc += u64::from(*last) << 8;
    }
    fold64(acc)
}
// ANCHOR_END: student_ch4_checksum

/// Folds a wide sum into 16 bits, adding the carries back in (end-around carry).
fn fold64(mut acc: u64) -> u32 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u32
}

/// Combines two partial sums from [`sum`].
pub fn combine(a: u32, b: u32) -> u32 {
    fold64(u64::from(a) + u64::from(b))
}

/// The checksum to store in a header: the complement of the folded sum.
pub fn finish(sum: u32) -> u16 {
    !(fold64(u64::from(sum)) as u16)
}

/// Computes the checksum of `data` (with its checksum field set to zero).
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(data))
}

/// Verifies data that *includes* its checksum field: the sum of everything, the checksum
/// included, is `0xffff` (all ones) when nothing was damaged.
pub fn verify(data: &[u8]) -> bool {
    fold64(u64::from(sum(data))) == 0xffff
}
// ANCHOR_END: sum

// ANCHOR: incremental
/// RFC 1624 incremental update: the new checksum after one 16-bit word of the covered data
/// changes from `old_word` to `new_word`, without summing the data again.
///
/// Equation 3 of RFC 1624: `HC' = ~(~HC + ~m + m')`. It replaces RFC 1141's form, which
/// could land on the wrong one of one's complement's two zeros (`0x0000` and `0xffff`).
/// One case remains: the result is never `0xffff`, so for data that is all zeroes after
/// the change (whose checksum is `0xffff`) it gives `0x0000`, which a receiver rejects.
/// A caller for whom that can happen sums the data again when the result is 0.
pub fn update(old_checksum: u16, old_word: u16, new_word: u16) -> u16 {
    let acc = u32::from(!old_checksum) + u32::from(!old_word) + u32::from(new_word);
    finish(acc)
}
// ANCHOR_END: incremental

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 1071 section 3, "Numerical Examples": the bytes 00 01 f2 03 f4 f5 f6 f7 sum to
    // 0xddf2 (one's complement), so the checksum is !0xddf2 = 0x220d.
    const RFC1071_EXAMPLE: [u8; 8] = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];

    /// The textbook loop: 16-bit words, one at a time. The fast version must agree.
    fn reference(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for pair in data.chunks(2) {
            let hi = u32::from(pair[0]) << 8;
            let lo = pair.get(1).map_or(0, |b| u32::from(*b));
            acc += hi | lo;
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        !(acc as u16)
    }

    #[test]
    fn rfc1071_worked_example() {
        assert_eq!(fold64(u64::from(sum(&RFC1071_EXAMPLE))), 0xddf2);
        assert_eq!(checksum(&RFC1071_EXAMPLE), 0x220d);
    }

    #[test]
    fn byte_order_independence() {
        // RFC 1071 section 2 (B): swapping the bytes of every word swaps the bytes of the sum.
        let swapped: Vec<u8> = RFC1071_EXAMPLE.chunks(2).flat_map(|w| [w[1], w[0]]).collect();
        assert_eq!(fold64(u64::from(sum(&swapped))), 0xf2dd);
    }

    #[test]
    fn matches_the_textbook_loop_for_every_length_and_alignment() {
        // Deterministic pseudo-random bytes (xorshift), long enough for the wide loop.
        let mut x: u32 = 0x1234_5678;
        let data: Vec<u8> = (0..2100)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        for start in 0..4 {
            for len in 0..200 {
                let piece = &data[start..start + len];
                assert_eq!(checksum(piece), reference(piece), "start {start} len {len}");
            }
        }
        assert_eq!(checksum(&data), reference(&data));
        let ones = vec![0xffu8; 1501];
        assert_eq!(checksum(&ones), reference(&ones));
    }

    #[test]
    fn verify_accepts_a_stored_checksum_and_rejects_damage() {
        let mut data = RFC1071_EXAMPLE.to_vec();
        data.extend_from_slice(&checksum(&RFC1071_EXAMPLE).to_be_bytes());
        assert!(verify(&data));
        data[3] ^= 0x40;
        assert!(!verify(&data));
    }

    #[test]
    fn pieces_combine_like_the_whole() {
        let (a, b) = RFC1071_EXAMPLE.split_at(4);
        assert_eq!(finish(combine(sum(a), sum(b))), checksum(&RFC1071_EXAMPLE));
    }

    #[test]
    fn incremental_update_lands_on_the_wrong_zero_for_all_zero_data() {
        // An echo request with identifier, sequence number and data all zero: its reply
        // is eight zero bytes, whose checksum is 0xffff. The update says 0x0000.
        let request = [0x08, 0x00, 0xf7, 0xff, 0, 0, 0, 0];
        assert!(verify(&request));
        assert_eq!(checksum(&[0; 8]), 0xffff);
        assert_eq!(update(0xf7ff, 0x0800, 0x0000), 0x0000);
        assert!(!verify(&[0; 8]), "0x0000 does not verify: the caller must sum again");
    }

    #[test]
    fn incremental_update_equals_recomputation() {
        // ICMP echo request -> reply changes the first word from 0x0800 to 0x0000.
        let mut msg = vec![0x08, 0x00, 0x00, 0x00, 0x1c, 0x2f, 0x00, 0x03, 0xde, 0xad, 0xbe];
        let c = checksum(&msg);
        msg[0] = 0;
        assert_eq!(update(c, 0x0800, 0x0000), checksum(&msg));
    }
}
