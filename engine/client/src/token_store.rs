//! Where a client keeps its identity token between runs: a file natively ([`ClientConfig::token_file`], see
//! [`crate::token_file`]), the page's `localStorage` in a browser ([`ClientConfig::token_key`]).
//!
//! One rule for both, in [`token_to_present`] and [`keep_token`]: at connect the client presents
//! [`ClientConfig::token`] if set, else the stored token if there is one, else none (and the server makes a new
//! identity); after `Welcome` it stores the server's token if the store did not already hold exactly that token.
//! A store that cannot be read or written fails the connect: silently losing an identity is worse than not
//! connecting.
//!
//! [`ClientConfig::token_file`]: crate::ClientConfig
//! [`ClientConfig::token_key`]: crate::ClientConfig
//! [`ClientConfig::token`]: crate::ClientConfig::token

use locus_protocol::Token;

use crate::{ClientConfig, ConnectError};

/// A place that keeps one token. `Send + Sync` so that a connect stays a `Send` future natively.
pub(crate) trait TokenStore: Send + Sync {
    /// The stored token, or `None` if none is stored.
    fn load(&self) -> Result<Option<Token>, ConnectError>;
    /// Store `token`, replacing the stored one.
    fn save(&self, token: &Token) -> Result<(), ConnectError>;
    /// Where, for logs.
    fn describe(&self) -> String;
}

/// The token a connect presents and the one its store held (`None` without a store).
pub(crate) fn token_to_present(
    config_token: Option<Token>,
    store: Option<&dyn TokenStore>,
) -> Result<(Option<Token>, Option<Token>), ConnectError> {
    let stored = match store {
        Some(store) => store.load()?,
        None => None,
    };
    Ok((config_token.or(stored), stored))
}

/// Store the token `Welcome` gave unless the store already held it; whether it was written.
pub(crate) fn keep_token(
    store: Option<&dyn TokenStore>,
    stored: Option<Token>,
    welcomed: &Token,
) -> Result<bool, ConnectError> {
    match store {
        Some(store) if stored.as_ref() != Some(welcomed) => {
            store.save(welcomed)?;
            tracing::debug!(store = %store.describe(), "saved the identity token");
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// The store `config` names, if any.
pub(crate) fn store_of(config: &ClientConfig) -> Option<Box<dyn TokenStore>> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        config
            .token_file
            .clone()
            .map(|path| Box::new(FileStore(path)) as Box<dyn TokenStore>)
    }
    #[cfg(target_arch = "wasm32")]
    {
        config
            .token_key
            .clone()
            .map(|key| Box::new(crate::web_storage::LocalStorage(key)) as Box<dyn TokenStore>)
    }
}

/// The token file (native builds).
#[cfg(not(target_arch = "wasm32"))]
struct FileStore(std::path::PathBuf);

#[cfg(not(target_arch = "wasm32"))]
impl TokenStore for FileStore {
    fn load(&self) -> Result<Option<Token>, ConnectError> {
        Ok(crate::token_file::load(&self.0)?)
    }

    fn save(&self, token: &Token) -> Result<(), ConnectError> {
        Ok(crate::token_file::save(&self.0, token)?)
    }

    fn describe(&self) -> String {
        self.0.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// A store in memory that counts writes and can be made to fail.
    #[derive(Default)]
    struct Memory {
        token: Mutex<Option<Token>>,
        writes: AtomicU32,
        broken: bool,
    }

    impl TokenStore for Memory {
        fn load(&self) -> Result<Option<Token>, ConnectError> {
            if self.broken {
                return Err(ConnectError::Protocol("broken store".into()));
            }
            Ok(*self.token.lock().unwrap())
        }

        fn save(&self, token: &Token) -> Result<(), ConnectError> {
            if self.broken {
                return Err(ConnectError::Protocol("broken store".into()));
            }
            self.writes.fetch_add(1, Ordering::Relaxed);
            *self.token.lock().unwrap() = Some(*token);
            Ok(())
        }

        fn describe(&self) -> String {
            "memory".into()
        }
    }

    const A: Token = Token([1; 32]);
    const B: Token = Token([2; 32]);

    #[test]
    fn the_config_token_wins_over_the_stored_one() {
        let store = Memory::default();
        *store.token.lock().unwrap() = Some(A);
        assert_eq!(
            token_to_present(Some(B), Some(&store)).unwrap(),
            (Some(B), Some(A))
        );
        assert_eq!(
            token_to_present(None, Some(&store)).unwrap(),
            (Some(A), Some(A))
        );
        assert_eq!(token_to_present(None, None).unwrap(), (None, None));
        assert_eq!(token_to_present(Some(B), None).unwrap(), (Some(B), None));
    }

    #[test]
    fn a_new_token_is_stored_once_and_a_known_one_is_not_rewritten() {
        let store = Memory::default();
        // First run: nothing stored, the server hands out A.
        let (presented, stored) = token_to_present(None, Some(&store)).unwrap();
        assert_eq!(presented, None);
        assert!(keep_token(Some(&store), stored, &A).unwrap());
        assert_eq!(*store.token.lock().unwrap(), Some(A));
        // Second run: A presented and welcomed again: not rewritten.
        let (presented, stored) = token_to_present(None, Some(&store)).unwrap();
        assert_eq!(presented, Some(A));
        assert!(!keep_token(Some(&store), stored, &A).unwrap());
        assert_eq!(store.writes.load(Ordering::Relaxed), 1);
        // The config presented B over the stored A: B is stored.
        let (_, stored) = token_to_present(Some(B), Some(&store)).unwrap();
        assert!(keep_token(Some(&store), stored, &B).unwrap());
        assert_eq!(*store.token.lock().unwrap(), Some(B));
        // No store: nothing to do.
        assert!(!keep_token(None, None, &A).unwrap());
    }

    #[test]
    fn a_broken_store_fails_the_connect() {
        let store = Memory {
            broken: true,
            ..Memory::default()
        };
        assert!(token_to_present(None, Some(&store)).is_err());
        assert!(keep_token(Some(&store), None, &A).is_err());
    }
}
