//! LVM's CRC-32: the reflected IEEE polynomial with the register initialised to
//! `0xf597a6cf` and no final XOR (lvm2 `lib/misc/crc.c`).

/// The initial register value lvm2 uses (`INITIAL_CRC`).
pub const INITIAL_CRC: u32 = 0xf597_a6cf;

/// LVM's checksum of `buf`.
pub fn calc(buf: &[u8]) -> u32 {
    // crc32fast keeps the register inverted: seed with the inverse and undo its final XOR.
    let mut h = crc32fast::Hasher::new_with_initial(!INITIAL_CRC);
    h.update(buf);
    !h.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        assert_eq!(calc(b"123456789"), 0x4991_cf02);
        assert_eq!(calc(b""), INITIAL_CRC);
    }
}
