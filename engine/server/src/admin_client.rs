//! The operator's side of the admin commands (`locus publish`, `call`, `query`, `logs`, `snapshot`): connect to a
//! running world with the admin token, send one [`AdminCommand`], and read the answers.
//!
//! A session with the admin identity is an ordinary client session otherwise (it has an avatar in the demo world
//! if the module gives connected clients one); the commands themselves run at tick boundaries on the server (see
//! `engine/docs/operations.md`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use locus_client::{ClientConfig, Connection, Trust};
use locus_protocol::{AdminCommand, AdminReply, ServerMessage};
use locus_types::{ColumnType, Identity, ReducerDef, Timestamp, Value, Vec2, codec};
use serde_json::Value as Json;
use thiserror::Error;

/// Where the world is and how to prove the admin identity.
#[derive(Clone, Debug)]
pub struct AdminTarget {
    /// The server's address.
    pub server: SocketAddr,
    /// How to recognise its certificate.
    pub trust: Trust,
    /// The admin token file (`admin.token` in the data directory).
    pub token_file: PathBuf,
}

/// Why an admin command failed.
#[derive(Debug, Error)]
pub enum AdminError {
    /// The admin token file is missing: the world was never started with this data directory, or the path is
    /// wrong.
    #[error(
        "no admin token at {0} (it is created when the world first starts; pass --data-dir or --token-file)"
    )]
    NoToken(PathBuf),
    /// The connection failed.
    #[error("cannot connect: {0}")]
    Connect(#[from] locus_client::ConnectError),
    /// Sending failed.
    #[error("cannot send: {0}")]
    Send(#[from] locus_client::SendError),
    /// The connection ended before the answer.
    #[error("the connection ended: {0}")]
    Receive(#[from] locus_client::ReceiveError),
    /// The server refused the command (e.g. the token is not the admin's).
    #[error("the server refused: {0}")]
    Refused(String),
    /// The arguments of a call are not valid for the reducer's parameters.
    #[error("{0}")]
    Arguments(String),
}

/// An open admin session.
#[derive(Debug)]
pub struct AdminSession {
    conn: Connection,
}

impl AdminSession {
    /// Connect with the admin token.
    ///
    /// # Errors
    ///
    /// [`AdminError::NoToken`] or [`AdminError::Connect`].
    pub async fn connect(target: &AdminTarget) -> Result<AdminSession, AdminError> {
        if !target.token_file.exists() {
            return Err(AdminError::NoToken(target.token_file.clone()));
        }
        let mut config = ClientConfig::new(target.server, target.trust.clone());
        config.token_file = Some(target.token_file.clone());
        let conn = Connection::connect(&config).await?;
        Ok(AdminSession { conn })
    }

    /// The reducers a client may call (from `Welcome`).
    #[must_use]
    pub fn reducers(&self) -> &[ReducerDef] {
        &self.conn.welcome().reducers
    }

    /// The session's identity.
    #[must_use]
    pub fn identity(&self) -> Identity {
        self.conn.identity()
    }

    /// Send `command` and return its first answer.
    ///
    /// # Errors
    ///
    /// An [`AdminError`]; a `Forbidden` error from the server is [`AdminError::Refused`].
    pub async fn run(&mut self, command: AdminCommand) -> Result<AdminReply, AdminError> {
        let request = self.conn.admin(command)?;
        self.next_reply(request.0).await
    }

    /// The next answer to `request` (e.g. further log lines of a followed `Logs`).
    ///
    /// # Errors
    ///
    /// An [`AdminError`].
    pub async fn next_reply(&mut self, request: u32) -> Result<AdminReply, AdminError> {
        loop {
            match self.conn.next_message().await? {
                ServerMessage::Admin { request: r, reply } if r == request => return Ok(reply),
                ServerMessage::Error {
                    message,
                    request: Some(r),
                    ..
                } if r == request => return Err(AdminError::Refused(message)),
                ServerMessage::Error {
                    message,
                    fatal: true,
                    ..
                } => return Err(AdminError::Refused(message)),
                _ => {}
            }
        }
    }

    /// Close the connection.
    pub async fn close(self) {
        self.conn.close().await;
    }
}

/// Encode a reducer call's arguments from JSON: an array with one element per parameter (a single value for a
/// reducer of one parameter, `[]` or `null` for none), each converted by [`json_to_value`].
///
/// # Errors
///
/// A message naming the reducer and the parameter that does not fit.
pub fn encode_args(reducer: &ReducerDef, args: &Json) -> Result<Vec<u8>, String> {
    let items: Vec<Json> = match args {
        Json::Array(a) if reducer.params.len() != 1 || a.len() == 1 => a.clone(),
        Json::Null if reducer.params.is_empty() => Vec::new(),
        other if reducer.params.len() == 1 => vec![other.clone()],
        other => {
            return Err(format!(
                "`{}` takes {} arguments; give a JSON array, not {other}",
                reducer.name,
                reducer.params.len()
            ));
        }
    };
    if items.len() != reducer.params.len() {
        return Err(format!(
            "`{}` takes {} arguments ({}); {} given",
            reducer.name,
            reducer.params.len(),
            reducer
                .params
                .iter()
                .map(|p| format!("{}: {:?}", p.name, p.ty))
                .collect::<Vec<_>>()
                .join(", "),
            items.len()
        ));
    }
    let mut out = Vec::new();
    rmp::encode::write_array_len(&mut out, items.len() as u32).expect("Vec write");
    for (param, item) in reducer.params.iter().zip(&items) {
        let value = json_to_value(&param.ty, item)
            .map_err(|e| format!("argument `{}` of `{}`: {e}", param.name, reducer.name))?;
        codec::encode_value(param, &value, &mut out).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// A JSON value as a value of type `ty`: numbers for integers, floats and timestamps (microseconds), `true`
/// / `false`, strings, `[x, y]` for a `Vec2`, 64 hex digits for an `Identity`, a hex string or an array of
/// numbers for bytes, `null` for an empty option, and any JSON for an opaque value (stored as its MessagePack).
///
/// # Errors
///
/// What does not fit.
pub fn json_to_value(ty: &ColumnType, json: &Json) -> Result<Value, String> {
    let want = |what: &str| format!("expected {what}, got {json}");
    Ok(match ty {
        ColumnType::Option(_) if json.is_null() => Value::Null,
        ColumnType::Option(inner) => json_to_value(inner, json)?,
        ColumnType::Bool => Value::Bool(json.as_bool().ok_or_else(|| want("true or false"))?),
        t if t.is_integer() => {
            let range = t.int_range().expect("an integer type");
            let n: i128 = json
                .as_i64()
                .map(i128::from)
                .or_else(|| json.as_u64().map(i128::from))
                .ok_or_else(|| want("an integer"))?;
            if !range.contains(&n) {
                return Err(format!("{n} is out of range for {t:?}"));
            }
            if matches!(
                t,
                ColumnType::I8 | ColumnType::I16 | ColumnType::I32 | ColumnType::I64
            ) {
                Value::I64(n as i64)
            } else {
                Value::U64(n as u64)
            }
        }
        ColumnType::F32 => Value::F32(json.as_f64().ok_or_else(|| want("a number"))? as f32),
        ColumnType::F64 => Value::F64(json.as_f64().ok_or_else(|| want("a number"))?),
        ColumnType::String => Value::String(json.as_str().ok_or_else(|| want("a string"))?.into()),
        ColumnType::Bytes => Value::Bytes(
            match json {
                Json::String(hex) => parse_hex(hex).ok_or_else(|| want("hex digits"))?,
                Json::Array(items) => items
                    .iter()
                    .map(|i| i.as_u64().and_then(|b| u8::try_from(b).ok()))
                    .collect::<Option<Vec<u8>>>()
                    .ok_or_else(|| want("an array of bytes"))?,
                _ => return Err(want("hex digits or an array of bytes")),
            }
            .into(),
        ),
        ColumnType::Vec2 => {
            let xy = json
                .as_array()
                .filter(|a| a.len() == 2)
                .and_then(|a| Some((a[0].as_f64()?, a[1].as_f64()?)))
                .ok_or_else(|| want("[x, y]"))?;
            Value::Vec2(Vec2::new(xy.0 as f32, xy.1 as f32))
        }
        ColumnType::Identity => {
            let bytes = json
                .as_str()
                .and_then(parse_hex)
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| want("an identity (64 hex digits)"))?;
            Value::Identity(Identity(bytes))
        }
        ColumnType::Timestamp => Value::Timestamp(Timestamp(
            json.as_u64()
                .ok_or_else(|| want("microseconds since the Unix epoch"))?,
        )),
        ColumnType::Opaque => Value::Opaque(
            rmp_serde::to_vec(json)
                .map_err(|e| e.to_string())?
                .into_boxed_slice(),
        ),
        other => return Err(format!("unsupported parameter type {other:?}")),
    })
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// How long a command waits for its answer before giving up (a publish compiles and migrates first).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

#[cfg(test)]
mod tests {
    use super::*;
    use locus_types::{ColumnDef, ReducerKind};

    fn reducer(params: &[(&str, ColumnType)]) -> ReducerDef {
        ReducerDef {
            name: "r".into(),
            kind: ReducerKind::Client,
            params: params
                .iter()
                .map(|(n, t)| ColumnDef::new(*n, t.clone()))
                .collect(),
        }
    }

    #[test]
    fn json_arguments_encode_as_the_parameters_say() {
        let r = reducer(&[
            ("x", ColumnType::F32),
            ("n", ColumnType::U32),
            ("who", ColumnType::Option(Box::new(ColumnType::String))),
            ("at", ColumnType::Vec2),
        ]);
        let args = encode_args(&r, &serde_json::json!([1.5, 7, null, [1, 2]])).unwrap();
        let decoded = codec::decode_row(&r.params, &args).unwrap();
        assert_eq!(
            decoded,
            vec![
                Value::F32(1.5),
                Value::U64(7),
                Value::Null,
                Value::Vec2(Vec2::new(1.0, 2.0))
            ]
        );
        // One parameter: a bare value works too.
        let one = reducer(&[("name", ColumnType::String)]);
        assert_eq!(
            encode_args(&one, &serde_json::json!("Ada")).unwrap(),
            encode_args(&one, &serde_json::json!(["Ada"])).unwrap()
        );
    }

    #[test]
    fn bad_arguments_name_the_parameter() {
        let r = reducer(&[("n", ColumnType::U8), ("s", ColumnType::String)]);
        let e = encode_args(&r, &serde_json::json!([300, "x"])).unwrap_err();
        assert!(
            e.contains("argument `n`") && e.contains("out of range"),
            "{e}"
        );
        let e = encode_args(&r, &serde_json::json!([1])).unwrap_err();
        assert!(e.contains("takes 2 arguments"), "{e}");
        let e = encode_args(&r, &serde_json::json!([1, 2])).unwrap_err();
        assert!(e.contains("expected a string"), "{e}");
    }
}
