//! Netlink attributes (`struct nlattr`): building nested attributes into a
//! request and walking them, bounds-checked, out of a reply.

/// The flag the kernel sets (and wants) on nested attributes.
pub const NLA_F_NESTED: u16 = 1 << 15;
const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | (1 << 14));
const NLA_HDRLEN: usize = 4;

/// Rounds up to netlink's 4-byte alignment.
pub const fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// Appends one attribute (header, payload, padding) to `buf`.
pub fn push(buf: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = NLA_HDRLEN + payload.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(align(buf.len()), 0);
}

/// Appends a nested attribute whose payload `fill` writes.
pub fn push_nested(buf: &mut Vec<u8>, kind: u16, fill: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    fill(&mut inner);
    push(buf, kind | NLA_F_NESTED, &inner);
}

/// A NUL-terminated copy of `s`, as string attributes carry it.
pub fn c_string(s: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(s.len() + 1);
    v.extend_from_slice(s.as_bytes());
    v.push(0);
    v
}

/// The attributes in `buf`: (type without the nested/byte-order flags, payload).
/// A truncated or malformed attribute ends the walk; nothing is read past `buf`.
pub fn iter(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        let header = rest.get(..NLA_HDRLEN)?;
        let len = usize::from(u16::from_ne_bytes([header[0], header[1]]));
        let kind = u16::from_ne_bytes([header[2], header[3]]) & NLA_TYPE_MASK;
        let payload = rest.get(NLA_HDRLEN..len)?;
        rest = rest.get(align(len)..).unwrap_or(&[]);
        Some((kind, payload))
    })
}

/// The payload of the first attribute of type `kind`.
pub fn find(buf: &[u8], kind: u16) -> Option<&[u8]> {
    iter(buf).find(|(k, _)| *k == kind).map(|(_, p)| p)
}

/// A `u32`/`i32` payload, if it has the size of one.
pub fn u32_of(payload: &[u8]) -> Option<u32> {
    payload.get(..4).and_then(|b| b.try_into().ok()).map(u32::from_ne_bytes)
}

/// A string payload without its terminating NUL.
pub fn str_of(payload: &[u8]) -> Option<&str> {
    let end = payload.iter().position(|&b| b == 0).unwrap_or(payload.len());
    std::str::from_utf8(&payload[..end]).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip_with_padding_and_nesting() {
        let mut buf = Vec::new();
        push(&mut buf, 3, &c_string("pm-cp"));
        push_nested(&mut buf, 18, |info| push(info, 1, &c_string("veth")));
        push(&mut buf, 37, &7u32.to_ne_bytes());
        assert_eq!(buf.len() % 4, 0);
        let all: Vec<u16> = iter(&buf).map(|(k, _)| k).collect();
        assert_eq!(all, vec![3, 18, 37], "the nested flag is masked off");
        assert_eq!(str_of(find(&buf, 3).unwrap()), Some("pm-cp"));
        assert_eq!(str_of(find(find(&buf, 18).unwrap(), 1).unwrap()), Some("veth"));
        assert_eq!(u32_of(find(&buf, 37).unwrap()), Some(7));
    }

    #[test]
    fn malformed_attributes_end_the_walk_without_reading_past_the_buffer() {
        // Length 200 in a 12-byte buffer, length 2 (< header), and an empty buffer.
        let mut buf = vec![200, 0, 1, 0];
        buf.extend_from_slice(&[0u8; 8]);
        assert_eq!(iter(&buf).count(), 0);
        assert_eq!(iter(&[2, 0, 1, 0]).count(), 0);
        assert_eq!(iter(&[]).count(), 0);
        assert_eq!(u32_of(&[1, 2]), None);
    }
}
