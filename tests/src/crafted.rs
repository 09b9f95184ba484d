//! Hostile post-quantum recipients: an `age1pq1…` string whose key bytes were changed
//! under a valid Bech32 checksum, as an attacker (or a tool that kept the checksum) would
//! hand one to `kseal seal`.

use bech32::{Checksum, Hrp};

/// Bech32's checksum without its 1023-character bound (an `age1pq1…` is ~1960).
enum LongBech32 {}

impl Checksum for LongBech32 {
    type MidstateRepr = u32;
    const CODE_LENGTH: usize = usize::MAX;
    const CHECKSUM_LENGTH: usize = 6;
    const GENERATOR_SH: [u32; 5] = [
        0x3b6a_57b2,
        0x2650_8e6d,
        0x1ea1_19fa,
        0x3d42_33dd,
        0x2a14_62b3,
    ];
    const TARGET_RESIDUE: u32 = 1;
}

/// `recipient` (a valid `age1pq1…`) with its 1216 key bytes changed by `edit`.
pub fn pq_recipient(recipient: &str, edit: impl FnOnce(&mut [u8])) -> String {
    let checked = bech32::primitives::decode::CheckedHrpstring::new::<LongBech32>(recipient)
        .expect("a valid age1pq1 recipient");
    let mut key: Vec<u8> = checked.byte_iter().collect();
    edit(&mut key);
    let hrp = Hrp::parse("age1pq").expect("a valid HRP");
    bech32::encode_lower::<LongBech32>(hrp, &key).expect("encodes")
}

/// Sets ML-KEM coefficient 0 (byte 0 and the low nibble of byte 1) to `value` (< 4096).
pub fn set_first_coefficient(key: &mut [u8], value: u16) {
    key[0] = (value & 0xff) as u8;
    key[1] = (key[1] & 0xf0) | (value >> 8) as u8;
}
