//! Length-prefixed framing, shared by both ends so that they cannot disagree.

use serde::Serialize;

/// Bytes in a frame header (a big-endian `u32` body length).
pub const HEADER_LEN: usize = 4;

/// Largest frame body either side accepts: big enough for the answer to
/// `list` at 10,000 apps (8.5 MB; 4 MiB was too small). The daemon reads
/// requests with its own, smaller limit (1 MiB), so a hostile peer cannot
/// make it allocate this much.
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

/// Why a frame could not be built or accepted.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The announced or actual body is larger than [`MAX_FRAME`].
    #[error("message of {0} bytes is larger than the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    /// The body could not be serialized.
    #[error("cannot encode message: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Serializes `msg` as JSON behind a length header.
pub fn encode_frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let mut buf = vec![0u8; HEADER_LEN];
    serde_json::to_writer(&mut buf, msg)?;
    let len = buf.len() - HEADER_LEN;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    buf[..HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(buf)
}

/// Reads a header and returns the body length it announces, refusing oversize bodies.
pub fn decode_len(header: [u8; HEADER_LEN]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_header() {
        let frame = encode_frame(&"hello").unwrap();
        let len = decode_len(frame[..4].try_into().unwrap()).unwrap();
        assert_eq!(len, frame.len() - 4);
        assert_eq!(&frame[4..], b"\"hello\"");
    }

    #[test]
    fn oversize_header_is_refused() {
        let header = ((MAX_FRAME + 1) as u32).to_be_bytes();
        assert!(matches!(decode_len(header), Err(FrameError::TooLarge(_))));
    }
}
