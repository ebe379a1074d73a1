//! Server-Sent Events framing (`GET /sse`, `text/event-stream`): the WebSocket-less transport
//! for networks whose proxies break WebSocket upgrades.
//!
//! Every message is the same JSON object a `format=json` WebSocket client gets (updates,
//! trades, gaps, `subscribed`, `status`, ...), as one event with an `id`:
//!
//! ```text
//! id: 17
//! data: {"type":"update","symbol":"AAPL","seq":42,...}
//!
//! ```
//!
//! Events carry no `event:` name, so a browser's `EventSource.onmessage` receives them all
//! and tells them apart by `type`, as a WebSocket client does. Ids count the connection's
//! events from 1: a client that reconnects with `Last-Event-ID` gets fresh snapshots (the
//! gateway conflates, so the current state is what it needs, not a replay). A comment line
//! (`: ping`) every `ping_interval` keeps proxies from timing the stream out.

/// The heartbeat: an SSE comment, ignored by clients.
pub const PING: &[u8] = b": ping\n\n";

/// Upper bound of the bytes [`write_event`] adds around the JSON object.
pub const EVENT_OVERHEAD: usize = 4 + 20 + 1 + 6 + 2;

/// Appends one event: `id: <id>`, `data: <json>` and the blank line that ends it. `json` is
/// one line (our encoders never write a newline).
#[inline]
pub fn write_event(out: &mut Vec<u8>, id: u64, json: &[u8]) {
    debug_assert!(!json.contains(&b'\n'), "an SSE data line must not contain a newline");
    out.extend_from_slice(b"id: ");
    out.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_id_data_and_a_blank_line() {
        let mut out = Vec::new();
        write_event(&mut out, 1, br#"{"type":"pong"}"#);
        write_event(&mut out, 2, b"{}");
        out.extend_from_slice(PING);
        assert_eq!(out, b"id: 1\ndata: {\"type\":\"pong\"}\n\nid: 2\ndata: {}\n\n: ping\n\n");
        assert!(EVENT_OVERHEAD >= "id: \ndata: \n\n".len() + 20);
    }
}
