//! The bots' side of the wire: QUIC endpoints that pin the server's certificate, and a `Tick` frame reader that
//! borrows its rows instead of copying each into a `Vec` (thousands of bots read every frame of the world).
//!
//! The protocol is `engine/docs/protocol.md`; `locus_types::protocol` encodes and decodes every other message.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use game_module::Vec2;

/// Receive buffer asked for each bot endpoint's UDP socket (the kernel caps it at `net.core.rmem_max`).
const SOCKET_BUFFER: usize = 4 << 20;

/// The QUIC client configuration of every bot: ALPN `locus/1`, the pinned certificate, keep-alive every 2 s and
/// a 10 s idle timeout (as `locus_client`).
pub(crate) fn client_config(fingerprint: [u8; 32]) -> anyhow::Result<quinn::ClientConfig> {
    Ok(locus_client::quic_client_config(fingerprint)?)
}

/// A client endpoint (one UDP socket and its driver) for connections to `server`, with a large receive buffer.
/// Must be called inside a tokio runtime.
pub(crate) fn endpoint(server: SocketAddr) -> anyhow::Result<quinn::Endpoint> {
    use socket2::{Domain, Protocol, Socket, Type};
    let (domain, bind): (Domain, SocketAddr) = if server.is_ipv4() {
        (Domain::IPV4, (Ipv4Addr::UNSPECIFIED, 0).into())
    } else {
        (Domain::IPV6, (Ipv6Addr::UNSPECIFIED, 0).into())
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: without it a burst of frames to a few hundred bots can overflow the default buffer.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&bind.into())?;
    let endpoint = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        socket.into(),
        Arc::new(quinn::TokioRuntime),
    )?;
    Ok(endpoint)
}

/// The fingerprint of a certificate file (DER, or the first PEM `CERTIFICATE` block).
pub(crate) fn cert_file_fingerprint(path: &std::path::Path) -> anyhow::Result<[u8; 32]> {
    Ok(locus_client::Trust::CertFile(path.to_owned()).pinned()?)
}

/// Which list of a table delta a row came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RowKind {
    /// Entered the view: row bytes.
    Insert,
    /// Changed in view: row bytes.
    Update,
    /// Left the view: primary-key bytes.
    Delete,
    /// Changed in view, as a patch of its changed columns (protocol version 2; see `locus_types::patch`).
    Patch,
}

/// Why bytes are not a well-formed `Tick` message.
#[derive(Debug)]
pub(crate) struct MalformedTick(&'static str);

impl std::fmt::Display for MalformedTick {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed Tick message: {}", self.0)
    }
}

impl std::error::Error for MalformedTick {}

/// A cursor over MessagePack bytes.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn array(&mut self) -> Result<u32, MalformedTick> {
        rmp::decode::read_array_len(&mut self.rest).map_err(|_| MalformedTick("expected an array"))
    }

    fn uint(&mut self) -> Result<u64, MalformedTick> {
        rmp::decode::read_int(&mut self.rest).map_err(|_| MalformedTick("expected an integer"))
    }

    fn bin(&mut self) -> Result<&'a [u8], MalformedTick> {
        let len = rmp::decode::read_bin_len(&mut self.rest)
            .map_err(|_| MalformedTick("expected bin"))? as usize;
        if self.rest.len() < len {
            return Err(MalformedTick("bin past the end"));
        }
        let (bytes, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(bytes)
    }

    fn str(&mut self) -> Result<&'a [u8], MalformedTick> {
        let len = rmp::decode::read_str_len(&mut self.rest)
            .map_err(|_| MalformedTick("expected a string"))? as usize;
        if self.rest.len() < len {
            return Err(MalformedTick("string past the end"));
        }
        let (bytes, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(bytes)
    }
}

/// If `payload` (one frame's payload) is a `Tick` message, call `row(table, kind, bytes)` for each row and key it
/// carries, in order, and return its `(tick, time)`; `Ok(None)` if it is another message.
///
/// # Errors
///
/// [`MalformedTick`] if it starts as a `Tick` but is not one.
pub(crate) fn visit_tick(
    payload: &[u8],
    mut row: impl FnMut(u32, RowKind, &[u8]),
) -> Result<Option<(u64, u64)>, MalformedTick> {
    let mut c = Cursor { rest: payload };
    match rmp::decode::read_map_len(&mut c.rest) {
        Ok(1) => {}
        _ => return Ok(None),
    }
    match c.str() {
        Ok(b"Tick") => {}
        _ => return Ok(None),
    }
    if c.array()? != 3 {
        return Err(MalformedTick("a Tick has 3 fields"));
    }
    let tick = c.uint()?;
    let time = c.uint()?;
    for _ in 0..c.array()? {
        // Version 2 appends the patches when there are any.
        let fields = c.array()?;
        if fields != 4 && fields != 5 {
            return Err(MalformedTick("a table delta has 4 or 5 fields"));
        }
        let table = u32::try_from(c.uint()?).map_err(|_| MalformedTick("table id"))?;
        let kinds = [
            RowKind::Insert,
            RowKind::Update,
            RowKind::Delete,
            RowKind::Patch,
        ];
        for &kind in &kinds[..fields as usize - 1] {
            for _ in 0..c.array()? {
                row(table, kind, c.bin()?);
            }
        }
    }
    if !c.rest.is_empty() {
        return Err(MalformedTick("bytes after the message"));
    }
    Ok(Some((tick, time)))
}

/// The first two columns of a row whose key is an unsigned integer and whose second column is a `Vec2` (players,
/// creatures, resource nodes of the demo world), and the bytes after them.
pub(crate) fn id_and_pos(row: &[u8]) -> Option<(u64, Vec2, &[u8])> {
    let mut c = Cursor { rest: row };
    if c.array().ok()? < 2 {
        return None;
    }
    let id = c.uint().ok()?;
    let pos = locus_types::codec::read_vec2(c.rest.get(..11)?)?;
    Some((id, pos, &c.rest[11..]))
}

/// The key of a patch whose table's key is an unsigned integer and whose column 1 is a `Vec2` (as in
/// [`id_and_pos`]), and the new position if the patch changes it.
pub(crate) fn patch_id_and_pos(patch: &[u8]) -> Option<(u64, Option<Vec2>)> {
    let mut c = Cursor { rest: patch };
    if c.array().ok()? < 3 {
        return None;
    }
    let id = c.uint().ok()?;
    // Column indices increase and the key (column 0) is never patched: a position change is the first pair.
    let pos = match c.uint().ok()? {
        1 => Some(locus_types::codec::read_vec2(c.rest.get(..11)?)?),
        _ => None,
    };
    Some((id, pos))
}

/// A player row's `identity` column (the third), from the bytes after `id` and `pos`.
pub(crate) fn identity_after_pos(rest: &[u8]) -> Option<[u8; 32]> {
    let mut c = Cursor { rest };
    c.bin().ok()?.try_into().ok()
}

/// An unsigned integer primary key.
pub(crate) fn key_u64(key: &[u8]) -> Option<u64> {
    Cursor { rest: key }.uint().ok()
}

/// Microseconds since the Unix epoch, now (the clock the server stamps ticks with).
pub(crate) fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// How long a bot waits for the QUIC handshake and `Welcome` (longer than `locus_client`'s 5 s: a thousand bots
/// connect at once).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

#[cfg(test)]
mod tests {
    use locus_types::TableId;
    use locus_types::protocol::{self, ServerMessage, TableDelta, WireRow};

    use super::*;

    fn player_row(id: u64, pos: Vec2, identity: [u8; 32]) -> Vec<u8> {
        rmp_serde::to_vec(&game_module::Player {
            id,
            pos,
            identity: locus_types::Identity(identity),
            name: format!("player-{id}"),
            target: pos,
            dir: Vec2::ZERO,
            moving: false,
            online: true,
            hp: 100,
            level: 1,
            xp: 0,
            busy_until: locus_types::Timestamp(0),
        })
        .unwrap()
    }

    #[test]
    fn tick_frames_are_read_row_by_row() {
        let a = player_row(5, Vec2::new(2048.0, 2047.5), [7; 32]);
        let b = player_row(300, Vec2::new(1.0, 2.0), [9; 32]);
        let def = <game_module::Player as locus_module::Table>::def();
        let patch = |old: &[u8], new: &[u8]| {
            let mut out = Vec::new();
            assert!(locus_types::patch::make_patch(
                &def.columns,
                0,
                old,
                new,
                &mut locus_types::patch::Scratch::default(),
                &mut out
            ));
            out
        };
        let moved = patch(&b, &player_row(300, Vec2::new(1.5, 2.0), [9; 32]));
        let hurt = patch(&b, &[&b[..b.len() - 3], &[0x63, 0x01, 0x00]].concat());
        let message = ServerMessage::Tick {
            tick: 1234,
            time: 1_700_000_000_000_000,
            tables: vec![
                TableDelta {
                    table: TableId(3),
                    inserts: vec![WireRow(a.clone())],
                    updates: vec![WireRow(b.clone())],
                    deletes: vec![WireRow(rmp_serde::to_vec(&9u64).unwrap())],
                    patches: vec![WireRow(moved.clone()), WireRow(hurt.clone())],
                },
                TableDelta {
                    table: TableId(70_000),
                    ..TableDelta::default()
                },
            ],
        };
        let mut frame = Vec::new();
        protocol::encode_frame(&message, &mut frame);
        let mut seen = Vec::new();
        let header = visit_tick(&frame[4..], |t, k, bytes| seen.push((t, k, bytes.to_vec())))
            .unwrap()
            .unwrap();
        assert_eq!(header, (1234, 1_700_000_000_000_000));
        assert_eq!(seen.len(), 5);
        assert_eq!(seen[3], (3, RowKind::Patch, moved.clone()));
        assert_eq!(
            patch_id_and_pos(&moved),
            Some((300, Some(Vec2::new(1.5, 2.0))))
        );
        assert_eq!(patch_id_and_pos(&hurt), Some((300, None)));
        assert_eq!(seen[0], (3, RowKind::Insert, a.clone()));
        assert_eq!(seen[1], (3, RowKind::Update, b));
        assert_eq!(seen[2].1, RowKind::Delete);
        assert_eq!(key_u64(&seen[2].2), Some(9));

        let (id, pos, rest) = id_and_pos(&a).unwrap();
        assert_eq!((id, pos), (5, Vec2::new(2048.0, 2047.5)));
        assert_eq!(identity_after_pos(rest), Some([7; 32]));

        // Other messages are left to the general decoder; a broken Tick is an error.
        let mut other = Vec::new();
        protocol::encode_frame(
            &ServerMessage::Subscribed {
                request: 1,
                table: TableId(2),
            },
            &mut other,
        );
        assert!(visit_tick(&other[4..], |_, _, _| {}).unwrap().is_none());
        let cut = &frame[4..frame.len() - 3];
        assert!(visit_tick(cut, |_, _, _| {}).is_err());
    }
}
