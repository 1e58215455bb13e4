//! Reading a WebSocket frame's header before the frame has arrived (RFC 6455, 5.2), so a frame
//! declaring more than the message limit is refused from its first bytes.

/// The frame at the front of `buf`, once its header is complete: whether it is a continuation,
/// and the payload length it declares.
pub(crate) fn frame_header(buf: &[u8]) -> Option<(bool, u64)> {
    let first = *buf.first()?;
    let second = *buf.get(1)?;
    let continuation = first & 0x0f == 0;
    let declared = match second & 0x7f {
        126 => u64::from(u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?)),
        127 => u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?),
        short => u64::from(short),
    };
    Some((continuation, declared))
}

#[cfg(test)]
mod tests {
    use super::frame_header;

    #[test]
    fn headers_are_read_as_soon_as_complete() {
        assert_eq!(frame_header(&[0x82]), None);
        assert_eq!(frame_header(&[0x82, 0x85]), Some((false, 5)));
        assert_eq!(frame_header(&[0x00, 0xfe, 0x01]), None);
        assert_eq!(frame_header(&[0x00, 0xfe, 0x01, 0x00]), Some((true, 256)));
        let mut huge = vec![0x82, 0xff];
        huge.extend_from_slice(&(1u64 << 40).to_be_bytes());
        assert_eq!(frame_header(&huge), Some((false, 1 << 40)));
    }
}
