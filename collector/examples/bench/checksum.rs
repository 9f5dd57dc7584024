//! Internet checksums for the benchmark's pre-built inner frames: with
//! valid ones the kernel's GRO treats them as a NIC would deliver them.

/// One's-complement sum of `data` folded to 16 bits, starting from `sum`.
fn fold(mut sum: u32, data: &[u8]) -> u16 {
    for pair in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Fills the IPv4 header and TCP checksums of an Ethernet/IPv4/TCP frame
/// with a 20-byte IP header, as `build_ipv4_tcp` makes them.
pub fn fill_ipv4_tcp(frame: &mut [u8]) {
    let ip = 14;
    let tcp = ip + 20;
    let ip_sum = fold(0, &frame[ip..tcp]);
    frame[ip + 10..ip + 12].copy_from_slice(&ip_sum.to_be_bytes());
    let tcp_len = frame.len() - tcp;
    let mut pseudo = 6u32 + tcp_len as u32;
    for word in frame[ip + 12..ip + 20].chunks(2) {
        pseudo += u32::from(u16::from_be_bytes([word[0], word[1]]));
    }
    let tcp_sum = fold(pseudo, &frame[tcp..]);
    frame[tcp + 16..tcp + 18].copy_from_slice(&tcp_sum.to_be_bytes());
}
