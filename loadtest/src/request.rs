//! The client's requests (docs/PROTOCOL.md, "Client → server"), written as JSON text into
//! a reused buffer and framed as masked text frames.

use crate::ws::frame::{opcode, write_client_frame};

/// Appends `{"op":"subscribe","symbols":[...],"id":ID[,"max_rate":R][,"trades":true]
/// [,"depth":N]}` as a masked frame (`depth` only when N > 0: 0 is the protocol's default,
/// no books).
pub fn subscribe<'a>(
    out: &mut Vec<u8>,
    id: u32,
    symbols: impl IntoIterator<Item = &'a str>,
    (max_rate, trades, depth): (Option<f64>, bool, u16),
    mask: [u8; 4],
) {
    let mut j = br#"{"op":"subscribe","symbols":"#.to_vec();
    array(&mut j, symbols);
    j.extend_from_slice(format!(r#","id":{id}"#).as_bytes());
    if let Some(r) = max_rate {
        j.extend_from_slice(format!(r#","max_rate":{r}"#).as_bytes());
    }
    if trades {
        j.extend_from_slice(br#","trades":true"#);
    }
    if depth > 0 {
        j.extend_from_slice(format!(r#","depth":{depth}"#).as_bytes());
    }
    j.push(b'}');
    write_client_frame(out, opcode::TEXT, &j, mask);
}

/// Appends `{"op":"unsubscribe","symbols":[...],"id":ID}` as a masked frame.
pub fn unsubscribe<'a>(
    out: &mut Vec<u8>,
    id: u32,
    symbols: impl IntoIterator<Item = &'a str>,
    mask: [u8; 4],
) {
    let mut j = br#"{"op":"unsubscribe","symbols":"#.to_vec();
    array(&mut j, symbols);
    j.extend_from_slice(format!(r#","id":{id}}}"#).as_bytes());
    write_client_frame(out, opcode::TEXT, &j, mask);
}

/// Appends `{"op":"list","id":ID}` as a masked frame.
pub fn list(out: &mut Vec<u8>, id: u32, mask: [u8; 4]) {
    write_client_frame(out, opcode::TEXT, format!(r#"{{"op":"list","id":{id}}}"#).as_bytes(), mask);
}

fn array<'a>(j: &mut Vec<u8>, symbols: impl IntoIterator<Item = &'a str>) {
    tickgate::protocol::json::write_string_array(j, symbols);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use tickgate::protocol::control::{self, ClientMsg};
    use tickgate::protocol::frame::{FrameDecoder, Message};

    /// Decodes our frames with the gateway's decoder and parses them with its parser.
    fn roundtrip(out: &[u8]) -> Vec<Vec<u8>> {
        let mut dec = FrameDecoder::new(1 << 16);
        let mut b = bytes::BytesMut::from(out);
        let mut msgs = Vec::new();
        while let Some(m) = dec.decode(&mut b).unwrap() {
            match m {
                Message::Text(t) => msgs.push(t),
                other => panic!("{other:?}"),
            }
        }
        msgs
    }

    #[test]
    fn the_gateway_parses_our_requests() {
        let mut out = Vec::new();
        subscribe(&mut out, 1, ["AAPL", "BRK.B"], (Some(2.5), false, 0), [1, 2, 3, 4]);
        unsubscribe(&mut out, 2, ["AAPL"], [5, 6, 7, 8]);
        list(&mut out, 3, [0, 0, 0, 1]);
        subscribe(&mut out, 4, ["X"], (None, true, 0), [9, 9, 9, 9]);
        subscribe(&mut out, 5, ["X", "AAPL"], (Some(4.0), true, 10), [3, 1, 4, 1]);
        subscribe(&mut out, 6, ["X"], (None, false, u16::MAX), [2, 7, 1, 8]);
        let mut msgs = roundtrip(&out);
        assert_eq!(msgs.len(), 6);
        // depth 0 is left out (the protocol's default), N > 0 is sent as is.
        assert!(!String::from_utf8_lossy(&msgs[0]).contains("depth"));
        match control::parse(&mut msgs[0]).unwrap() {
            ClientMsg::Subscribe { id, symbols, max_rate, trades, depth } => {
                assert!(!trades);
                assert_eq!(depth, 0);
                assert_eq!(id, Some(1));
                assert_eq!(symbols, vec!["AAPL", "BRK.B"]);
                assert!(max_rate.is_some());
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(control::parse(&mut msgs[1]).unwrap(), ClientMsg::Unsubscribe { id: Some(2), .. }));
        assert!(matches!(control::parse(&mut msgs[2]).unwrap(), ClientMsg::List { id: Some(3) }));
        assert!(matches!(
            control::parse(&mut msgs[3]).unwrap(),
            ClientMsg::Subscribe { id: Some(4), max_rate: None, trades: true, depth: 0, .. }
        ));
        match control::parse(&mut msgs[4]).unwrap() {
            ClientMsg::Subscribe { id, symbols, max_rate, trades, depth } => {
                assert_eq!((id, trades, depth), (Some(5), true, 10));
                assert_eq!(symbols, vec!["X", "AAPL"]);
                assert!(max_rate.is_some());
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            control::parse(&mut msgs[5]).unwrap(),
            ClientMsg::Subscribe { id: Some(6), trades: false, depth: u16::MAX, .. }
        ));
    }
}
