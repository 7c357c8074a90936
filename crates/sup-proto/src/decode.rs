//! Reading a request body as the daemon does: the protocol version is
//! checked before the shape, so a client of another version gets a clear
//! answer rather than a parse error.

use crate::{ErrorKind, Request, RequestEnvelope, Response, PROTOCOL_VERSION, SUP_VERSION};
use serde_json::Value;

/// Decodes a request body, checking the protocol version before the shape,
/// so that a newer or older client gets a clear answer rather than a parse error.
pub fn decode_request(body: &[u8]) -> Result<Request, Response> {
    // The usual case in one pass; anything else is looked at again below,
    // for the answer it deserves.
    if let Ok(envelope) = serde_json::from_slice::<RequestEnvelope>(body) {
        if envelope.proto == PROTOCOL_VERSION {
            return Ok(envelope.request);
        }
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Response::error(ErrorKind::BadRequest, format!("malformed request: {e}")))?;
    let proto = value.get("proto").and_then(Value::as_u64);
    // `ping` and `update` keep their shape across protocol versions, so that
    // a newer CLI can always replace an older daemon.
    let op = value.pointer("/request/op").and_then(Value::as_str);
    let stable = matches!(op, Some("ping" | "update"));
    if proto != Some(u64::from(PROTOCOL_VERSION)) && !stable {
        let client = value
            .get("client")
            .and_then(Value::as_str)
            .unwrap_or("unknown");
        return Err(Response::error(
            ErrorKind::Version,
            format!(
                "the daemon is sup {SUP_VERSION} (protocol {PROTOCOL_VERSION}) but the client is sup {client} \
                 (protocol {}); run `sup update` to replace the daemon with the installed sup",
                proto.map_or("unknown".to_string(), |p| p.to_string())
            ),
        ));
    }
    serde_json::from_value::<RequestEnvelope>(value)
        .map(|envelope| envelope.request)
        .map_err(|e| Response::error(ErrorKind::BadRequest, format!("invalid request: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_kind(r: Result<Request, Response>) -> ErrorKind {
        match r {
            Err(Response::Error { kind, .. }) => kind,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn ping_and_update_cross_protocol_versions() {
        let body = br#"{"proto":99,"client":"9.0.0","request":{"op":"update","args":{"binary":"/bin/sup"}}}"#;
        assert!(matches!(decode_request(body), Ok(Request::Update { .. })));
    }

    #[test]
    fn parses_a_current_request() {
        let body = serde_json::to_vec(&RequestEnvelope::new(Request::List)).unwrap();
        assert_eq!(decode_request(&body).unwrap(), Request::List);
    }

    #[test]
    fn refuses_garbage_and_other_versions() {
        assert_eq!(
            error_kind(decode_request(b"\x00\xffnot json")),
            ErrorKind::BadRequest
        );
        assert_eq!(
            error_kind(decode_request(br#"{"proto":1,"request":{"op":"nope"}}"#)),
            ErrorKind::BadRequest
        );
        assert_eq!(
            error_kind(decode_request(
                br#"{"proto":99,"client":"9.0.0","request":{"op":"list"}}"#
            )),
            ErrorKind::Version
        );
        assert_eq!(
            error_kind(decode_request(br#"[1,2,3]"#)),
            ErrorKind::Version
        );
    }

    #[test]
    fn a_spec_with_an_unknown_stop_signal_is_refused() {
        let body = br#"{"proto":1,"client":"0.1.0","request":{"op":"add","args":{"wait":false,
            "spec":{"name":"api","program":{"kind":"exec","path":"/bin/true"},"stop_signal":"SIGNOPE"}}}}"#;
        let Err(Response::Error { kind, message }) = decode_request(body) else {
            panic!("accepted a spec with stop_signal SIGNOPE");
        };
        assert_eq!(kind, ErrorKind::BadRequest);
        assert!(message.contains(r#"unknown signal "SIGNOPE""#), "{message}");
    }
}
