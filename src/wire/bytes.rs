//! Reading and writing header fields with no way to panic.
//!
//! Every view's `new_checked` makes sure, once, that the fields its accessors touch lie
//! within the buffer. These helpers are the second line of defence: they never index out
//! of bounds, even if that promise were broken (a view made with `new_unchecked` over a
//! buffer that is too short, or a mistake in a length check). A read then yields zeroes,
//! a write does nothing and a slice comes back empty: a wrong value that the checks after
//! it reject, never a crash. On a checked view the fallbacks are never taken.
//!
//! The unit tests (which pre-fill output buffers with `0xa5`) would show a write that went
//! nowhere as a byte left at `0xa5`.

use std::ops::Range;
use std::slice::SliceIndex;

// ANCHOR: read
/// The bytes of a field as an array (`N` is the length of `range`).
pub(crate) fn read<const N: usize>(buf: &[u8], range: Range<usize>) -> [u8; N] {
    buf.get(range).and_then(|bytes| <[u8; N]>::try_from(bytes).ok()).unwrap_or([0; N])
}
// ANCHOR_END: read

/// A one-byte field.
pub(crate) fn read_u8(buf: &[u8], at: usize) -> u8 {
    buf.get(at).copied().unwrap_or(0)
}

/// A two-byte field in network byte order (big-endian).
pub(crate) fn read_u16(buf: &[u8], range: Range<usize>) -> u16 {
    u16::from_be_bytes(read(buf, range))
}

/// Writes a field whose length is that of `range`.
pub(crate) fn write<const N: usize>(buf: &mut [u8], range: Range<usize>, value: [u8; N]) {
    if let Some(field) = buf.get_mut(range).and_then(|b| <&mut [u8; N]>::try_from(b).ok()) {
        *field = value;
    }
}

pub(crate) fn write_u8(buf: &mut [u8], at: usize, value: u8) {
    if let Some(byte) = buf.get_mut(at) {
        *byte = value;
    }
}

pub(crate) fn write_u16(buf: &mut [u8], range: Range<usize>, value: u16) {
    write(buf, range, value.to_be_bytes());
}

/// A part of the buffer (a header, a payload), or nothing if the range does not fit.
pub(crate) fn slice<R: SliceIndex<[u8], Output = [u8]>>(buf: &[u8], range: R) -> &[u8] {
    buf.get(range).unwrap_or(&[])
}

pub(crate) fn slice_mut<R: SliceIndex<[u8], Output = [u8]>>(buf: &mut [u8], range: R) -> &mut [u8] {
    buf.get_mut(range).unwrap_or(&mut [])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_within_the_buffer() {
        let mut buf = [0xa5u8; 6];
        write_u16(&mut buf, 1..3, 0x0800);
        write_u8(&mut buf, 5, 7);
        assert_eq!(buf, [0xa5, 0x08, 0x00, 0xa5, 0xa5, 7]);
        assert_eq!(read_u16(&buf, 1..3), 0x0800);
        assert_eq!(read::<3>(&buf, 3..6), [0xa5, 0xa5, 7]);
        assert_eq!(slice(&buf, 4..), [0xa5, 7]);
    }

    #[test]
    fn out_of_bounds_is_harmless() {
        let mut buf = [0xa5u8; 4];
        assert_eq!(read_u16(&buf, 3..5), 0);
        assert_eq!(read_u8(&buf, 4), 0);
        assert_eq!(read::<4>(&buf, 1..3), [0; 4], "a range of the wrong length reads zeroes");
        #[allow(clippy::reversed_empty_ranges)]
        let backwards = 3..1;
        assert!(slice(&buf, backwards).is_empty());
        assert!(slice(&buf, 5..).is_empty());
        write_u16(&mut buf, 3..5, 0xffff);
        write(&mut buf, 0..3, [1, 2]);
        write_u8(&mut buf, 9, 0);
        assert!(slice_mut(&mut buf, ..9).is_empty());
        assert_eq!(buf, [0xa5; 4], "nothing was written");
    }
}
