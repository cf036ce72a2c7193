//! Identities and their tokens.
//!
//! A client without a token is given a new random [`Token`]; its identity is `SHA-256("locus identity v1" ‖
//! token)`. Presenting the token again gives the same identity, and the server stores nothing but identities (which
//! are hashes of tokens): there is no token table to leak, and a restart — or a `kill -9` — cannot lose one.
//! Identities are public (other players see them in owner columns); the hash cannot be turned back into the token.

use locus_client::TokenFileError;
use locus_client::token_file;
use locus_protocol::Token;
use locus_types::Identity;
use sha2::{Digest, Sha256};

/// The identity a token stands for.
#[must_use]
pub fn identity_of(token: &Token) -> Identity {
    let mut h = Sha256::new();
    h.update(b"locus identity v1");
    h.update(token.0);
    Identity(h.finalize().into())
}

/// A new random token (from the operating system's generator).
#[must_use]
pub fn new_token() -> Token {
    let mut t = [0; 32];
    rand::fill(&mut t);
    Token(t)
}

/// The file, in a data directory, holding the operator's token (64 hex digits, readable only by its owner): a
/// client that presents it is the world's admin (`locus publish`, `call`, `query`, `logs`, `snapshot`). The same
/// format as a client's token file, so any client can use it.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// Read the admin token of `data_dir`, creating it (randomly, atomically, owner-only: a client token file,
/// [`locus_client::token_file`]) on first start.
///
/// # Errors
///
/// A [`TokenFileError`] if it cannot be read or written, or does not hold a token.
pub fn load_or_create_admin_token(data_dir: &std::path::Path) -> Result<Token, TokenFileError> {
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    if let Some(token) = token_file::load(&path)? {
        return Ok(token);
    }
    let token = new_token();
    token_file::save(&path, &token)?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_always_gives_the_same_identity_and_tokens_differ() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        assert_eq!(identity_of(&a), identity_of(&a));
        assert_ne!(identity_of(&a), identity_of(&b));
        // The documented derivation (engine/docs/protocol.md), on a fixed token.
        assert_eq!(
            identity_of(&Token([0; 32])).0[..4],
            [0xe2, 0x27, 0xd8, 0x24][..],
            "SHA-256(\"locus identity v1\" ‖ 32 zero bytes) starts e227d824"
        );
    }
}
