//! The lab moved into the `tapbook_lab` crate (lab/): a test file says
//! `use tapbook_lab as common;` and `use tapbook_lab::require_lab;`. This module keeps
//! `mod common;` working for test files written against the old path, until they say so.

pub use tapbook_lab::*;

/// `require_lab!` where such a file calls it, at its top level.
#[macro_export]
macro_rules! require_lab {
    ($($arg:tt)*) => {
        tapbook_lab::require_lab!($($arg)*)
    };
}
