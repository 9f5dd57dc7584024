//! UDP GSO from a test's side: the control message that makes one send of
//! equal-sized datagrams (and a shorter last one) leave as separate
//! datagrams, cut by the kernel. Used to offer copies fast (the collector
//! benchmark) and to hand a `UDP_GRO` socket a coalesced run on loopback.

/// A control buffer (aligned for `cmsghdr`) holding one `UDP_SEGMENT`
/// message of `seg` bytes; `CMSG_SPACE(2)` of it is the `msg_controllen`.
pub fn segment_cmsg(seg: u16) -> [u64; 4] {
    let mut buf = [0u64; 4];
    // SAFETY: the buffer is 32 bytes, aligned for cmsghdr, and CMSG_SPACE(2)
    // (24 on 64-bit Linux) fits; the msghdr only lives for this call.
    unsafe {
        let mut m: libc::msghdr = std::mem::zeroed();
        m.msg_control = buf.as_mut_ptr().cast();
        m.msg_controllen = libc::CMSG_SPACE(2) as _;
        let c = libc::CMSG_FIRSTHDR(&m);
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = libc::UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(2) as _;
        std::ptr::copy_nonoverlapping(seg.to_ne_bytes().as_ptr(), libc::CMSG_DATA(c), 2);
    }
    buf
}
