//! Hostile post-quantum recipients: an `age1pq1…` string whose key bytes were changed
//! under a valid Bech32 checksum, as an attacker (or a tool that kept the checksum) would
//! hand one to `kseal seal`.

use bech32::Hrp;
use kseal_core::pq::LongBech32;

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
