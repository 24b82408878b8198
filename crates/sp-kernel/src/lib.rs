//! Layer 1: typed kernel interfaces.

pub mod loopdev;
