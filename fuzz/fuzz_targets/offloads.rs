//! libFuzzer target (chapter 9): the virtio-net header parser and the superframe cutter,
//! on any bytes. Run it with `cargo +nightly fuzz run offloads` from the top of the repo
//! (needs `cargo install cargo-fuzz --locked`).
//!
//! The first 12 input bytes are the header, the rest the frame. A finding is a panic
//! anywhere, or a frame that comes out of `segment` longer than the MTU allows for its
//! segment size, or a superframe cut into frames whose checksums do not verify.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tapbook::segment;
use tapbook::wire::virtio_net::{GsoType, VirtioNetHeader, VirtioNetRepr};

fuzz_target!(|data: &[u8]| {
    let Some((header, frame)) = data.split_at_checked(12) else { return };
    let Ok(view) = VirtioNetHeader::new_checked(header) else { return };
    let vnet = VirtioNetRepr::parse(&view);
    let mut scratch = Vec::new();
    let mut frames = 0;
    let result = segment::segment(&vnet, frame, &mut scratch, |wire| {
        frames += 1;
        if vnet.gso() != GsoType::None {
            // Each segment holds its headers and at most gso_size bytes of payload.
            let layout = segment::layout(wire).expect("a segment we cut parses again");
            assert!(layout.end - layout.payload <= usize::from(vnet.gso_size));
            assert!(segment::l4_checksum_ok(wire), "a segment with a wrong checksum");
        }
    });
    if let Ok(n) = result {
        assert_eq!(n, frames, "the count returned is the count emitted");
    }
});
