//! The bots' side of the wire: QUIC endpoints that pin the server's certificate, and readers of the demo world's
//! rows, keys and patches in place (thousands of bots read every frame of the world).
//!
//! The protocol is `engine/docs/protocol.md`; `locus_protocol` encodes and decodes the messages (a `Tick` in place,
//! with `locus_protocol::TickView`).

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
        locus_client::endpoint_config(),
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

/// The first two columns of a row whose key is an unsigned integer and whose second column is a `Vec2` (players,
/// creatures, resource nodes of the demo world), and the bytes after them.
pub(crate) fn id_and_pos(row: &[u8]) -> Option<(u64, Vec2, &[u8])> {
    let mut rest = row;
    if rmp::decode::read_array_len(&mut rest).ok()? < 2 {
        return None;
    }
    let id = rmp::decode::read_int(&mut rest).ok()?;
    let pos = locus_types::codec::read_vec2(rest.get(..11)?)?;
    Some((id, pos, rest.get(11..)?))
}

/// The key of a patch whose table's key is an unsigned integer and whose column 1 is a `Vec2` (as in
/// [`id_and_pos`]), and the new position if the patch changes it.
pub(crate) fn patch_id_and_pos(patch: &[u8]) -> Option<(u64, Option<Vec2>)> {
    let mut rest = patch;
    if rmp::decode::read_array_len(&mut rest).ok()? < 3 {
        return None;
    }
    let id = rmp::decode::read_int(&mut rest).ok()?;
    // Column indices increase and the key (column 0) is never patched: a position change is the first pair.
    let pos = match rmp::decode::read_int::<u64, _>(&mut rest).ok()? {
        1 => Some(locus_types::codec::read_vec2(rest.get(..11)?)?),
        _ => None,
    };
    Some((id, pos))
}

/// A player row's `identity` column (the third), from the bytes after `id` and `pos`.
pub(crate) fn identity_after_pos(rest: &[u8]) -> Option<[u8; 32]> {
    let mut rest = rest;
    let len = rmp::decode::read_bin_len(&mut rest).ok()?;
    rest.get(..usize::try_from(len).ok()?)?.try_into().ok()
}

/// An unsigned integer primary key.
pub(crate) fn key_u64(key: &[u8]) -> Option<u64> {
    let mut rest = key;
    rmp::decode::read_int(&mut rest).ok()
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
pub(crate) mod tests {
    use locus_protocol::{ServerMessage, TableDelta, TickView, WireRow};
    use locus_types::TableId;

    use super::*;

    /// A demo `player` row's bytes (also for the bots' tests).
    pub(crate) fn player_row(id: u64, pos: Vec2, identity: [u8; 32]) -> Vec<u8> {
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
    fn the_demo_rows_of_a_tick_are_read_in_place() {
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
                    ..TableDelta::default()
                },
                TableDelta {
                    table: TableId(70_000),
                    ..TableDelta::default()
                },
            ],
        };
        let mut frame = Vec::new();
        locus_protocol::encode_frame(&message, &mut frame);
        let tick = TickView::parse(&frame[4..]).unwrap().unwrap();
        let delta = tick.tables().next().unwrap();
        let [insert, update, delete, patches] = [
            delta.inserts(),
            delta.updates(),
            delta.deletes(),
            delta.patches(),
        ]
        .map(|rows| rows.collect::<Vec<_>>());
        assert_eq!((insert, update), (vec![&a[..]], vec![&b[..]]));
        assert_eq!(delete.len(), 1);
        assert_eq!(key_u64(delete[0]), Some(9));
        assert_eq!(
            patch_id_and_pos(patches[0]),
            Some((300, Some(Vec2::new(1.5, 2.0))))
        );
        assert_eq!(patch_id_and_pos(patches[1]), Some((300, None)));

        let (id, pos, rest) = id_and_pos(&a).unwrap();
        assert_eq!((id, pos), (5, Vec2::new(2048.0, 2047.5)));
        assert_eq!(identity_after_pos(rest), Some([7; 32]));
    }
}
