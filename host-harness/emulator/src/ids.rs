//! Identifier generators shaped like Klaviyo's (notes §1 "IDs").

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Crockford base32, the ULID alphabet.
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const ALNUM: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Last (milliseconds, randomness) handed out, so ULIDs are monotonic: a profile created
/// later always sorts after an earlier one, which keeps `id` order equal to creation order.
static LAST_ULID: Mutex<(u64, u128)> = Mutex::new((0, 0));

/// A 26-character ULID (`01GDDKASAP8TKDDA2GRZDSVP4H`): 48-bit ms time + 80 random bits.
pub(crate) fn ulid() -> String {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
        & 0xFFFF_FFFF_FFFF;
    let mask: u128 = (1 << 80) - 1;
    let (ms, rand) = {
        let mut last = LAST_ULID.lock().unwrap_or_else(|e| e.into_inner());
        let next = if now_ms <= last.0 {
            (last.0, (last.1 + 1) & mask)
        } else {
            (now_ms, fastrand::u128(..) & (mask >> 1))
        };
        *last = next;
        next
    };
    let value: u128 = (u128::from(ms) << 80) | rand;
    (0..26)
        .rev()
        .map(|i| CROCKFORD[((value >> (i * 5)) & 31) as usize] as char)
        .collect()
}

/// A random alphanumeric id of `len` characters (lists and metrics use 6: `Y6nRLr`).
pub(crate) fn short_id(len: usize) -> String {
    (0..len)
        .map(|_| ALNUM[fastrand::usize(..ALNUM.len())] as char)
        .collect()
}

/// A random RFC 4122 version-4 UUID, as used for error ids and event uuids.
pub(crate) fn uuid() -> String {
    let mut v = fastrand::u128(..);
    v = (v & !(0xF << 76)) | (0x4 << 76);
    v = (v & !(0x3 << 62)) | (0x2 << 62);
    let h = format!("{v:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let a = ulid();
        let b = ulid();
        assert_eq!(a.len(), 26);
        assert!(a.bytes().all(|c| CROCKFORD.contains(&c)));
        assert!(a < b, "{a} < {b}");
        assert_eq!(short_id(6).len(), 6);
        let u = uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }
}
