//! Resource ids for what lives inside one patient's record. An entry's or a
//! document's own id is unique only within its patient, so its FHIR id is the
//! patient's 32 hex digits followed by the item's 32 (64 characters, FHIR's
//! longest id): a read by id names both, and the domain is asked for exactly
//! that patient's item.

use keyhold_domain::PatientId;

const HEX: &[u8; 16] = b"0123456789abcdef";

fn push_hex(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// `patient ‖ item` as 64 lower-case hex digits.
pub fn resource_id(patient: PatientId, item: &[u8; 16]) -> String {
    let mut s = String::with_capacity(64);
    push_hex(&mut s, patient.as_bytes());
    push_hex(&mut s, item);
    s
}

/// The patient and the item an id names; `None` for anything but exactly 64
/// lower-case hex digits.
pub fn parse_resource_id(id: &str) -> Option<(PatientId, [u8; 16])> {
    let b = id.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        bytes[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    let patient = PatientId::from_bytes(&bytes[..16])?;
    let mut item = [0u8; 16];
    item.copy_from_slice(&bytes[16..]);
    Some((patient, item))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use keyhold_domain::EntryId;

    #[test]
    fn ids_round_trip_and_nothing_else_parses() {
        let p = PatientId::new_random();
        let e = EntryId::new_random();
        let id = resource_id(p, e.as_bytes());
        assert_eq!(id.len(), 64);
        assert_eq!(id, format!("{}{}", p.uuid().simple(), e.uuid().simple()));
        let (p2, item) = parse_resource_id(&id).unwrap();
        assert_eq!(p2, p);
        assert_eq!(EntryId::from_bytes(&item), Some(e));
        for bad in [
            "".to_string(),
            id[..63].to_string(),
            format!("{id}0"),
            id.to_uppercase(),
            format!("{}g", &id[..63]),
            p.to_string(),
            "../../etc/passwd".into(),
            "é".repeat(32),
        ] {
            assert!(parse_resource_id(&bad).is_none(), "{bad}");
        }
    }
}
