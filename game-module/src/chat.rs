//! Chat: local speech, a global channel and private whispers, each a table whose visibility rule *is* the channel.
//!
//! | channel | reducer | table | who is sent a message |
//! |---|---|---|---|
//! | local | `say` | `local_message`: public, spatial at the speaker's position | clients whose area of interest holds that point: within [`EARSHOT`] (= the 64 m enter radius) of their player |
//! | global | `shout` | `global_message`: public, not spatial | every client subscribed to it, in every region of the world |
//! | whisper | `whisper` | `whisper`: public, `#[owner]` | the owner of each row alone |
//!
//! The engine's owner rule gives a row one owner, so a whisper is written twice: the sender's copy (owned by the
//! sender) and the recipient's copy (owned by the recipient). Each party sees its own copy and nobody else sees
//! either. Messages expire (`housekeeping` deletes them), so the tables stay small and a client entering an area
//! later sees only recent speech.
//!
//! Every message is checked (1 to [`MAX_MESSAGE_CHARS`] characters after trimming, no control characters) and
//! rate limited per client: a bucket of [`CHAT_BURST`] messages refilled at [`CHAT_REFILL_PER_SEC`] per second,
//! kept in the private table `chat_quota`, which never leaves the server.
//!
//! # Global chat in a world split into regions
//!
//! Each region is its own server with its own `global_message` table, so a shout must reach the others. `shout`
//! writes the message in its own region at once (its players see it without waiting for the network) and sends
//! [`deliver_global()`] to every region with `ctx.send_to_all_regions` — which the engine delivers to every region
//! **including this one**, exactly once each, after `shout` committed:
//!
//! - another region has no copy: it inserts one (under its own key);
//! - this region already has the row `shout` wrote — the same key and the same fields — and skips it, so the
//!   message is here once, not twice;
//! - a message that arrives after its time is up is dropped (it would only be deleted again).
//!
//! Only the sending region checks the text and spends the quota; `deliver_global` is a `#[reducer(region)]`
//! reducer, which no client can call, so it cannot be used to post around them. In a world that is not split into
//! regions the broadcast fails with `NotSplit` and the local row is all there is.

use locus_module::{
    Identity, ReducerContext, RegionBroadcastError, Timestamp, Vec2, reducer, table,
};

use crate::VIEW_ENTER;
use crate::players::{PlayerTable, my_player};

/// How far local speech carries, in metres: the enter radius of a client's area, since the engine sends a local
/// message to the clients whose area holds it. (A client keeps seeing a message until it is [`crate::VIEW_LEAVE`]
/// metres away.)
pub const EARSHOT: f32 = VIEW_ENTER;

/// The longest message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 200;

/// How many messages a client may send in a burst.
pub const CHAT_BURST: f32 = 5.0;

/// How fast the burst refills, in messages per second.
pub const CHAT_REFILL_PER_SEC: f32 = 0.5;

/// How long local speech lasts, in seconds.
pub const LOCAL_MESSAGE_SECS: u64 = 30;

/// How long global messages last, in seconds.
pub const GLOBAL_MESSAGE_SECS: u64 = 120;

/// How long whispers last, in seconds.
pub const WHISPER_SECS: u64 = 600;

/// Local speech: public and spatial, so only clients near where it was said receive it.
#[table(public)]
#[derive(Clone, Debug, PartialEq)]
pub struct LocalMessage {
    /// Assigned on insert.
    #[primary_key]
    #[auto_inc]
    pub id: u64,
    /// Where the speaker stood.
    #[spatial]
    pub pos: Vec2,
    /// The speaker's player.
    pub player_id: u64,
    /// The speaker's name when it spoke.
    pub from: String,
    /// What it said.
    pub text: String,
    /// When.
    pub sent: Timestamp,
    /// When it is deleted (indexed for `housekeeping`).
    #[index(btree)]
    pub expires_at: Timestamp,
}

/// The global channel: public, not spatial, so every subscribed client receives every message.
#[table(public)]
#[derive(Clone, Debug, PartialEq)]
pub struct GlobalMessage {
    /// Assigned on insert.
    #[primary_key]
    #[auto_inc]
    pub id: u64,
    /// The sender's player.
    pub player_id: u64,
    /// The sender's name when it sent it.
    pub from: String,
    /// The message.
    pub text: String,
    /// When.
    pub sent: Timestamp,
    /// When it is deleted.
    #[index(btree)]
    pub expires_at: Timestamp,
}

/// One party's copy of a whisper: public and owned, so only `owner` receives it. Each whisper is two rows, one
/// owned by the sender and one by the recipient.
#[table(public)]
#[derive(Clone, Debug, PartialEq)]
pub struct Whisper {
    /// Assigned on insert.
    #[primary_key]
    #[auto_inc]
    pub id: u64,
    /// The party this copy is for.
    #[owner]
    pub owner: Identity,
    /// The sender's name.
    pub from: String,
    /// The recipient's name.
    pub to: String,
    /// The message.
    pub text: String,
    /// When.
    pub sent: Timestamp,
    /// When it is deleted.
    #[index(btree)]
    pub expires_at: Timestamp,
}

/// A client's chat rate limit: private, never sent.
#[table]
#[derive(Clone, Debug, PartialEq)]
pub struct ChatQuota {
    /// The client.
    #[primary_key]
    pub identity: Identity,
    /// Messages it may still send now (up to [`CHAT_BURST`]).
    pub tokens: f32,
    /// When `tokens` was last brought up to date.
    pub updated: Timestamp,
}

/// `text` trimmed, or why it cannot be sent.
fn check_text(text: &str) -> Result<&str, String> {
    let text = text.trim();
    let chars = text.chars().count();
    if chars == 0 {
        return Err("say something".into());
    }
    if chars > MAX_MESSAGE_CHARS {
        return Err(format!(
            "a message has at most {MAX_MESSAGE_CHARS} characters, not {chars}"
        ));
    }
    if text.chars().any(char::is_control) {
        return Err("a message cannot contain control characters".into());
    }
    Ok(text)
}

/// Spend one message of the caller's quota, or refuse.
fn spend_quota(ctx: &ReducerContext) -> Result<(), String> {
    let quotas = ctx.db.chat_quota();
    let stored = quotas.identity().find(&ctx.sender);
    let first = stored.is_none();
    let mut quota = stored.unwrap_or(ChatQuota {
        identity: ctx.sender,
        tokens: CHAT_BURST,
        updated: ctx.timestamp,
    });
    let elapsed = ctx.timestamp.0.saturating_sub(quota.updated.0) as f32 / 1e6;
    quota.tokens = (quota.tokens + elapsed * CHAT_REFILL_PER_SEC).min(CHAT_BURST);
    quota.updated = ctx.timestamp;
    if quota.tokens < 1.0 {
        let wait = ((1.0 - quota.tokens) / CHAT_REFILL_PER_SEC).ceil();
        return Err(format!("you are sending messages too fast; wait {wait} s"));
    }
    quota.tokens -= 1.0;
    if first {
        quotas.insert(quota)?;
    } else {
        quotas.identity().update(quota)?;
    }
    Ok(())
}

/// When a message sent now and lasting `secs` expires.
fn expiry(ctx: &ReducerContext, secs: u64) -> Timestamp {
    ctx.timestamp.add_micros(secs * 1_000_000)
}

/// Say `text` aloud: players within [`EARSHOT`] of the caller's player hear it.
#[reducer]
pub fn say(ctx: &ReducerContext, text: String) -> Result<(), String> {
    let text = check_text(&text)?;
    let me = my_player(ctx)?;
    spend_quota(ctx)?;
    ctx.db.local_message().insert(LocalMessage {
        id: 0,
        pos: me.pos,
        player_id: me.id,
        from: me.name,
        text: text.to_owned(),
        sent: ctx.timestamp,
        expires_at: expiry(ctx, LOCAL_MESSAGE_SECS),
    })?;
    Ok(())
}

/// Send `text` to the global channel: every player of the world, in every region (see the [module docs](self)).
#[reducer]
pub fn shout(ctx: &ReducerContext, text: String) -> Result<(), String> {
    let text = check_text(&text)?;
    let me = my_player(ctx)?;
    spend_quota(ctx)?;
    let m = ctx.db.global_message().insert(GlobalMessage {
        id: 0,
        player_id: me.id,
        from: me.name,
        text: text.to_owned(),
        sent: ctx.timestamp,
        expires_at: expiry(ctx, GLOBAL_MESSAGE_SECS),
    })?;
    let delivery = deliver_global::call(m.id, m.player_id, m.from, m.text, m.sent, m.expires_at);
    match ctx.send_to_all_regions(delivery) {
        // Not split into regions: the row above is the whole channel.
        Ok(()) | Err(RegionBroadcastError::NotSplit) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A global message `shout` wrote in some region (`id` is its key there), delivered to this region: inserted here
/// under a key of this region's, unless this is the region it was written in (a row with the same key and fields
/// is here: the message already is) or its time is up. Run only for a region's `send_to_all_regions`, exactly
/// once per region; clients cannot call it.
#[reducer(region)]
pub fn deliver_global(
    ctx: &ReducerContext,
    id: u64,
    player_id: u64,
    from: String,
    text: String,
    sent: Timestamp,
    expires_at: Timestamp,
) -> Result<(), String> {
    if expires_at <= ctx.timestamp {
        return Ok(());
    }
    let message = GlobalMessage {
        id,
        player_id,
        from,
        text,
        sent,
        expires_at,
    };
    let messages = ctx.db.global_message();
    // Each region gives out keys from its own range, so another region's message seldom has this key; comparing
    // the fields too makes sure it is never taken for this one's.
    if messages.id().find(&id).as_ref() == Some(&message) {
        return Ok(());
    }
    messages.insert(GlobalMessage { id: 0, ..message })?;
    Ok(())
}

/// Whisper `text` to the player named `to`: only the two of them receive it.
#[reducer]
pub fn whisper(ctx: &ReducerContext, to: String, text: String) -> Result<(), String> {
    let text = check_text(&text)?;
    let me = my_player(ctx)?;
    // Names are stored in lowercase (see `validate_name`).
    let name = to.trim().to_ascii_lowercase();
    let recipient = ctx
        .db
        .player()
        .name()
        .find(&name)
        .ok_or_else(|| format!("no player is named `{to}`"))?;
    if recipient.id == me.id {
        return Err("you cannot whisper to yourself".into());
    }
    spend_quota(ctx)?;
    let whispers = ctx.db.whisper();
    for owner in [me.identity, recipient.identity] {
        whispers.insert(Whisper {
            id: 0,
            owner,
            from: me.name.clone(),
            to: recipient.name.clone(),
            text: text.to_owned(),
            sent: ctx.timestamp,
            expires_at: expiry(ctx, WHISPER_SECS),
        })?;
    }
    Ok(())
}

/// Housekeeping's part: delete messages whose time is up.
pub(crate) fn expire(ctx: &ReducerContext) {
    let now = ctx.timestamp;
    let local = ctx.db.local_message();
    for m in local.expires_at().range(..=now) {
        local.delete(&m);
    }
    let global = ctx.db.global_message();
    for m in global.expires_at().range(..=now) {
        global.delete(&m);
    }
    let whispers = ctx.db.whisper();
    for m in whispers.expires_at().range(..=now) {
        whispers.delete(&m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_trimmed_and_checked() {
        assert_eq!(check_text("  hi  ").unwrap(), "hi");
        assert_eq!(check_text("   ").unwrap_err(), "say something");
        assert!(
            check_text(&"x".repeat(201))
                .unwrap_err()
                .contains("at most 200")
        );
        assert!(check_text("a\u{7}b").unwrap_err().contains("control"));
    }
}
