//! Layer 1: typed kernel interfaces.
