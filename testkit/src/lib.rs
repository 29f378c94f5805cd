//! What tapbook's tests, benchmarks and fuzz targets share.
//!
//! - [`fixtures`]: the frames captured from the kernel, `tests/fixtures/*.hex`
//!   (`tests/fixtures/README.md` says how each was captured).
//! - [`oracle`]: an independent judge of replies, written again from the RFCs on raw
//!   bytes, sharing no code with `tapbook::wire` or `tapbook::respond`.

pub mod fixtures;
pub mod oracle;
